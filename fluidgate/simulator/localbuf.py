"""Per-GPU decode buffers of the stay-on-GPU baselines, as linked lists in one record pool.

A stay-on-GPU policy parks a prefilled request at the GPU that prefilled it until one of
that GPU's decode slots frees (FCFS per GPU), while patience runs out uniformly at random
over all waiting requests of a class. Both need O(1): each GPU's buffer is a doubly linked
list through the pool; each class keeps an index set of its waiting records for the uniform
draw. One pool for all GPUs keeps memory proportional to what waits, not to n × capacity.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fluidgate.simulator import jitcache

jitcache.configure()  # before any @njit(cache=True) below: see jitcache

# int fields of a record (lbi) and float fields (lbf)
L_GPU, L_CLS, L_PREV, L_NEXT, L_OUT, L_POS = range(6)
L_ARRIVAL, L_PREFILLED = 0, 1
# per-GPU list ends (lbg)
L_HEAD, L_TAIL = 0, 1


@njit(cache=True)
def lb_new(n, k, cap):
    lbi = np.full((cap, 6), -1, np.int64)
    lbf = np.zeros((cap, 2))
    lbg = np.full((n, 2), -1, np.int64)
    items = np.zeros((k, cap), np.int64)
    size = np.zeros(k + 1, np.int64)  # per class; [k] = records in use
    free = np.arange(cap - 1, -1, -1).astype(np.int64)
    return lbi, lbf, lbg, items, size, free


@njit(cache=True)
def lb_push(lbi, lbf, lbg, items, size, free, g, c, arrival, prefilled, out):
    """Append to GPU g's buffer; False when the pool is full (the caller grows it)."""
    k = items.shape[0]
    used = size[k]
    if used >= free.shape[0]:
        return False
    r = free[free.shape[0] - 1 - used]
    size[k] = used + 1
    lbi[r, L_GPU], lbi[r, L_CLS], lbi[r, L_OUT] = g, c, out
    lbf[r, L_ARRIVAL], lbf[r, L_PREFILLED] = arrival, prefilled
    tail = lbg[g, L_TAIL]
    lbi[r, L_PREV], lbi[r, L_NEXT] = tail, -1
    if tail >= 0:
        lbi[tail, L_NEXT] = r
    else:
        lbg[g, L_HEAD] = r
    lbg[g, L_TAIL] = r
    lbi[r, L_POS] = size[c]
    items[c, size[c]] = r
    size[c] += 1
    return True


@njit(cache=True)
def lb_remove(lbi, lbg, items, size, free, r):
    """Unlink record r (its fields stay readable until the next push)."""
    g, c = lbi[r, L_GPU], lbi[r, L_CLS]
    prev, nxt = lbi[r, L_PREV], lbi[r, L_NEXT]
    if prev >= 0:
        lbi[prev, L_NEXT] = nxt
    else:
        lbg[g, L_HEAD] = nxt
    if nxt >= 0:
        lbi[nxt, L_PREV] = prev
    else:
        lbg[g, L_TAIL] = prev
    p = lbi[r, L_POS]
    last = items[c, size[c] - 1]
    items[c, p] = last
    lbi[last, L_POS] = p
    size[c] -= 1
    k = items.shape[0]
    size[k] -= 1
    free[free.shape[0] - 1 - size[k]] = r
