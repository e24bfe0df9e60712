"""The emulated engine's scheduler: continuous batching on a model clock.

One asyncio task runs iterations back to back while there is work: each carries every
running decode (one token each) and, on a mixed engine, one chunk of at most `C` prompt
tokens of the oldest waiting prefill; it lasts `EngineTiming.iteration(k, b)` model seconds.
Work that arrives during an iteration joins the next one; an idle engine starts at once.

Iteration ends are scheduled at absolute model times (`origin + t_model / scale` on the
event loop's clock), never as "sleep τ after the last one ended": on a busy machine a late
wake-up is made up by the next sleep being shorter, so timer jitter does not accumulate
into lost throughput. An engine that has fallen behind runs its due iterations back to back
without sleeping, so the engine itself cuts each stream's tokens into chunks as it produces
them: the first token alone, then every `stream_interval` tokens (and the last at once), as
vLLM's `--stream-interval` does, so a compressed run does not drown the machine in events.
A stream's reader takes whole chunks, however many iterations ran before it woke, so a
catch-up never merges chunks nor skips a prefill's announced end.

A prefill-only request (the first step of the two-step protocol) can announce its end
`lead` model seconds early, counting the prefills queued ahead of it, so the gateway sends
the next prefill while the engine still has that much prefill work in hand and goes on
without an idle gap. The gateway's HTTP round trip would otherwise sit on the prefill's
critical path, and a time scale of S multiplies it by S in model time: a few wall
milliseconds on a busy machine are tens of model milliseconds, against prefills of 55 ms.

An iteration that raises (a bug, or a real forward pass's CUDA error) must not leave
requests waiting on a loop that is gone: the loop logs the cause and stops, every stream
in the engine fails with it, and the engine refuses new work and reports itself failed
(`failure`), so its `/health` turns non-200 and a gateway routes around it. A failed pass
may have left the device or the core's state broken, so the engine does not go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from fluidgate.harness.timing import EngineTiming

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Stream:
    """One request inside the engine. `prompt_left` > 0 while it still needs prefill."""

    prompt_left: int
    tokens_left: int  # decode tokens still to produce
    prefill_only: bool = False  # the two-step protocol's first step: stop after prefill
    produced: int = 0
    cut: int = 0  # tokens already in a chunk
    chunks: deque[int] = field(default_factory=deque)  # cut, not yet taken: tokens in each
    done: bool = False
    error: str | None = None  # why the engine failed it (then no more tokens come)
    aborted: bool = False
    start_time: float = -1.0  # model time its first iteration began (-1: not yet)
    handoff: float = -1.0  # prefill-only: model time its prefill will end, once in sight
    finish_time: float = 0.0  # model time of its last token
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Real forward passes only (`passes.DecoderCore`): the prompt's token ids, the ids
    # generated so far (what is streamed), and the id the next pass feeds for this stream.
    prompt_ids: Sequence[int] = ()
    ids: list[int] = field(default_factory=list)
    last_id: int = 0

    def cut_chunk(self) -> None:
        """Close a chunk of the tokens produced since the last one: one streamed event."""
        self.chunks.append(self.produced - self.cut)
        self.cut = self.produced
        self.ready.set()

    def fail(self, error: str) -> None:
        self.error = error
        self.ready.set()

    def take(self) -> list[int]:
        """The chunks cut since the last call, oldest first (the tokens in each)."""
        out = list(self.chunks)
        self.chunks.clear()
        self.ready.clear()
        return out


class EngineCore:
    """Continuous batching for one emulated GPU; see the module docstring."""

    def __init__(self, timing: EngineTiming, mixed: bool, time_scale: float = 1.0,
                 stream_interval: int = 1, lead: float = 0.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time scale must be positive, not {time_scale!r}")
        if stream_interval < 1:
            raise ValueError(f"stream interval must be at least 1 token, not {stream_interval}")
        self.timing = timing
        self.mixed = mixed
        self.scale = time_scale
        self.interval = stream_interval
        if not lead >= 0:
            raise ValueError(f"prefill lead must be 0 or more seconds, not {lead!r}")
        self.lead = lead  # model seconds: announce prefills ending within this, 0 never
        self.decode_slots = timing.decode_slots(mixed)
        self._prefills: deque[Stream] = deque()
        self._waiting: deque[Stream] = deque()  # prefilled, waiting for a decode slot
        self._running: list[Stream] = []
        self._wake = asyncio.Event()
        self._origin = 0.0
        self.model_time = 0.0
        self.iterations = 0
        self.failure: str | None = None  # the error that stopped the loop, once it has

    def now(self) -> float:
        """Model seconds since the engine started."""
        return (asyncio.get_running_loop().time() - self._origin) * self.scale

    @property
    def load(self) -> tuple[int, int, int]:
        """(prefills waiting or running, decodes waiting, decodes running)."""
        return len(self._prefills), len(self._waiting), len(self._running)

    def submit(self, stream: Stream) -> None:
        if self.failure is not None:
            stream.fail(self.failure)
            return
        if stream.prompt_left > 0:
            if not self.mixed:
                raise ValueError("a decode-only (solo) engine cannot prefill")
            self._prefills.append(stream)
        else:
            self._waiting.append(stream)
        self._wake.set()

    async def run(self) -> None:
        """The iteration loop; cancel the task to stop it. It returns only when an
        iteration raised, after failing the engine (the module docstring)."""
        self._origin = asyncio.get_running_loop().time()
        try:
            await self._loop()
        except Exception as exc:  # any cause: the streams must fail, not hang
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.failure = f"engine iteration failed: {type(exc).__name__}: {exc}"
        log.error("%s; failing its %d requests, the engine serves no more", self.failure,
                  len(self._prefills) + len(self._waiting) + len(self._running),
                  exc_info=exc)
        for s in (*self._prefills, *self._waiting, *self._running):
            s.fail(self.failure)
        self._prefills.clear()
        self._waiting.clear()
        self._running.clear()

    async def _loop(self) -> None:
        while True:
            self._drop_aborted()
            if not (self._prefills or self._waiting or self._running):
                self._wake.clear()
                await self._wake.wait()
                self.model_time = max(self.model_time, self.now())
                continue
            while self._waiting and len(self._running) < self.decode_slots:
                joined = self._waiting.popleft()
                if joined.start_time < 0:
                    joined.start_time = self.model_time
                self._running.append(joined)
            head = self._prefills[0] if self.mixed and self._prefills else None
            if head is not None and head.start_time < 0:
                head.start_time = self.model_time
            k = min(self.timing.chunk, head.prompt_left) if head is not None else 0
            end = self.model_time + self._expected(k, len(self._running))
            if head is not None and self.lead > 0:
                self._announce(end)
            self.model_time = await self._iterate(head, k, end)
            self.iterations += 1
            self._finish_iteration(head, k, self.model_time)

    def _expected(self, chunk_tokens: int, decodes: int) -> float:
        """Model seconds the next iteration will last (announced before it runs)."""
        return self.timing.iteration(chunk_tokens, decodes)

    async def _iterate(self, head: Stream | None, k: int, end: float) -> float:
        """Run the iteration and return the model time it ends: here, sleep until `end`,
        scheduled absolutely so that late wake-ups do not accumulate."""
        delay = self._origin + end / self.scale - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        return end

    def _announce(self, end: float) -> None:
        """Announce each prefill-only request whose prefill ends within `lead` of `end`,
        the end of the iteration starting now (always in its last iteration), after the
        prefills queued ahead of it. Counting the queue, not the head alone, keeps `lead`
        of prefill work in hand however short the prompts are. `handoff` is the end
        estimated with today's number of decodes (exact when it does not change)."""
        chunk, b = self.timing.chunk, len(self._running)
        t = end
        for i, s in enumerate(self._prefills):
            t += self._prefill_span(s.prompt_left - min(chunk, s.prompt_left) if i == 0
                                    else s.prompt_left, b)
            if t - end > self.lead:
                return
            if s.prefill_only and s.handoff < 0:
                s.handoff = t
                s.ready.set()

    def _prefill_span(self, tokens: int, decodes: int) -> float:
        """Model seconds to prefill `tokens` in chunks of C alongside `decodes` decodes."""
        full, rest = divmod(tokens, self.timing.chunk)
        span = full * self._expected(self.timing.chunk, decodes)
        return span + (self._expected(rest, decodes) if rest else 0.0)

    def _finish_iteration(self, head: Stream | None, k: int, end: float) -> None:
        still: list[Stream] = []
        for s in self._running:
            s.produced += 1
            s.tokens_left -= 1
            if s.tokens_left <= 0:
                self._complete(s, end)
            else:
                still.append(s)
                if s.produced == 1 or s.produced - s.cut >= self.interval:
                    s.cut_chunk()
        self._running = still
        if head is not None:
            head.prompt_left -= k
            if head.prompt_left <= 0:
                self._prefills.popleft()
                if head.prefill_only:
                    head.produced = 1
                    self._complete(head, end)
                else:
                    self._waiting.append(head)

    @staticmethod
    def _complete(s: Stream, end: float) -> None:
        s.done = True
        s.finish_time = end
        s.cut_chunk()  # the last chunk, which the reader finishes the answer with

    def _drop_aborted(self) -> None:
        if any(s.aborted for s in self._running):
            self._running = [s for s in self._running if not s.aborted]
        for q in (self._prefills, self._waiting):
            if any(s.aborted for s in q):
                kept = [s for s in q if not s.aborted]
                q.clear()
                q.extend(kept)
