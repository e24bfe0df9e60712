"""The slice of the OpenAI completions API the harness speaks, and vLLM's two-step extension.

Bodies are read by the engine and the gateway from untrusted clients, so parsing never
raises anything but `BadRequest` (which becomes a 400 with a JSON error). Prompt length
needs no tokenizer: a list of token ids counts its ids, the `prompt_tokens` extension gives
the length outright, and text counts whitespace-separated words.

Disaggregated serving follows vLLM's disaggregated proxy: the first step sends the request
to a prefill engine with `max_tokens = 1` and `kv_transfer_params = {"do_remote_decode":
true}`; that engine answers with `kv_transfer_params` naming where the KV cache lives; the
second step sends the original request with those parameters to the decode engine, which
skips the prefill and generates `max_tokens` tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_BODY = 1 << 20  # bytes: a request body above this is refused, not read
MAX_PROMPT_TOKENS = 1 << 20
MAX_OUTPUT_TOKENS = 1 << 20
MODEL_NAME = "fluidgate-emulated"


class BadRequest(ValueError):
    """A request body the service refuses; `str()` is the message returned to the client."""


class Step(StrEnum):
    FULL = "full"  # prefill and decode here
    PREFILL = "prefill"  # the first step: prefill, one token, then hand the KV cache over
    DECODE = "decode"  # the second step: KV cache already transferred, decode only


class Api(StrEnum):
    COMPLETIONS = "completions"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class Request:
    api: Api
    prompt_tokens: int
    max_tokens: int
    stream: bool
    step: Step
    body: dict[str, Any]


def _count_prompt(body: dict[str, Any], api: Api) -> int:
    explicit = body.get("prompt_tokens")
    if explicit is not None:
        if type(explicit) is not int or not 1 <= explicit <= MAX_PROMPT_TOKENS:
            raise BadRequest(f"prompt_tokens must be an integer from 1 to {MAX_PROMPT_TOKENS}")
        return explicit
    if api is Api.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list")
        words = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, str):
                raise BadRequest("each message needs a string 'content'")
            words += len(content.split())
        return max(words, 1)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return max(len(prompt.split()), 1)
    if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
        return len(prompt)
    raise BadRequest("prompt must be a string or a non-empty list of token ids "
                     "(or give prompt_tokens)")


def parse_request(raw: bytes, api: Api) -> Request:
    """A validated request, or `BadRequest` saying what is wrong."""
    if len(raw) > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    max_tokens = body.get("max_tokens", 16)
    if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
        raise BadRequest(f"max_tokens must be an integer from 1 to {MAX_OUTPUT_TOKENS}")
    stream = body.get("stream", False)
    if type(stream) is not bool:
        raise BadRequest("stream must be true or false")
    kv = body.get("kv_transfer_params")
    if kv is None:
        step = Step.FULL
    elif not isinstance(kv, dict):
        raise BadRequest("kv_transfer_params must be an object")
    elif kv.get("do_remote_decode") is True:
        step = Step.PREFILL
    elif kv.get("do_remote_prefill") is True:
        step = Step.DECODE
    else:
        raise BadRequest("kv_transfer_params needs do_remote_decode or do_remote_prefill true")
    return Request(api, _count_prompt(body, api), max_tokens, stream, step, body)


def prompt_ids(req: Request) -> Sequence[int]:
    """The prompt's token ids when the client sent ids, else stand-ins `0 … n − 1` (there is
    no tokenizer); a real forward pass feeds them, reduced modulo its vocabulary."""
    prompt = req.body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == req.prompt_tokens:
        return prompt
    return range(req.prompt_tokens)


def error_payload(message: str, kind: str = "invalid_request_error", code: int = 400
                  ) -> dict[str, Any]:
    """An OpenAI-style error: a JSON answer's body, or an in-stream error event."""
    return {"error": {"message": message, "type": kind, "code": code}}


def error_body(message: str, kind: str = "invalid_request_error", code: int = 400) -> str:
    return json.dumps(error_payload(message, kind, code))


def chunk_payload(api: Api, rid: str, tokens: int, finish: str | None,
                  extra: dict[str, Any] | None = None, ids: Sequence[int] | None = None,
                  text: str | None = None) -> dict[str, Any]:
    """One streamed chunk (or, with `stream` false, the whole answer's choice). Its text is
    `text` when given (tokens relayed from an engine), else the generated token ids when
    real passes made them, else one "x" per token."""
    if text is None:
        text = " x" * tokens if ids is None else "".join(f" {i}" for i in ids)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if api is Api.CHAT:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    obj = "chat.completion.chunk" if api is Api.CHAT else "text_completion"
    out: dict[str, Any] = {"id": rid, "object": obj, "created": int(time.time()),
                           "model": MODEL_NAME, "choices": [choice],
                           "fluidgate": {"tokens": tokens}}
    if extra:
        out.update(extra)
    return out


def choice_text(payload: Any) -> str:
    """The text of an engine's chunk or answer (its first choice's `text`, or for chat its
    delta's or message's `content`); "" when it has none. Never raises on odd input."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    text = choice.get("text")
    for key in ("delta", "message"):
        part = choice.get(key)
        if text is None and isinstance(part, dict):
            text = part.get("content")
    return text if isinstance(text, str) else ""


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
