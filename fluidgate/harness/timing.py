"""The iteration timing an emulated engine follows: the simulator's, read from the same places.

The harness must agree with the iteration simulator to within noise (a larger gap is a bug
in one of them), so the engine uses exactly its rule: an iteration with a k-token prefill
chunk and b decodes lasts `max(τ_solo(b), τ_mix(k, b))`, a decode-only one `τ_solo(b)`,
with the calibrated curves when the spec carries them and `α + β·k`, flat `τ_solo` when not
(`simulator.iteration.timing_table`). A mixed engine keeps one prefill slot and `B − 1`
decode slots, a solo engine `B` decode slots (DESIGN.md §4's static plan).
"""

from __future__ import annotations

from dataclasses import dataclass

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.model import Cluster, CurveForm, IterationCurve


@dataclass(frozen=True, slots=True)
class EngineTiming:
    max_batch: int  # B
    chunk: int  # C, prompt tokens per mixed iteration
    solo: IterationCurve
    mixed: IterationCurve

    def iteration(self, chunk_tokens: int, decodes: int) -> float:
        """Model seconds of one iteration carrying `chunk_tokens` prompt tokens and `decodes`."""
        solo = self.solo.time(0.0, float(decodes))
        if chunk_tokens <= 0:
            return solo
        return max(solo, self.mixed.time(float(chunk_tokens), float(decodes)))

    def decode_slots(self, mixed: bool) -> int:
        return self.max_batch - 1 if mixed else self.max_batch


def timing_from_spec(spec: ControllerSpec) -> EngineTiming:
    """The spec's calibrated curves, or the flat and affine ones its constants imply."""
    c = spec.cluster
    if not float(c.chunk).is_integer():
        raise ValueError(f"cluster.chunk: {c.chunk} is not a whole number of tokens")
    if c.curves is not None:
        solo, mixed = (IterationCurve(k.form, k.c0, k.c_chunk, k.c_chunk2, k.c_batch, k.b0)
                       for k in (c.curves.solo, c.curves.mixed))
    else:
        solo = IterationCurve(CurveForm.CONSTANT, c.tau_solo)
        mixed = IterationCurve(CurveForm.AFFINE_IN_C, c.alpha, c_chunk=c.beta)
    return EngineTiming(c.max_batch, int(c.chunk), solo, mixed)


def timing_from_cluster(cluster: Cluster) -> EngineTiming:
    """A policy's cluster block (no solve needed): its curves, calibrated or inline."""
    if not float(cluster.chunk).is_integer():
        raise ValueError(f"cluster.chunk: {cluster.chunk} is not a whole number of tokens")
    it = cluster.iteration
    return EngineTiming(cluster.max_batch, int(cluster.chunk), it.solo_curve, it.mixed_curve)
