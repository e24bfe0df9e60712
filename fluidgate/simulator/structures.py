"""Array data structures for the jitted simulation loops: FIFO queues, index sets, trees.

Everything here is a plain function over numpy arrays so numba compiles it into the loops
that call it; there are no objects, because numba's jitclass cannot be cached on disk and a
cold compile on every run would cost more than a short simulation.

- Queues: one FIFO ring buffer per (queue id), rows of a 2-D array, with a record of four
  floats per request (arrival time, prefill-end time, prompt tokens, output tokens, arrival
  ticket). A
  waiting request abandons at a uniformly random position (exponential patience makes every
  waiting request equally likely to be the next to leave), which costs a shift of the tail.
- Index sets: O(1) add, remove and uniform draw (the router's "a random GPU with a free
  slot"): `items[s, :size[s]]` holds the members, `pos[s, g]` where `g` sits, or -1.
- A sum tree over GPUs (ctmc: pick the GPU of the next event in proportion to its rate) and
  a min tree (iteration: the GPU whose iteration ends first), both exact and O(log n).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fluidgate.simulator import jitcache

jitcache.configure()  # before any @njit(cache=True) below: see jitcache

# fields of a queued request record
F_ARRIVAL, F_PREFILLED, F_PROMPT, F_OUTPUT, F_TICKET = 0, 1, 2, 3, 4
N_FIELDS = 5


@njit(cache=True, inline="always")
def q_push(qrec, qhead, qlen, q, arrival, prefilled, prompt, output, ticket):
    """Append a request; False when the queue's storage is full (the caller grows it)."""
    cap = qrec.shape[1]
    if qlen[q] >= cap:
        return False
    k = (qhead[q] + qlen[q]) % cap
    qrec[q, k, F_ARRIVAL] = arrival
    qrec[q, k, F_PREFILLED] = prefilled
    qrec[q, k, F_PROMPT] = prompt
    qrec[q, k, F_OUTPUT] = output
    qrec[q, k, F_TICKET] = ticket
    qlen[q] += 1
    return True


@njit(cache=True, inline="always")
def q_pop(qrec, qhead, qlen, q):
    """Remove the head; returns its slot index (valid until the next push)."""
    k = qhead[q]
    qhead[q] = (k + 1) % qrec.shape[1]
    qlen[q] -= 1
    return k


@njit(cache=True)
def q_remove_at(qrec, qhead, qlen, q, j):
    """Remove the j-th waiting request (0 = head), keeping the others in FIFO order."""
    cap = qrec.shape[1]
    last = qlen[q] - 1
    for m in range(j, last):
        dst = (qhead[q] + m) % cap
        src = (dst + 1) % cap
        for f in range(N_FIELDS):
            qrec[q, dst, f] = qrec[q, src, f]
    qlen[q] = last


@njit(cache=True, inline="always")
def set_add(items, pos, size, s, g):
    if pos[s, g] < 0:
        pos[s, g] = size[s]
        items[s, size[s]] = g
        size[s] += 1


@njit(cache=True, inline="always")
def set_remove(items, pos, size, s, g):
    k = pos[s, g]
    if k >= 0:
        last = items[s, size[s] - 1]
        items[s, k] = last
        pos[s, last] = k
        pos[s, g] = -1
        size[s] -= 1


@njit(cache=True, inline="always")
def set_draw(items, size, s):
    """A uniformly random member (the set must not be empty)."""
    return items[s, np.random.randint(0, size[s])]


@njit(cache=True, inline="always")
def sum_update(tree, leaves, g, value):
    p = leaves + g
    tree[p] = value
    p >>= 1
    while p >= 1:
        tree[p] = tree[2 * p] + tree[2 * p + 1]
        p >>= 1


@njit(cache=True, inline="always")
def sum_find(tree, leaves, u):
    """The leaf whose cumulative range holds u (0 ≤ u < tree[1]); also the remainder."""
    p = 1
    while p < leaves:
        left = tree[2 * p]
        if u < left:
            p = 2 * p
        else:
            u -= left
            p = 2 * p + 1
    return p - leaves, u


@njit(cache=True, inline="always")
def min_update(tval, tidx, leaves, g, value):
    p = leaves + g
    tval[p] = value
    p >>= 1
    while p >= 1:
        a, b = 2 * p, 2 * p + 1
        if tval[b] < tval[a]:
            tval[p] = tval[b]
            tidx[p] = tidx[b]
        else:
            tval[p] = tval[a]
            tidx[p] = tidx[a]
        p >>= 1


def tree_leaves(n: int) -> int:
    """The power of two ≥ n that the trees use as their leaf count."""
    leaves = 1
    while leaves < n:
        leaves *= 2
    return leaves
