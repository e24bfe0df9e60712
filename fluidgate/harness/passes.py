"""The emulated engine's `--model` mode: every iteration is a real forward pass of the
calibration decoder instead of a sleep of τ(k, b).

Scheduling is `EngineCore`'s, unchanged (continuous batching, one chunk of at most C prompt
tokens next to the running decodes on a mixed engine, at most B streams), so only the
iteration itself differs: `calibration.decoder.step` on that batch, run in a worker thread so
the event loop keeps serving HTTP meanwhile, timed exactly as `fluidgate calibrate measure`
times it (`perf_counter` on a CPU, CUDA events on a GPU). The model clock advances by the
measured time: model time is compute time, host work between passes (scheduling, HTTP) is
not counted, and an idle engine's model clock catches up with the wall clock as it does with
curves. A real pass takes the time it takes, so there is no time scale (it is 1).

The KV cache is allocated once, for the largest iteration, and never grows with client input:
each decode attends to `context` cached tokens, as in the calibration sweep, so an iteration
costs what `calibrate measure` timed for its shape; a chunk attends to the prompt tokens
before it, at most `context` of them. The weights are random (timing does not depend on
their values), so the generated ids are real argmax outputs without meaning.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fluidgate.calibration.architectures import Architecture
from fluidgate.calibration.decoder import BatchShape
from fluidgate.calibration.measure import DeviceChoice
from fluidgate.harness.core import EngineCore, Stream
from fluidgate.harness.timing import EngineTiming

WARM_PASSES = 3  # per shape at start-up: allocator, kernel selection, thread pools
LOG_SIZE = 4096  # iterations kept in `DecoderCore.log`


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One iteration as it ran: prompt tokens in its chunk, decodes, measured seconds."""

    chunk: int
    decodes: int
    seconds: float


class DecoderPasses:
    """The calibration decoder built once, its KV cache, and one timed pass per call.

    Construction builds the weights, allocates the cache for `max_batch` decodes and one
    chunk, and runs warm-up passes at the largest shapes, so running out of memory shows at
    start-up as a `MeasureError`, not under load.
    """

    def __init__(self, arch: Architecture, max_batch: int, chunk: int, context: int | None = None,
                 device: DeviceChoice = "auto", seed: int = 0) -> None:
        from fluidgate.calibration import decoder
        from fluidgate.calibration.measure import (
            CPU_PLAN,
            GPU_PLAN,
            MeasureError,
            check_memory,
            pick_device,
            pick_dtype,
            require_torch,
            timer,
        )

        if max_batch < 1 or chunk < 1 or (context is not None and context < 0):
            raise ValueError("real passes need B ≥ 1, C ≥ 1 and a context of 0 or more")
        torch = require_torch("the engine's --model mode")
        dev = pick_device(torch, device)
        if context is None:  # the calibration sweep's, so a pass costs what it timed
            context = (GPU_PLAN if dev.type == "cuda" else CPU_PLAN).context
        self._torch = torch
        self._decoder = decoder
        self.arch, self.max_batch, self.chunk, self.context = arch, max_batch, chunk, context
        dtype = pick_dtype(torch, dev, "auto")
        check_memory(torch, dev, arch, dtype, max_batch * (context + 1) + context + chunk,
                     "choose a smaller --model or a shorter --context")
        self.device = dev
        self._timer: Callable[[Callable[[], object]], float] = timer(torch, dev)
        try:
            with torch.inference_mode():
                self._net = decoder.build(arch, dev, dtype, seed)

                def zeros(batch: int, length: int) -> list[Any]:
                    return [torch.zeros(batch, arch.kv_heads, length, arch.head_dim,
                                        device=dev, dtype=dtype) for _ in range(arch.layers)]

                self._decode_kv = (zeros(max_batch, context + 1), zeros(max_batch, context + 1))
                self._chunk_kv = (zeros(1, context + chunk), zeros(1, context + chunk))
            for _ in range(WARM_PASSES):
                self.run(range(chunk), context, range(max_batch - 1))
                self.run((), 0, range(max_batch))
        except torch.cuda.OutOfMemoryError:
            raise MeasureError(f"out of GPU memory for {arch.name} at B = {max_batch}, "
                               f"C = {chunk}; choose a smaller --model or a shorter "
                               "--context") from None

    def run(self, chunk_ids: Sequence[int], prefix: int, decode_ids: Sequence[int]
            ) -> tuple[list[int], float]:
        """One iteration: the chunk's ids (after `prefix` prompt tokens already cached) and
        one input id per decode. Returns the sampled ids (the chunk's last token first, when
        there is a chunk, then one per decode) and the pass's measured seconds."""
        torch, dec = self._torch, self._decoder
        k, b = len(chunk_ids), len(decode_ids)
        if k > self.chunk or b > self.max_batch:
            raise ValueError(f"an iteration of {k} prompt tokens and {b} decodes exceeds "
                             f"C = {self.chunk}, B = {self.max_batch}")
        prefix = min(max(prefix, 0), self.context) if k else 0
        vocab = self.arch.vocab
        with torch.inference_mode():
            tokens = torch.tensor([t % vocab for t in (*chunk_ids, *decode_ids)],
                                  dtype=torch.long).to(self.device)
            dk, dv = self._decode_kv
            ck, cv = self._chunk_kv
            inputs = dec.assemble(
                self._net, BatchShape(b, k, self.context, prefix), tokens,
                ([c[:b] for c in dk], [c[:b] for c in dv]) if b else ([], []),
                ([c[:, :, :prefix + k] for c in ck], [c[:, :, :prefix + k] for c in cv])
                if k else ([], []))
            out: list[Any] = []
            seconds = self._timer(lambda: out.append(dec.step(self._net, inputs)))
            ids = [int(t) for t in out[0].tolist()]
        return ids, seconds


