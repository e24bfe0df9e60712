"""The `iteration` fidelity: every GPU runs iterations of the batch it actually holds.

An iteration carries every running decode (one token each) and, on a GPU with a prefill,
one chunk of at most C prompt tokens; it lasts `mix[k, b]` seconds with a k-token chunk and
b decodes, `solo[b]` without a chunk (tables built from the spec's α, β, τ_solo, or from a
calibration file's fitted curves). Work that arrives during an iteration joins the next one;
an idle GPU starts at once. The event queue is a min tree over the GPUs' iteration ends, with
arrivals and abandonments on their own clocks (abandonment is memoryless, so its clock is
redrawn after every event from the current number waiting). A decode's finish iteration is
fixed when it joins (one token per iteration), so an iteration costs O(1) unless something
finishes in it.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fluidgate.controllers import rules
from fluidgate.model import IterationCurve
from fluidgate.simulator.common import (
    C_LAMBDA,
    C_OUTPUT,
    C_P_SOLO,
    C_PRICE_IN,
    C_PRICE_OUT,
    C_PROMPT,
    C_TARGET_QD,
    INFO_EVENTS,
    INFO_QUEUE,
    INFO_STATUS,
    INFO_STEPS,
    K_ADMITTED,
    K_ARRIVED,
    K_SERVED_MIXED,
    K_SERVED_SOLO,
    P_BATCH,
    P_BUNDLED,
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
from fluidgate.simulator.config import Instance, SimulationInputError
from fluidgate.simulator.localbuf import L_CLS, L_HEAD, L_OUT, lb_new, lb_push, lb_remove
from fluidgate.simulator.structures import (
    F_ARRIVAL,
    F_OUTPUT,
    F_PROMPT,
    min_update,
    q_pop,
    q_push,
    set_add,
    set_draw,
    set_remove,
)

SET_PREFILL, SET_SOLO, SET_MIXED = 0, 1, 2
NEVER = np.iinfo(np.int64).max


def timing_table(inst: Instance, curves: tuple[IterationCurve, IterationCurve] | None = None
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Iteration seconds by batch: `solo[b]` for b decodes, `mix[k, b]` with a k-token chunk.

    From the spec's constants: `solo[b] = τ_solo`, `mix[k, b] = max(τ_solo, α + β·k)`. From
    calibrated curves `(solo, mixed)`: `solo[b] = τ_solo(b)`, `mix[k, b] =
    max(τ_solo(b), τ_mix(k, b))`. A short last chunk is never faster than a decode-only step.
    """
    chunk = int(inst.chunk)
    b = np.arange(inst.max_batch + 1, dtype=float)
    k = np.arange(chunk + 1, dtype=float)
    if curves is None:
        solo = np.full(inst.max_batch + 1, inst.tau_solo)
        mix_k = np.maximum(inst.tau_solo, inst.alpha + inst.beta * k)
        return solo, np.repeat(mix_k[:, None], inst.max_batch + 1, axis=1)
    solo_curve, mixed_curve = curves
    solo = np.array([solo_curve.time(0.0, float(x)) for x in b])
    mix = np.array([[max(solo[j], mixed_curve.time(float(kk), float(bb)))
                     for j, bb in enumerate(b)] for kk in k])
    if not (np.all(np.isfinite(solo)) and np.all(solo > 0) and np.all(np.isfinite(mix))):
        raise SimulationInputError("curves: the calibrated iteration times are not positive "
                                   "finite seconds over the batches this spec runs")
    return solo, mix


@njit(cache=True)
def _sets(g, n_mixed, pf, ndec, cap, items, pos, size, stay):
    mixed = g < n_mixed
    if mixed and pf[g] < 0:
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
def _start(g, t, chunk, pf, pf_rem, pf_chunk, ndec, busy, solo, mix, tval, tidx, leaves):
    """Begin g's next iteration if it has work; otherwise it idles."""
    if pf[g] >= 0:
        k = min(chunk, pf_rem[g])
        pf_chunk[g] = k
        dur = mix[k, ndec[g]]
    elif ndec[g] > 0:
        pf_chunk[g] = 0
        dur = solo[ndec[g]]
    else:
        busy[g] = False
        min_update(tval, tidx, leaves, g, np.inf)
        return
    busy[g] = True
    min_update(tval, tidx, leaves, g, t + dur)


@njit(cache=True)
def _place(g, c, t, out_tokens, slot_cls, slot_start, slot_end, slot_out, ndec, dcnt, pf,
           dec_mixed, dec_solo, done, busy, next_fin):
    """A class-c decode of `out_tokens` joins g's next iteration."""
    end = done[g] + (1 if busy[g] else 0) + out_tokens
    for s in range(slot_cls.shape[1]):
        if slot_cls[g, s] < 0:
            slot_cls[g, s] = c
            slot_start[g, s] = t
            slot_end[g, s] = end
            slot_out[g, s] = out_tokens
            break
    if end < next_fin[g]:
        next_fin[g] = end
    ndec[g] += 1
    dcnt[g, c] += 1
    if pf[g] >= 0:
        dec_mixed[c] += 1
    else:
        dec_solo[c] += 1


