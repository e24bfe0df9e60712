"""The gateway classifies by the spec's rules: each request's class is read back from the
controller's per-class arrival counts. Services on 127.0.0.1 only, a dozen short requests."""

from __future__ import annotations

import aiohttp

from fluidgate.controllers.spec import ClassificationSpec, ControllerSpec
from tests.test_harness_gateway import cluster, run, spec  # noqa: F401  (spec: a fixture)

RULES = ClassificationSpec.model_validate({"rules": [
    {"class": "prefill_heavy", "models": ["big-model"]},
    {"class": "decode_heavy", "header": {"name": "X-Tenant", "values": ["acme"]}},
    {"class": "prefill_heavy", "prompt_tokens": {"min": 1000}},
], "fallback": "reject"})


def test_rules_precedence_and_refusals_at_the_gateway(spec: ControllerSpec) -> None:  # noqa: F811
    ruled = spec.model_copy(update={"classification": RULES})
    cases: list[tuple[dict[str, str], dict[str, object], int | str]] = [
        ({}, {"model": "big-model"}, "prefill_heavy"),
        ({"X-Tenant": "acme"}, {}, "decode_heavy"),
        ({}, {"prompt_tokens": 1500}, "prefill_heavy"),
        ({"X-Fluidgate-Class": "decode_heavy"}, {"model": "big-model", "prompt_tokens": 1500},
         "decode_heavy"),  # the header wins
        ({"x-tenant": "acme"}, {"model": "big-model"}, "prefill_heavy"),  # first rule wins
        ({}, {"model": "small-model"}, 400),  # no rule matches, fallback reject
        ({}, {"model": ["big-model"]}, 400),  # malformed
        ({"X-Fluidgate-Class": "nope"}, {"model": "big-model"}, 400),
    ]

    async def body() -> None:
        async with cluster(ruled, scale=20.0) as (url, _, gw), aiohttp.ClientSession() as s:
            names = [c.name for c in ruled.classes]
            for headers, extra, want in cases:
                before = [c.arrived for c in gw.ctl.stats().classes]
                data = {"prompt_tokens": 20, "max_tokens": 2, **extra}
                async with s.post(url + "/v1/completions", json=data, headers=headers) as r:
                    if want == 400:
                        assert r.status == 400
                        err = (await r.json(content_type=None))["error"]
                        assert err["code"] == 400 and err["message"]
                    else:
                        assert r.status == 200, await r.text()
                after = [c.arrived for c in gw.ctl.stats().classes]
                got = [n for n, a, b in zip(names, after, before, strict=True) if a > b]
                assert got == ([] if want == 400 else [want]), (headers, extra)
        # the spec as solved: without a header, the builder's length ranges decide
        async with cluster(spec, scale=20.0) as (url, _, gw), aiohttp.ClientSession() as s:
            for prompt, want_i in ((948, 0), (949, 1)):
                before = [c.arrived for c in gw.ctl.stats().classes]
                async with s.post(url + "/v1/completions",
                                  json={"prompt_tokens": prompt, "max_tokens": 2}) as r:
                    assert r.status == 200
                after = [c.arrived for c in gw.ctl.stats().classes]
                assert after[want_i] == before[want_i] + 1
    run(body)