class DecoderCore(EngineCore):
    """`EngineCore` whose iterations are `DecoderPasses.run`, timed, on a worker thread."""

    def __init__(self, timing: EngineTiming, mixed: bool, passes: DecoderPasses,
                 stream_interval: int = 1, lead: float = 0.0) -> None:
        if passes.chunk != timing.chunk or passes.max_batch != timing.max_batch:
            raise ValueError("the decoder's KV cache was sized for another B or C")
        super().__init__(timing, mixed, 1.0, stream_interval, lead)
        self.passes = passes
        self.log: deque[PassRecord] = deque(maxlen=LOG_SIZE)

    def submit(self, stream: Stream) -> None:
        if stream.prompt_left > 0 and len(stream.prompt_ids) != stream.prompt_left:
            stream.prompt_ids = range(stream.prompt_left)
        stream.last_id = stream.prompt_ids[-1] if stream.prompt_ids else 0
        super().submit(stream)

    def _expected(self, chunk_tokens: int, decodes: int) -> float:
        """The last pass's time: what a prefill's announced end can go by before it runs."""
        return self.log[-1].seconds if self.log else 0.0

    async def _iterate(self, head: Stream | None, k: int, end: float) -> float:
        decodes = list(self._running)
        chunk_ids: Sequence[int] = ()
        prefix = 0
        if head is not None and k:
            prefix = len(head.prompt_ids) - head.prompt_left
            chunk_ids = head.prompt_ids[prefix:prefix + k]
        ids, seconds = await asyncio.to_thread(self.passes.run, chunk_ids, prefix,
                                               [s.last_id for s in decodes])
        if head is not None and k:
            if head.prompt_left <= k:  # its last chunk: the sample is its first token
                head.last_id = ids[0]
                if head.prefill_only:
                    head.ids.append(ids[0])
            ids = ids[1:]
        for s, t in zip(decodes, ids, strict=True):
            s.last_id = t
            s.ids.append(t)
        self.log.append(PassRecord(k, len(decodes), seconds))
        return self.model_time + seconds


def decoder_core(arch: Architecture, timing: EngineTiming, mixed: bool, device: DeviceChoice,
                 context: int | None, stream_interval: int, lead: float) -> DecoderCore:
    """The `--model NAME` engine core: `ValueError` for a bad size, `MeasureError` (or its
    `TorchMissing`) when the decoder cannot run here."""
    passes = DecoderPasses(arch, timing.max_batch, timing.chunk, context, device)
    return DecoderCore(timing, mixed, passes, stream_interval, lead)
