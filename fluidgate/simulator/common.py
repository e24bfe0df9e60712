"""Pieces both simulation loops share: the parameter layout, queues of waiting requests,
abandonment, and the time integrals and counters that become the measured metrics.

The decisions themselves (which class a free prefill slot admits, where a decode goes) are
`fluidgate.controllers.rules`' functions, called from here and from the loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fluidgate.simulator._rules_shim import gate_pick
from fluidgate.simulator.structures import F_ARRIVAL, F_PREFILLED, q_remove_at

# --- integer parameters (p_int) ---
P_GPUS, P_BATCH, P_MIXED, P_STATIC, P_GATE, P_ROUTER, P_SEED, P_SNAPS, P_BUNDLED = range(9)
N_PINT = 9
# --- float parameters (p_flt) ---
P_HORIZON, P_WARMUP, P_SNAP_DT = range(3)
N_PFLT = 3
# --- per-class columns (cls) ---
(C_LAMBDA, C_THETA, C_MU_P, C_MU_M, C_MU_S, C_W_PREFILL, C_W_DECODE, C_TARGET_X,
 C_TARGET_Q, C_RANK, C_P_SOLO, C_PROMPT, C_OUTPUT, C_PRICE_IN, C_PRICE_OUT) = range(15)
N_CCOL = 15
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

# queue ids: prefill queue of class i is i; decode buffers K+i (solo pool) and 2K+i (mixed)
POOL_SOLO, POOL_MIXED = 0, 1


@njit(cache=True)
def choose_admission(gate, cls, qrec, qhead, qlen, running, waiting, heads):  # type: ignore[no-untyped-def]
    """The class a free prefill slot admits now (-1: nobody waits), by the spec's gate."""
    k = cls.shape[0]
    any_waiting = False
    for i in range(k):
        waiting[i] = qlen[i]
        if qlen[i] > 0:
            heads[i] = qrec[i, qhead[i], F_ARRIVAL]
            any_waiting = True
        else:
            heads[i] = np.inf
    if not any_waiting:
        return -1
    return gate_pick(gate, waiting, running, cls[:, C_TARGET_X], cls[:, C_TARGET_Q], heads,
                     cls[:, C_RANK])


@njit(cache=True)
def oldest_buffered(qrec, qhead, qlen, k, pool):  # type: ignore[no-untyped-def]
    """The decode buffer (queue id) of `pool` whose head finished its prefill first, or -1."""
    best = -1
    best_t = np.inf
    base = k * (1 + pool)
    for i in range(k):
        q = base + i
        if qlen[q] > 0:
            t = qrec[q, qhead[q], F_PREFILLED]
            if t < best_t:
                best, best_t = q, t
    return best


@njit(cache=True)
def abandonment_rate(cls, qlen):  # type: ignore[no-untyped-def]
    k = cls.shape[0]
    total = 0.0
    for i in range(k):
        total += cls[i, C_THETA] * (qlen[i] + qlen[k + i] + qlen[2 * k + i])
    return total


@njit(cache=True)
def abandon_one(u, cls, qrec, qhead, qlen, counts, counting):  # type: ignore[no-untyped-def]
    """Remove the waiting request picked by u ∈ [0, abandonment rate)."""
    k = cls.shape[0]
    nq = 3 * k
    for q in range(nq):
        r = cls[q % k, C_THETA] * qlen[q]
        if u < r or (q == nq - 1 and qlen[q] > 0):
            j = min(int(u / cls[q % k, C_THETA]), qlen[q] - 1)
            q_remove_at(qrec, qhead, qlen, q, j)
            if counting:
                counts[q % k, K_ABANDON_PREFILL if q < k else K_ABANDON_DECODE] += 1
            return
        u -= r


@njit(cache=True)
def integrate(integ, w, prefill, dec_mixed, dec_solo, qlen):  # type: ignore[no-untyped-def]
    k = prefill.shape[0]
    for i in range(k):
        integ[i, I_PREFILL] += w * prefill[i]
        integ[i, I_DECODE_MIXED] += w * dec_mixed[i]
        integ[i, I_DECODE_SOLO] += w * dec_solo[i]
        integ[i, I_QUEUE_PREFILL] += w * qlen[i]
        integ[i, I_QUEUE_DECODE] += w * (qlen[k + i] + qlen[2 * k + i])


@njit(cache=True)
def snapshot(snaps, s, prefill, dec_mixed, dec_solo, qlen):  # type: ignore[no-untyped-def]
    k = prefill.shape[0]
    for i in range(k):
        snaps[s, I_PREFILL, i] = prefill[i]
        snaps[s, I_DECODE_MIXED, i] = dec_mixed[i]
        snaps[s, I_DECODE_SOLO, i] = dec_solo[i]
        snaps[s, I_QUEUE_PREFILL, i] = qlen[i]
        snaps[s, I_QUEUE_DECODE, i] = qlen[k + i] + qlen[2 * k + i]


@njit(cache=True)
def record(samples, nsamp, sums, which, c, value):  # type: ignore[no-untyped-def]
    """One TTFT (which=0) or TPOT (which=1) observation: into the sums, and kept for
    percentiles while there is room."""
    sums[c, 2 * which] += value
    sums[c, 2 * which + 1] += 1
    m = nsamp[which]
    if m < samples.shape[2]:
        samples[which, 0, m] = c
        samples[which, 1, m] = value
        nsamp[which] = m + 1
