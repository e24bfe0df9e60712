"""Request bodies real engines accept, and counting the tokens of a stream from any engine.

The emulated engine takes a prompt's length outright (`prompt_tokens`) and tags each chunk
with its token count (`"fluidgate": {"tokens": n}`). Real engines need a prompt and say
nothing of the kind, so for them each request carries token ids (no tokenizer needed, and the
same bytes whatever the model), `ignore_eos` (so it runs to `max_tokens`, the length the plan
assumes), and asks for the usage count in every chunk (`stream_options`
`continuous_usage_stats`, OpenAI's `include_usage` extended by vLLM and SGLang), whose growth
is the number of tokens that chunk brought. Prompt ids are drawn at random per request so no
two prompts share a prefix an engine could reuse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SERVED_NAME = "fluidgate-model"  # the model name engines serve and requests carry


class TokenPrompts:
    """Bodies for real engines: `body(prompt, output)` with `prompt` random token ids."""

    def __init__(self, token_ids: tuple[int, int], seed: int) -> None:
        self.low, self.high = token_ids
        self._rng = np.random.default_rng([seed, 0x70])

    def __call__(self, prompt: int, output: int) -> dict[str, Any]:
        ids = self._rng.integers(self.low, self.high, prompt).tolist()
        return {"model": SERVED_NAME, "prompt": ids, "max_tokens": output, "stream": True,
                "ignore_eos": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}


def chunk_tokens(event: Any, usage_seen: int) -> tuple[int, int]:
    """(tokens this streamed event brought, the usage count seen so far after it).

    The emulator's own count wins where present (also in a chunk the gateway made up for
    the prefill's token); otherwise the rise of `usage.completion_tokens` over the last one
    seen in this stream.
    """
    if not isinstance(event, dict):
        return 0, usage_seen
    ours = event.get("fluidgate")
    if isinstance(ours, dict):
        n = ours.get("tokens", 0)
        return (n if type(n) is int and n > 0 else 0), usage_seen
    usage = event.get("usage")
    done = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if type(done) is int and done > usage_seen:
        return done - usage_seen, done
    return 0, usage_seen
