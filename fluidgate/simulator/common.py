"""Pieces both simulation loops share: the parameter layout, queues of waiting requests,
abandonment, and the time integrals and counters that become the measured metrics.

The decisions themselves (which class a free prefill slot admits, where a decode goes) are
`fluidgate.controllers.rules`' functions, called from here and from the loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fluidgate.controllers import rules
from fluidgate.simulator.localbuf import lb_remove
from fluidgate.simulator.structures import F_PREFILLED, F_TICKET, q_remove_at

# --- integer parameters (p_int) ---
P_GPUS, P_BATCH, P_MIXED, P_GATE, P_ROUTER, P_SEED, P_SNAPS, P_BUNDLED = range(8)
N_PINT = 8
# --- float parameters (p_flt) ---
P_HORIZON, P_WARMUP, P_SNAP_DT = range(3)
N_PFLT = 3
# --- per-class columns (cls) ---
(C_LAMBDA, C_THETA, C_MU_P, C_MU_M, C_MU_S, C_W_PREFILL, C_W_DECODE, C_TARGET_X,
 C_TARGET_Q, C_RANK, C_P_SOLO, C_PROMPT, C_OUTPUT, C_PRICE_IN, C_PRICE_OUT,
 C_TARGET_QD) = range(16)
N_CCOL = 16
# --- per-class counters (counts) ---
(K_ARRIVED, K_ADMITTED, K_SERVED_MIXED, K_SERVED_SOLO, K_ABANDON_PREFILL,
 K_ABANDON_DECODE) = range(6)
N_COUNTS = 6
# --- per-class time integrals (integ) and snapshot rows ---
I_PREFILL, I_DECODE_MIXED, I_DECODE_SOLO, I_QUEUE_PREFILL, I_QUEUE_DECODE = range(5)
N_INTEG = 5
# --- per-class sums (sums) ---
S_TTFT, S_TTFT_N, S_TPOT, S_TPOT_N = range(4)
# --- info ---
INFO_EVENTS, INFO_STATUS, INFO_QUEUE, INFO_STEPS = range(4)
STATUS_OK, STATUS_QUEUE_FULL = 0, 1

# queue ids: prefill queue of class i is i; decode buffers K+i (shared or solo pool) and 2K+i
# (mixed pool); stay-on-GPU buffers live in `localbuf`.
ROUTER_SLI, ROUTER_STAY = rules.ROUTER_SLI, rules.ROUTER_STAY


# The controllers package's rules, compiled into the loops (its dispatchers on a rule code).
_gate = njit(rules.make_gate(njit(rules.gate_deficit), njit(rules.gate_priority),
                             njit(rules.gate_fcfs)))
_route = njit(rules.make_router(njit(rules.route_solo_first), njit(rules.route_sli),
                                njit(rules.route_stay)))
_buffer_for_slot = njit(rules.buffer_for_slot)


@njit(cache=True)
def choose_admission(gate, qrec, qhead, qlen, running, waiting, tickets, tx, tq, rank,
                     lbsize, target_buffered):
    """The class a free prefill slot admits now (-1: nobody waits, or the gate holds the
    slot idle): the policy's gate, told how many decodes wait in any buffer."""
    k = running.shape[0]
    any_waiting = False
    for i in range(k):
        waiting[i] = qlen[i]
        if qlen[i] > 0:
            tickets[i] = int(qrec[i, qhead[i], F_TICKET])
            any_waiting = True
    if not any_waiting:
        return -1
    buffered = 0
    for q in range(k, qlen.shape[0]):
        buffered += qlen[q]
    for i in range(k):
        buffered += lbsize[i]
    return _gate(gate, waiting, running, tx, tq, rank, tickets, buffered, target_buffered)


@njit(cache=True)
def choose_placement(router, p_solo, free_solo, free_mixed, free_local):
    """Where a finished prefill's decode goes: a `rules` placement code. Only the SLI
    router draws a random number."""
    u = np.random.random() if router == ROUTER_SLI else 0.0
    return _route(router, p_solo, u, free_solo, free_mixed, free_local)


