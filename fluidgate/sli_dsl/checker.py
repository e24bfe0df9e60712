"""Semantic checks: `Document` → typed `Policy`, reporting every problem found in one pass.

Each block is checked independently and problems are collected in a `DiagnosticBag`, so a
user with three typos sees three errors at once. Only if the bag holds no error is a
`Policy` built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fluidgate.diagnostics import DiagnosticBag, Span, did_you_mean
from fluidgate.model import (
    Cluster,
    Objective,
    Policy,
    PricingMode,
    WorkloadClass,
)
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.class_table import load_class_table
from fluidgate.sli_dsl.fields import (
    Price,
    fields,
    in_range,
    integer,
    per_token,
    plausible,
    positive,
    value,
)
from fluidgate.sli_dsl.iteration import check_calibration_fit, check_iteration
from fluidgate.sli_dsl.slo_check import check_slo_block
from fluidgate.sli_dsl.units import (
    MONEY_PER_REQUEST,
    MONEY_PER_TOKEN,
    NUMBER,
    RATE,
    TIME,
    TOKENS,
)

CLUSTER_FIELDS = ("gpus", "max_batch", "chunk")
PRICE_FIELDS = ("input", "output")
CLASS_FIELDS = ("rate", "prompt", "output", "patience", "weight")
PRICING_MODES = ("bundled", "separate")


def _check_cluster(
    block: sx.ClusterBlock, base_dir: Path | None, bag: DiagnosticBag
) -> Cluster | None:
    f = fields(block.assigns, CLUSTER_FIELDS, "the cluster block", bag)
    for name in CLUSTER_FIELDS:
        if name not in f:
            bag.error(f"the cluster block needs '{name}'", block.span)
    gpus = integer(f["gpus"], 1, bag) if "gpus" in f else None
    batch = integer(f["max_batch"], 2, bag) if "max_batch" in f else None
    chunk = None
    if "chunk" in f:
        got = value(f["chunk"], [TOKENS], bag, "256 tokens")
        if got is not None and positive(f["chunk"], got.const, bag) and plausible(
                f["chunk"], got.const, bag):
            chunk = got.const
    iteration = calib = None
    if not block.iterations:
        bag.error("the cluster block needs 'iteration { mixed = ...; solo = ... }' or "
                  "'iteration from \"calib.json\"'", block.span)
    for extra in block.iterations[1:]:
        bag.error("the iteration time is given twice", extra.span)
    if block.iterations:
        iteration, calib = check_iteration(block.iterations[0], base_dir, bag)
    if gpus is None or batch is None or chunk is None or iteration is None:
        return None
    cluster = Cluster(gpus=gpus, max_batch=batch, chunk=chunk, iteration=iteration)
    if calib is not None:
        check_calibration_fit(cluster, calib, block.iterations[0].span, bag)
    return cluster


def _check_prices(
    assigns: Sequence[sx.Assign], where: str, bag: DiagnosticBag
) -> dict[str, Price]:
    f = fields(assigns, PRICE_FIELDS, where, bag)
    out: dict[str, Price] = {}
    for name, a in f.items():
        got = value(a, [MONEY_PER_TOKEN, MONEY_PER_REQUEST], bag, "0.1 per token")
        if got is None or not positive(a, got.const, bag, strict=False):
            continue
        per_request = got.dim == MONEY_PER_REQUEST
        key = "price per request" if per_request else "price per token"
        written = a.value if isinstance(a.value, sx.Quantity) else None
        shown = None
        if written is not None and any(w in ("ktok", "Mtok") for w in written.pers):
            shown = f"{written.value:g} per {written.pers[-1]}"
        if in_range(f"'{a.name}'", got.const, a.value.span, bag, key, zero_ok=True,
                    shown=shown):
            out[name] = Price(got.const, per_request)
    return out


def _check_class(
    block: sx.ClassBlock,
    cluster: Cluster | None,
    default_prices: dict[str, Price],
    bag: DiagnosticBag,
) -> WorkloadClass | None:
    where = f"class '{block.name}'"
    if block.name == "all":
        bag.error("a class may not be called 'all' (it means every class in an slo)",
                  block.name_span)
    f = fields(block.assigns, CLASS_FIELDS, where, bag)
    for name in ("rate", "prompt", "output"):
        if name not in f:
            bag.error(f"{where} needs '{name}'", block.name_span)
    rate = prompt = output = None
    patience: float | None = None
    ok = True
    if "rate" in f:
        got = value(f["rate"], [RATE], bag, "0.5 /s per gpu")
        if got is not None and positive(f["rate"], got.const, bag):
            if got.per_gpu:
                rate = got.const
            elif cluster is not None:
                rate = got.const / cluster.gpus
            if rate is not None and not plausible(f["rate"], rate, bag):
                rate = None
    for name in ("prompt", "output"):
        if name in f:
            got = value(f[name], [TOKENS], bag, "300 tokens")
            if got is not None and positive(f[name], got.const, bag) and plausible(
                    f[name], got.const, bag):
                if name == "prompt":
                    prompt = got.const
                else:
                    output = got.const
    if "patience" in f:
        a = f["patience"]
        if isinstance(a.value, sx.Metric) and a.value.name == "none" and a.value.arg is None:
            patience = None
        else:
            got = value(a, [TIME], bag, "10 s")
            ok = got is not None and positive(a, got.const, bag) and plausible(a, got.const,
                                                                                   bag)
            patience = got.const if got is not None else None
    weight = 1.0
    if "weight" in f:
        got = value(f["weight"], [NUMBER], bag, "1")
        weight_ok = got is not None and positive(f["weight"], got.const, bag) and plausible(
            f["weight"], got.const, bag)
        ok = ok and weight_ok
        weight = got.const if got is not None else 1.0
    prices = dict(default_prices)
    for extra in block.prices[1:]:
        bag.error(f"{where} has two price blocks", extra.span)
    if block.prices:
        prices.update(_check_prices(block.prices[0].assigns, f"the price of {where}", bag))
    if not ok or rate is None or prompt is None or output is None:
        return None
    return WorkloadClass(
        name=block.name,
        rate=rate,
        prompt=prompt,
        output=output,
        patience=patience,
        price_input=per_token(prices.get("input"), prompt),
        price_output=per_token(prices.get("output"), output),
        weight=weight,
        span=block.name_span,
    )


def _single(
    items: Sequence[sx.TopLevel], kind: type, label: str, bag: DiagnosticBag
) -> list[sx.TopLevel]:
    found = [i for i in items if isinstance(i, kind)]
    for extra in found[1:]:
        bag.error(f"the {label} is given twice (first on line {found[0].span.line})",
                  extra.span)
    return found


def _duplicate(name: str, span: Span, seen: dict[str, Span], file: str,
               bag: DiagnosticBag) -> bool:
    """Report a class name given before (inline or in a table), naming both places."""
    first = seen.get(name)
    if first is None:
        return False
    where = (f"line {first.line}" if first.file == file
             else f"{first.file}:{first.line}:{first.column}")
    bag.error(f"class '{name}' is defined twice (first on {where})", span)
    return True


def check_document(
    doc: sx.Document, base_dir: Path | None, bag: DiagnosticBag
) -> Policy | None:
    """Check a parsed document; returns a Policy only when no error was reported."""
    top = Span(doc.file, 1, 1, 1, 2)
    names = _single(doc.items, sx.PolicyDecl, "policy name", bag)
    clusters = _single(doc.items, sx.ClusterBlock, "cluster block", bag)
    pricings = _single(doc.items, sx.PricingBlock, "pricing block", bag)
    objectives = _single(doc.items, sx.ObjectiveDecl, "objective", bag)
    if not clusters:
        bag.error("the policy needs a 'cluster { ... }' block", top)
    if not pricings:
        bag.error("the policy needs a 'pricing bundled { ... }' or 'pricing separate { ... }' "
                  "block", top)
    cluster = None
    if clusters:
        assert isinstance(clusters[0], sx.ClusterBlock)
        cluster = _check_cluster(clusters[0], base_dir, bag)
    mode: PricingMode = "bundled"
    default_prices: dict[str, Price] = {}
    if pricings:
        p = pricings[0]
        assert isinstance(p, sx.PricingBlock)
        if p.mode not in PRICING_MODES:
            bag.error(f"unknown pricing '{p.mode}'{did_you_mean(p.mode, PRICING_MODES)}; "
                      "expected 'bundled' or 'separate'", p.mode_span)
        else:
            mode = "bundled" if p.mode == "bundled" else "separate"
        default_prices = _check_prices(p.assigns, "the pricing block", bag)
    objective = Objective.REVENUE
    if objectives:
        o = objectives[0]
        assert isinstance(o, sx.ObjectiveDecl)
        choices = [x.value for x in Objective]
        if o.name not in choices:
            bag.error(f"unknown objective '{o.name}'{did_you_mean(o.name, choices)}; expected "
                      f"one of {', '.join(choices)}", o.name_span)
        else:
            objective = Objective(o.name)
    class_items = [i for i in doc.items if isinstance(i, sx.ClassBlock | sx.ClassesFrom)]
    if not class_items:
        bag.error("the policy needs at least one 'class NAME { ... }' block (or a "
                  "'classes from \"table.csv\"')", top)
    seen: dict[str, Span] = {}
    classes: list[WorkloadClass] = []
    for item in class_items:
        if isinstance(item, sx.ClassesFrom):
            rows, table_names = load_class_table(item, base_dir, cluster, default_prices, bag)
            fresh = set()
            for class_name, span in table_names:
                if not _duplicate(class_name, span, seen, doc.file, bag):
                    seen[class_name] = span
                    fresh.add(class_name)
            classes.extend(c for c in rows if c.name in fresh)
            continue
        block = item
        if _duplicate(block.name, block.name_span, seen, doc.file, bag):
            continue
        seen[block.name] = block.name_span
        checked = _check_class(block, cluster, default_prices, bag)
        if checked is not None:
            classes.append(checked)
    slos = []
    for slo_block in (i for i in doc.items if isinstance(i, sx.SloBlock)):
        slos.extend(check_slo_block(slo_block, tuple(seen), cluster, doc.text, bag,
                                    prompts={c.name: c.prompt for c in classes}))
    if bag.errors or cluster is None:
        return None
    name = str(getattr(names[0], "name", "")) if names else Path(doc.file).stem
    return Policy(
        name=name,
        cluster=cluster,
        pricing=mode,
        classes=tuple(classes),
        objective=objective,
        slos=tuple(slos),
        source_file=doc.file,
        source_text=doc.text,
        class_tables=tuple(f for f in bag.sources if f != doc.file),
    )
