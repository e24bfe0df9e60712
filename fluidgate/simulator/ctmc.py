"""The `ctmc` fidelity: DESIGN.md §1 exactly as the fluid model reads it.

Every service is exponential: a class-i prefill completes at rate μ_p,i; a class-i decode at
μ_m,i on a GPU that is running a prefill and μ_s,i on one that is not. The loop is Gillespie's
direct method over per-GPU total rates held in a sum tree (O(log n) per event) plus the
abandonment of every waiting request; arrivals come from their own clock (Poisson, or a
replayed trace), which is valid because the other clocks are memoryless. GPUs are kept
individually rather than as pool counts so that the no-planning baselines (a GPU switches
between mixed and solo speed as it takes and finishes prefills, decodes stay where they were
prefilled) run through the same loop as gate-and-route.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fluidgate.controllers import rules
from fluidgate.simulator.common import (
    C_LAMBDA,
    C_MU_M,
    C_MU_P,
    C_MU_S,
    C_OUTPUT,
    C_P_SOLO,
    C_TARGET_QD,
    C_W_DECODE,
    C_W_PREFILL,
    INFO_EVENTS,
    INFO_QUEUE,
    INFO_STATUS,
    K_ADMITTED,
    K_ARRIVED,
    K_SERVED_MIXED,
    K_SERVED_SOLO,
    P_BATCH,
    P_GATE,
    P_GPUS,
    P_HORIZON,
    P_MIXED,
    P_ROUTER,
    P_SEED,
    P_SNAP_DT,
    P_SNAPS,
    P_WARMUP,
    ROUTER_STAY,
    STATUS_QUEUE_FULL,
    abandon_one,
    abandonment_rate,
    buffer_queue_base,
    choose_admission,
    choose_placement,
    freed_slot_buffer,
    integrate,
    oldest_buffered,
    record,
    snapshot,
)
from fluidgate.simulator.localbuf import L_CLS, L_HEAD, lb_new, lb_push, lb_remove
from fluidgate.simulator.structures import (
    F_ARRIVAL,
    q_pop,
    q_push,
    set_add,
    set_draw,
    set_remove,
    sum_find,
    sum_update,
)

SET_PREFILL, SET_SOLO, SET_MIXED = 0, 1, 2


@njit(cache=True)
def _refresh(g, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves, items, pos, size, stay):
    """Bring GPU g's event rate and its set memberships up to date after any change."""
    busy = pf[g] >= 0
    rate = cls[pf[g], C_MU_P] if busy else 0.0
    col = C_MU_M if busy else C_MU_S
    for i in range(cls.shape[0]):
        rate += dcnt[g, i] * cls[i, col]
    sum_update(tree, leaves, g, rate)
    mixed = g < n_mixed
    if mixed and not busy:
        set_add(items, pos, size, SET_PREFILL, g)
    else:
        set_remove(items, pos, size, SET_PREFILL, g)
    if not stay:
        s = SET_MIXED if mixed else SET_SOLO
        if ndec[g] < cap[g]:
            set_add(items, pos, size, s, g)
        else:
            set_remove(items, pos, size, s, g)


@njit(cache=True)
def _place(g, c, t, slot_cls, slot_start, ndec, dcnt, pf, dec_mixed, dec_solo):
    """Start a class-c decode on GPU g (the caller knows a slot is free)."""
    for s in range(slot_cls.shape[1]):
        if slot_cls[g, s] < 0:
            slot_cls[g, s] = c
            slot_start[g, s] = t
            break
    ndec[g] += 1
    dcnt[g, c] += 1
    if pf[g] >= 0:
        dec_mixed[c] += 1
    else:
        dec_solo[c] += 1