@njit(cache=True)
def buffer_queue_base(code, k):
    """The first queue id of a shared buffer code (one queue per class), or -1."""
    if code == rules.WAIT_SHARED or code == rules.WAIT_SOLO:
        return k
    if code == rules.WAIT_MIXED:
        return 2 * k
    return -1


@njit(cache=True)
def freed_slot_buffer(router, pool):
    return _buffer_for_slot(router, pool)


@njit(cache=True)
def oldest_buffered(qrec, qhead, qlen, k, base):
    """The queue (id ≥ base, one per class) whose head entered its buffer first, or -1."""
    best = -1
    best_t = np.inf
    for i in range(k):
        q = base + i
        if qlen[q] > 0:
            t = qrec[q, qhead[q], F_PREFILLED]
            if t < best_t:
                best, best_t = q, t
    return best


@njit(cache=True)
def abandonment_rate(cls, qlen, lbsize):
    """Total rate at which waiting requests leave: θ_i per request in any queue or buffer."""
    k = cls.shape[0]
    total = 0.0
    for i in range(k):
        total += cls[i, C_THETA] * (qlen[i] + qlen[k + i] + qlen[2 * k + i] + lbsize[i])
    return total


@njit(cache=True)
def abandon_one(u, cls, qrec, qhead, qlen, lbi, lbg, lbitems, lbsize, lbfree, counts,
                counting):
    """Remove the waiting request that u ∈ [0, abandonment rate) picks: a queue (or a
    class's stay-on-GPU buffers) in proportion to θ·length, then a uniform position."""
    k = cls.shape[0]
    for q in range(4 * k):
        c = q % k
        theta = cls[c, C_THETA]
        length = qlen[q] if q < 3 * k else lbsize[c]
        r = theta * length
        if length > 0 and u < r:
            j = min(int(u / theta), length - 1)
            if q < 3 * k:
                q_remove_at(qrec, qhead, qlen, q, j)
            else:
                lb_remove(lbi, lbg, lbitems, lbsize, lbfree, lbitems[c, j])
            if counting:
                counts[c, K_ABANDON_PREFILL if q < k else K_ABANDON_DECODE] += 1
            return
        u -= r


@njit(cache=True)
def integrate(integ, w, prefill, dec_mixed, dec_solo, qlen, lbsize):
    k = prefill.shape[0]
    for i in range(k):
        integ[i, I_PREFILL] += w * prefill[i]
        integ[i, I_DECODE_MIXED] += w * dec_mixed[i]
        integ[i, I_DECODE_SOLO] += w * dec_solo[i]
        integ[i, I_QUEUE_PREFILL] += w * qlen[i]
        integ[i, I_QUEUE_DECODE] += w * (qlen[k + i] + qlen[2 * k + i] + lbsize[i])


@njit(cache=True)
def snapshot(snaps, s, prefill, dec_mixed, dec_solo, qlen, lbsize):
    k = prefill.shape[0]
    for i in range(k):
        snaps[s, I_PREFILL, i] = prefill[i]
        snaps[s, I_DECODE_MIXED, i] = dec_mixed[i]
        snaps[s, I_DECODE_SOLO, i] = dec_solo[i]
        snaps[s, I_QUEUE_PREFILL, i] = qlen[i]
        snaps[s, I_QUEUE_DECODE, i] = qlen[k + i] + qlen[2 * k + i] + lbsize[i]


@njit(cache=True)
def record(samples, nsamp, sums, which, c, value):
    """One TTFT (which=0) or TPOT (which=1) observation: into the sums, and kept for
    percentiles while there is room."""
    sums[c, 2 * which] += value
    sums[c, 2 * which + 1] += 1
    m = nsamp[which]
    if m < samples.shape[2]:
        samples[which, 0, m] = c
        samples[which, 1, m] = value
        nsamp[which] = m + 1
