"""How the gateway hands a request from its prefill engine to its decode engine.

Two protocols, as the engines' own proxies speak them:

- `vllm` (vLLM 0.33's disaggregated proxy, `tests/v1/kv_connector/nixl_integration/
  toy_proxy_server.py`): the first step is the request sent NOT streamed, with `max_tokens`
  (and `max_completion_tokens`, if given) 1, no `stream_options`, no `min_tokens` /
  `min_completion_tokens` (the prefill engine does not take them) and `kv_transfer_params`
  `{"do_remote_decode": true, "do_remote_prefill": false, "remote_engine_id": null,
  "remote_block_ids": null, "remote_host": null, "remote_port": null}`; its JSON answer
  carries `kv_transfer_params` at the top level. The second step is the client's own
  request with those parameters, sent to the decode engine.
- `sglang` (SGLang's PD router, `python/sglang/srt/disaggregation/mini_lb.py`): the same
  request goes to the prefill server and the decode server at once, both carrying
  `bootstrap_host` (the prefill server's host), `bootstrap_port` (its KV bootstrap port)
  and `bootstrap_room` (a random integer in 0 … 2⁶³ − 1 that pairs the two); the client is
  answered from the decode server, the prefill server's answer is read and dropped.

The emulator answers both forms (`engine.py`), and, as an extension only it offers, a
streamed vLLM first step with a `prefill_ends` announcement (`Handoff.VLLM` with the
gateway's `streamed_prefill`), which lets the gateway free the prefill slot early.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Handoff(StrEnum):
    VLLM = "vllm"
    SGLANG = "sglang"


def vllm_prefill_body(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    """The first step's body: one token, the KV cache kept for a remote decode."""
    out = {k: v for k, v in body.items()
           if k not in ("stream_options", "min_tokens", "min_completion_tokens")}
    out.update(max_tokens=1, stream=stream, kv_transfer_params={
        "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
        "remote_block_ids": None, "remote_host": None, "remote_port": None})
    if "max_completion_tokens" in body:
        out["max_completion_tokens"] = 1
    return out


def sglang_body(body: dict[str, Any], host: str, port: int, room: int) -> dict[str, Any]:
    """The body both servers of a pair get: the client's, plus where and which room."""
    return dict(body, bootstrap_host=host, bootstrap_port=port, bootstrap_room=room)