@njit(cache=True)
def run_ctmc(p_int, p_flt, cls, tx, tq, rank, trace_t, trace_c, qrec, counts, integ, sums,
             samples, nsamp, snaps, money, info):
    """Simulate one run into the output arrays; `info` gets the event count and the status
    (queue storage full: the caller reruns the same seed with more)."""
    n, bsz, n_mixed = p_int[P_GPUS], p_int[P_BATCH], p_int[P_MIXED]
    gate, router = p_int[P_GATE], p_int[P_ROUTER]
    horizon, warmup, snap_dt = p_flt[P_HORIZON], p_flt[P_WARMUP], p_flt[P_SNAP_DT]
    stay = router == ROUTER_STAY
    k = cls.shape[0]
    tqd = 0.0  # n·Σq_d*: the decodes the plan lets wait
    for i in range(k):
        tqd += cls[i, C_TARGET_QD]
    np.random.seed(p_int[P_SEED])

    pf = np.full(n, -1, np.int64)
    pf_arrival = np.zeros(n)
    slot_cls = np.full((n, bsz), -1, np.int64)
    slot_start = np.zeros((n, bsz))
    ndec = np.zeros(n, np.int64)
    dcnt = np.zeros((n, k), np.int64)
    cap = np.zeros(n, np.int64)
    pool = np.zeros(n, np.int64)
    for g in range(n):
        cap[g] = bsz - 1 if g < n_mixed else bsz
        pool[g] = rules.MIXED if g < n_mixed else rules.SOLO
    leaves = 1
    while leaves < n:
        leaves *= 2
    tree = np.zeros(2 * leaves)
    items = np.zeros((3, n), np.int64)
    pos = np.full((3, n), -1, np.int64)
    size = np.zeros(3, np.int64)
    for g in range(n):
        _refresh(g, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves, items, pos, size, stay)
    qhead = np.zeros(3 * k, np.int64)
    qlen = np.zeros(3 * k, np.int64)
    lbi, lbf, lbg, lbitems, lbsize, lbfree = lb_new(n, k, qrec.shape[1] if stay else 1)
    running = np.zeros(k, np.int64)
    dec_mixed = np.zeros(k, np.int64)
    dec_solo = np.zeros(k, np.int64)
    waiting = np.zeros(k, np.int64)
    tickets = np.zeros(k, np.int64)

    lam_total = 0.0
    for i in range(k):
        lam_total += cls[i, C_LAMBDA]
    use_trace = trace_t.shape[0] > 0
    tr = 0
    if use_trace:
        next_arrival = trace_t[0]
    else:
        next_arrival = np.random.exponential(1.0 / lam_total) if lam_total > 0 else np.inf
    t = 0.0
    next_snap = warmup
    n_snap = 0
    events = 0
    ticket = 0
    while True:
        abandon = abandonment_rate(cls, qlen, lbsize)
        total = tree[1] + abandon
        t_event = t + np.random.exponential(1.0 / total) if total > 0 else np.inf
        t_next = min(t_event, next_arrival, horizon)
        if t_next > warmup:
            integrate(integ, t_next - max(t, warmup), running, dec_mixed, dec_solo, qlen, lbsize)
        while n_snap < p_int[P_SNAPS] and next_snap <= t_next:
            snapshot(snaps, n_snap, running, dec_mixed, dec_solo, qlen, lbsize)
            n_snap += 1
            next_snap += snap_dt
        t = t_next
        if t >= horizon:
            break
        events += 1
        counting = t >= warmup
        admit = False
        if next_arrival <= t_event:  # an arrival
            if use_trace:
                c = trace_c[tr]
                tr += 1
                next_arrival = trace_t[tr] if tr < trace_t.shape[0] else np.inf
            else:
                u = np.random.random() * lam_total
                c = k - 1
                for i in range(k):
                    if u < cls[i, C_LAMBDA]:
                        c = i
                        break
                    u -= cls[i, C_LAMBDA]
                next_arrival = t + np.random.exponential(1.0 / lam_total)
            if counting:
                counts[c, K_ARRIVED] += 1
            if not q_push(qrec, qhead, qlen, c, t, 0.0, 0.0, 0.0, ticket):
                info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, c
                break
            ticket += 1
            admit = True
        else:
            u = np.random.random() * total
            if u >= tree[1]:  # an abandonment: a shorter decode buffer can reopen the gate
                abandon_one(min(u - tree[1], abandon * (1 - 1e-12)), cls, qrec, qhead, qlen,
                            lbi, lbg, lbitems, lbsize, lbfree, counts, counting)
                admit = True
            else:
                g, u = sum_find(tree, leaves, u)
                if g >= n:  # rounding at the very end of the range
                    g = n - 1
                busy = pf[g] >= 0
                if busy and u < cls[pf[g], C_MU_P]:  # g's prefill completes
                    c = pf[g]
                    pf[g] = -1
                    running[c] -= 1
                    for i in range(k):
                        dec_mixed[i] -= dcnt[g, i]
                        dec_solo[i] += dcnt[g, i]
                    if counting:
                        counts[c, K_ADMITTED] += 1
                        money[0] += cls[c, C_W_PREFILL]
                        record(samples, nsamp, sums, 0, c, t - pf_arrival[g])
                    code = choose_placement(router, cls[c, C_P_SOLO], size[SET_SOLO],
                                            size[SET_MIXED], cap[g] - ndec[g])
                    target = -1
                    if code == rules.SOLO:
                        target = set_draw(items, size, SET_SOLO)
                    elif code == rules.MIXED:
                        target = set_draw(items, size, SET_MIXED)
                    elif code == rules.LOCAL:
                        target = g
                    elif code == rules.WAIT_LOCAL:
                        if not lb_push(lbi, lbf, lbg, lbitems, lbsize, lbfree, g, c, pf_arrival[g],
                                       t, 0):
                            info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, k + c
                            break
                    else:
                        q = buffer_queue_base(code, k) + c
                        if not q_push(qrec, qhead, qlen, q, pf_arrival[g], t, 0.0, 0.0, 0.0):
                            info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, q
                            break
                    if target >= 0:
                        _place(target, c, t, slot_cls, slot_start, ndec, dcnt, pf, dec_mixed,
                               dec_solo)
                        if target != g:
                            _refresh(target, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves,
                                     items, pos, size, stay)
                    _refresh(g, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves, items, pos,
                             size, stay)
                    admit = True
                else:  # a decode completes: which class, then which of its slots
                    if busy:
                        u -= cls[pf[g], C_MU_P]
                    col = C_MU_M if busy else C_MU_S
                    c = -1
                    for i in range(k):
                        if dcnt[g, i] > 0:
                            c = i
                            r = dcnt[g, i] * cls[i, col]
                            if u < r:
                                break
                            u -= r
                    j = np.random.randint(0, dcnt[g, c])
                    s = 0
                    for s in range(bsz):
                        if slot_cls[g, s] == c:
                            if j == 0:
                                break
                            j -= 1
                    slot_cls[g, s] = -1
                    ndec[g] -= 1
                    dcnt[g, c] -= 1
                    if busy:
                        dec_mixed[c] -= 1
                    else:
                        dec_solo[c] -= 1
                    if counting:
                        counts[c, K_SERVED_MIXED if busy else K_SERVED_SOLO] += 1
                        money[0] += cls[c, C_W_DECODE]
                        record(samples, nsamp, sums, 1, c,
                               (t - slot_start[g, s]) / cls[c, C_OUTPUT])
                    code = freed_slot_buffer(router, rules.LOCAL if stay else pool[g])
                    if code == rules.WAIT_LOCAL:
                        r_head = lbg[g, L_HEAD]
                        if r_head >= 0:
                            lb_remove(lbi, lbg, lbitems, lbsize, lbfree, r_head)
                            _place(g, lbi[r_head, L_CLS], t, slot_cls, slot_start, ndec, dcnt, pf,
                                   dec_mixed, dec_solo)
                            admit = True  # a decode left a buffer: the gate may reopen
                    elif code != rules.NO_BUFFER:
                        q = oldest_buffered(qrec, qhead, qlen, k, buffer_queue_base(code, k))
                        if q >= 0:
                            q_pop(qrec, qhead, qlen, q)
                            _place(g, q % k, t, slot_cls, slot_start, ndec, dcnt, pf, dec_mixed,
                                   dec_solo)
                            admit = True
                    _refresh(g, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves, items, pos, size,
                             stay)
        if admit:
            while size[SET_PREFILL] > 0:
                c = choose_admission(gate, qrec, qhead, qlen, running, waiting, tickets, tx, tq,
                                     rank, lbsize, tqd)
                if c < 0:
                    break
                g = set_draw(items, size, SET_PREFILL)
                slot = q_pop(qrec, qhead, qlen, c)
                pf[g] = c
                pf_arrival[g] = qrec[c, slot, F_ARRIVAL]
                running[c] += 1
                for i in range(k):
                    dec_solo[i] -= dcnt[g, i]
                    dec_mixed[i] += dcnt[g, i]
                _refresh(g, cls, pf, dcnt, ndec, cap, n_mixed, tree, leaves, items, pos, size,
                         stay)
    info[INFO_EVENTS] = events