@njit(cache=True)
def run_iteration(p_int, p_flt, cls, tx, tq, rank, trace_t, trace_c, trace_len, solo, mix, qrec,
                  counts, integ, sums, samples, nsamp, snaps, money, info):
    n, bsz, n_mixed = p_int[P_GPUS], p_int[P_BATCH], p_int[P_MIXED]
    gate, router = p_int[P_GATE], p_int[P_ROUTER]
    bundled = p_int[P_BUNDLED] == 1
    horizon, warmup, snap_dt = p_flt[P_HORIZON], p_flt[P_WARMUP], p_flt[P_SNAP_DT]
    stay = router == ROUTER_STAY
    chunk = mix.shape[0] - 1
    k = cls.shape[0]
    tqd = 0.0  # n·Σq_d*: the decodes the plan lets wait
    for i in range(k):
        tqd += cls[i, C_TARGET_QD]
    np.random.seed(p_int[P_SEED])

    pf = np.full(n, -1, np.int64)
    pf_arrival = np.zeros(n)
    pf_rem = np.zeros(n, np.int64)
    pf_chunk = np.zeros(n, np.int64)
    pf_prompt = np.zeros(n, np.int64)
    pf_out = np.zeros(n, np.int64)
    slot_cls = np.full((n, bsz), -1, np.int64)
    slot_start = np.zeros((n, bsz))
    slot_end = np.zeros((n, bsz), np.int64)
    slot_out = np.zeros((n, bsz), np.int64)
    next_fin = np.full(n, NEVER, np.int64)
    done = np.zeros(n, np.int64)
    busy = np.zeros(n, np.bool_)
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
    tval = np.full(2 * leaves, np.inf)
    tidx = np.zeros(2 * leaves, np.int64)
    for p in range(leaves):
        tidx[leaves + p] = p
    for p in range(leaves - 1, 0, -1):
        tidx[p] = tidx[2 * p]
    items = np.zeros((3, n), np.int64)
    pos = np.full((3, n), -1, np.int64)
    size = np.zeros(3, np.int64)
    for g in range(n):
        _sets(g, n_mixed, pf, ndec, cap, items, pos, size, stay)
    qhead = np.zeros(3 * k, np.int64)
    qlen = np.zeros(3 * k, np.int64)
    lbi, lbf, lbg, lbitems, lbsize, lbfree = lb_new(n, k, qrec.shape[1] if stay else 1)
    running = np.zeros(k, np.int64)
    dec_mixed = np.zeros(k, np.int64)
    dec_solo = np.zeros(k, np.int64)
    waiting = np.zeros(k, np.int64)
    tickets = np.zeros(k, np.int64)
    ticket = 0

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
    steps = 0
    while True:
        abandon = abandonment_rate(cls, qlen, lbsize)
        t_abandon = t + np.random.exponential(1.0 / abandon) if abandon > 0 else np.inf
        t_gpu = tval[1]
        t_next = min(t_abandon, next_arrival, t_gpu, horizon)
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
        ended = -1
        if t == next_arrival:
            if use_trace:
                c = trace_c[tr]
                prompt, out_tokens = trace_len[tr, 0], trace_len[tr, 1]
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
                prompt, out_tokens = cls[c, C_PROMPT], cls[c, C_OUTPUT]
                next_arrival = t + np.random.exponential(1.0 / lam_total)
            if counting:
                counts[c, K_ARRIVED] += 1
            if not q_push(qrec, qhead, qlen, c, t, 0.0, prompt, out_tokens, ticket):
                info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, c
                break
            ticket += 1
        elif t == t_abandon:
            # no `continue`: a decode leaving a buffer can reopen the gate (rules.gate_deficit)
            abandon_one(np.random.random() * abandon * (1 - 1e-12), cls, qrec, qhead, qlen,
                        lbi, lbg, lbitems, lbsize, lbfree, counts, counting)
        else:  # GPU g finishes an iteration
            g = tidx[1]
            ended = g
            steps += 1
            busy[g] = False
            done[g] += 1
            if pf_chunk[g] > 0:
                pf_rem[g] -= pf_chunk[g]
                pf_chunk[g] = 0
                if pf_rem[g] <= 0:
                    c = pf[g]
                    pf[g] = -1
                    running[c] -= 1
                    for i in range(k):
                        dec_mixed[i] -= dcnt[g, i]
                        dec_solo[i] += dcnt[g, i]
                    if counting:
                        counts[c, K_ADMITTED] += 1
                        money[0] += 0.0 if bundled else cls[c, C_PRICE_IN] * pf_prompt[g]
                        record(samples, nsamp, sums, 0, c, t - pf_arrival[g])
                    _sets(g, n_mixed, pf, ndec, cap, items, pos, size, stay)
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
                        if not lb_push(lbi, lbf, lbg, lbitems, lbsize, lbfree, g, c,
                                       pf_arrival[g], t, pf_out[g]):
                            info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, k + c
                            break
                    else:
                        q = buffer_queue_base(code, k) + c
                        if not q_push(qrec, qhead, qlen, q, pf_arrival[g], t, pf_prompt[g],
                                      pf_out[g], 0.0):
                            info[INFO_STATUS], info[INFO_QUEUE] = STATUS_QUEUE_FULL, q
                            break
                    if target >= 0:
                        _place(target, c, t, pf_out[g], slot_cls, slot_start, slot_end,
                               slot_out, ndec, dcnt, pf, dec_mixed, dec_solo, done, busy,
                               next_fin)
                        _sets(target, n_mixed, pf, ndec, cap, items, pos, size, stay)
                        if target != g and not busy[target]:
                            _start(target, t, chunk, pf, pf_rem, pf_chunk, ndec, busy, solo,
                                   mix, tval, tidx, leaves)
            if done[g] >= next_fin[g]:
                nxt = NEVER
                for s in range(bsz):
                    c = slot_cls[g, s]
                    if c < 0:
                        continue
                    if slot_end[g, s] <= done[g]:
                        slot_cls[g, s] = -1
                        ndec[g] -= 1
                        dcnt[g, c] -= 1
                        if pf[g] >= 0:
                            dec_mixed[c] -= 1
                        else:
                            dec_solo[c] -= 1
                        if counting:
                            counts[c, K_SERVED_MIXED if pf[g] >= 0 else K_SERVED_SOLO] += 1
                            out_tokens = slot_out[g, s]
                            if bundled:
                                # the prompt length is not kept per slot: class mean
                                money[0] += (cls[c, C_PRICE_IN] * cls[c, C_PROMPT]
                                             + cls[c, C_PRICE_OUT] * out_tokens)
                            else:
                                money[0] += cls[c, C_PRICE_OUT] * out_tokens
                            record(samples, nsamp, sums, 1, c,
                                   (t - slot_start[g, s]) / out_tokens)
                    elif slot_end[g, s] < nxt:
                        nxt = slot_end[g, s]
                next_fin[g] = nxt
                code = freed_slot_buffer(router, rules.LOCAL if stay else pool[g])
                while ndec[g] < cap[g]:
                    if code == rules.WAIT_LOCAL:
                        r_head = lbg[g, L_HEAD]
                        if r_head < 0:
                            break
                        lb_remove(lbi, lbg, lbitems, lbsize, lbfree, r_head)
                        _place(g, lbi[r_head, L_CLS], t, lbi[r_head, L_OUT], slot_cls,
                               slot_start, slot_end, slot_out, ndec, dcnt, pf, dec_mixed,
                               dec_solo, done, busy, next_fin)
                    elif code != rules.NO_BUFFER:
                        q = oldest_buffered(qrec, qhead, qlen, k, buffer_queue_base(code, k))
                        if q < 0:
                            break
                        slot = q_pop(qrec, qhead, qlen, q)
                        _place(g, q % k, t, int(qrec[q, slot, F_OUTPUT]), slot_cls, slot_start,
                               slot_end, slot_out, ndec, dcnt, pf, dec_mixed, dec_solo, done,
                               busy, next_fin)
                    else:
                        break
            _sets(g, n_mixed, pf, ndec, cap, items, pos, size, stay)
        # admissions: every free prefill slot takes the class its gate picks
        while size[SET_PREFILL] > 0:
            c = choose_admission(gate, qrec, qhead, qlen, running, waiting, tickets, tx, tq, rank,
                                 lbsize, tqd)
            if c < 0:
                break
            h = set_draw(items, size, SET_PREFILL)
            slot = q_pop(qrec, qhead, qlen, c)
            pf[h] = c
            pf_arrival[h] = qrec[c, slot, F_ARRIVAL]
            pf_prompt[h] = int(qrec[c, slot, F_PROMPT])
            pf_out[h] = int(qrec[c, slot, F_OUTPUT])
            pf_rem[h] = pf_prompt[h]
            running[c] += 1
            for i in range(k):
                dec_solo[i] -= dcnt[h, i]
                dec_mixed[i] += dcnt[h, i]
            _sets(h, n_mixed, pf, ndec, cap, items, pos, size, stay)
            if not busy[h]:
                _start(h, t, chunk, pf, pf_rem, pf_chunk, ndec, busy, solo, mix, tval, tidx,
                       leaves)
        if ended >= 0 and not busy[ended]:  # its next iteration, with whatever it holds now
            _start(ended, t, chunk, pf, pf_rem, pf_chunk, ndec, busy, solo, mix, tval, tidx,
                   leaves)
    info[INFO_EVENTS] = events
    info[INFO_STEPS] = steps
