"""`classes from "table.csv"`: many classes in one columnar file.

An operator with a thousand classes (derived from logs by `fluidgate classes`) should not
pay for tokenising a thousand `class` blocks: the table is split with the csv module in one
pass and each column is converted and range-checked as a whole array. The checks are the
inline ones (`fields.PLAUSIBLE`, `in_range`, `positive_at`, the unit tables), applied per
column, and each value goes through the same float operations an inline literal does
(`value * unit scale`, then `* per-word scale`, then `/ gpus` for a cluster-wide rate), so a
table solves to exactly the LP of the same classes written inline. Units live in the header
(`rate[/s per gpu]`, `price_input[per Mtok]`); a bad cell is reported as `file:row:column`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fluidgate.diagnostics import DiagnosticBag, Span, did_you_mean
from fluidgate.model import Cluster, WorkloadClass
from fluidgate.reads import InputKind, ReadError, read_text_input
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.evaluate import quantity_value
from fluidgate.sli_dsl.fields import PLAUSIBLE, Price, in_range, positive_at
from fluidgate.sli_dsl.units import (
    MONEY_PER_REQUEST,
    MONEY_PER_TOKEN,
    NUMBER,
    PER_MONEY,
    RATE,
    TIME,
    TOKENS,
    UNITS,
    Dim,
)

Floats = npt.NDArray[np.float64]

# column -> (dimensions it may have, unit when the header gives none, required)
COLUMNS: dict[str, tuple[tuple[Dim, ...], str | None, bool]] = {
    "name": ((), None, True),
    "rate": ((RATE,), None, True),
    "prompt": ((TOKENS,), "tokens", True),
    "output": ((TOKENS,), "tokens", True),
    "patience": ((TIME,), "s", False),
    "weight": ((NUMBER,), None, False),
    "price_input": ((MONEY_PER_TOKEN, MONEY_PER_REQUEST), None, False),
    "price_output": ((MONEY_PER_TOKEN, MONEY_PER_REQUEST), None, False),
}
_EXAMPLE_UNIT = {"rate": "/s per gpu", "price_input": "per Mtok", "price_output": "per Mtok"}
_HEADER_CELL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[([^\]]*)\])?\s*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ERRORS = 20  # per table: a wholly wrong table says so in a screenful, then counts the rest


@dataclass(frozen=True)
class _Column:
    """A header cell: which field, where it is, and how its numbers scale to base units."""

    field: str
    index: int
    scales: tuple[float, ...]  # applied in order, as `quantity_value` applies them
    dim: Dim
    per_gpu: bool


class _Table:
    """The rows of one table, with what is needed to point at a cell."""

    def __init__(self, file: str, lines: list[str], numbers: list[int],
                 rows: list[list[str]], bag: DiagnosticBag) -> None:
        self.file, self.lines, self.numbers, self.rows, self.bag = file, lines, numbers, rows, bag
        self.reported = 0

    def span(self, row: int, index: int) -> Span:
        """The cell `index` of data row `row` (0-based), as file:line:column."""
        line = self.lines[row]
        start, end = _cell_bounds(line, index)
        number = self.numbers[row]
        return Span(self.file, number, start + 1, number, max(end, start + 1) + 1)

    def error(self, message: str, row: int, index: int) -> None:
        self.reported += 1
        if self.reported <= MAX_ERRORS:
            self.bag.error(message, self.span(row, index))

    def finish(self) -> None:
        if self.reported > MAX_ERRORS:
            self.bag.error(f"{self.reported - MAX_ERRORS:,} more bad cells in class table "
                           f"'{self.file}' are not shown")


def _cell_bounds(line: str, index: int) -> tuple[int, int]:
    """Start and end offsets of field `index` in a csv line (quotes respected)."""
    if '"' not in line:  # the common case, in C
        parts = line.split(",", index + 1)
        if index >= len(parts):
            return len(line), len(line)
        start = sum(map(len, parts[:index])) + index
        return start, start + len(parts[index])
    field, start, quoted = 0, 0, False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            if field == index:
                return start, i
            field, start = field + 1, i + 1
    return (start, len(line)) if field == index else (len(line), len(line))


def load_class_table(
    item: sx.ClassesFrom,
    base_dir: Path | None,
    cluster: Cluster | None,
    default_prices: dict[str, Price],
    bag: DiagnosticBag,
) -> tuple[list[WorkloadClass], list[tuple[str, Span]]]:
    """The classes of the table `item` names, each with the span of its name cell, and the
    names with their spans; no classes after reporting errors (every bad cell up to
    `MAX_ERRORS`), but still the names it could read, so SLOs that name them do not add
    errors of their own."""
    path = Path(item.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = read_text_input(path, InputKind.CLASS_TABLE)
    except ReadError as exc:
        bag.error(str(exc), item.path_span)
        return [], []
    file = str(path)
    text = text.removeprefix("\ufeff")  # spreadsheets save CSV with a byte-order mark
    bag.sources[file] = text
    lines: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(line)
            numbers.append(number)
    if not lines:
        bag.error(f"class table '{file}' has no header row (name,rate[/s per gpu],prompt,"
                  "output,...)", item.path_span)
        return [], []
    try:
        rows = list(csv.reader(lines, strict=True))
    except csv.Error as exc:
        bag.error(f"class table '{file}' is not valid CSV: {exc}", item.path_span)
        return [], []
    if len(rows) != len(lines):
        bag.error(f"class table '{file}': a quoted cell runs over a line end; each class is "
                  "one line", item.path_span)
        return [], []
    table = _Table(file, lines[1:], numbers[1:], rows[1:], bag)
    header = _Table(file, lines[:1], numbers[:1], rows[:1], bag)
    columns = _header(rows[0], header, cluster)
    if columns is None:
        return [], []
    if not table.rows:
        bag.error(f"class table '{file}' has a header but no classes", item.path_span)
        return [], []
    width = len(rows[0])
    for r, row in enumerate(table.rows):
        if len(row) != width:
            table.error(f"this row has {len(row)} cells, the header {width}", r,
                        min(len(row), width) - 1 if len(row) > width else 0)
    names = _names(table, columns)
    if table.reported:
        table.finish()
        return [], names
    return _classes(table, columns, cluster, default_prices, names) or [], names


def _header(cells: list[str], header: _Table, cluster: Cluster | None,
            ) -> dict[str, _Column] | None:
    columns: dict[str, _Column] = {}
    bag = header.bag
    errors = len(bag.errors)
    for index, cell in enumerate(cells):
        span = header.span(0, index)
        m = _HEADER_CELL.fullmatch(cell)
        if m is None:
            bag.error(f"cannot read column heading {cell!r}; write a field name with its unit "
                      "in brackets, like 'rate[/s per gpu]'", span)
            continue
        name, unit_text = m.group(1), m.group(2)
        if name not in COLUMNS:
            bag.error(f"unknown column '{name}'{did_you_mean(name, COLUMNS)}; expected "
                      f"{', '.join(COLUMNS)}", span)
            continue
        if name in columns:
            bag.error(f"column '{name}' is given twice", span)
            continue
        column = _unit(name, index, unit_text, span, bag)
        if column is not None:
            columns[name] = column
    for name, (_, _, required) in COLUMNS.items():
        if required and name not in columns and not any(
                d.message.startswith(f"column '{name}'") for d in bag.errors[errors:]):
            bag.error(f"class table '{header.file}' needs a '{name}' column",
                      header.span(0, 0))
    if len(bag.errors) > errors:
        return None
    rate = columns["rate"]
    if not rate.per_gpu and cluster is None:
        return None  # the cluster's error is reported; a cluster-wide rate needs its gpus
    return columns


def _unit(name: str, index: int, unit_text: str | None, span: Span,
          bag: DiagnosticBag) -> _Column | None:
    dims, default, _ = COLUMNS[name]
    if name == "name":
        if unit_text is not None:
            bag.error("the 'name' column takes no unit", span)
            return None
        return _Column(name, index, (), NUMBER, False)
    words = (unit_text or default or "").split()
    if not words and dims != (NUMBER,):
        bag.error(f"column '{name}' needs its unit in the heading, like "
                  f"'{name}[{_EXAMPLE_UNIT.get(name, '')}]'", span,
                  hint="'rate[/s]' is cluster-wide, 'rate[/s per gpu]' per GPU"
                  if name == "rate" else None)
        return None
    unit = words[0] if words and words[0] != "per" else None
    rest = words[1:] if unit is not None else words
    if unit is not None and unit not in UNITS:
        bag.error(f"unknown unit '{unit}' in column '{name}'{did_you_mean(unit, UNITS)}",
                  span)
        return None
    if len(rest) % 2 or any(w != "per" for w in rest[0::2]):
        bag.error(f"cannot read the unit '{unit_text}' of column '{name}'; write it as in a "
                  "policy, like '/s per gpu' or 'per Mtok'", span)
        return None
    pers = tuple(rest[1::2])
    probe = quantity_value(sx.Quantity(1.0, unit, pers, span), bag)
    if probe is None:
        return None
    if probe.dim not in dims:
        wanted = " or ".join(d.describe() for d in dims)
        bag.error(f"column '{name}' must be {wanted}, not {probe.dim.describe()}", span)
        return None
    scales = (UNITS[unit][0] if unit is not None else 1.0,
              *(PER_MONEY[w][0] for w in pers if w in PER_MONEY))
    return _Column(name, index, scales, probe.dim, probe.per_gpu)


def _numbers(table: _Table, column: _Column, optional: bool) -> Floats:
    """A column in base units; NaN where an optional cell is empty (or 'none'); a cell that
    is not a finite number is reported."""
    cells = [row[column.index] for row in table.rows]
    try:  # the whole column at once; any empty or odd cell sends it cell by cell
        raw = np.asarray(cells, dtype=np.float64)
        if not np.isfinite(raw).all():
            raise ValueError
    except ValueError:
        raw = np.empty(len(cells))
        for r, cell in enumerate(cells):
            text = cell.strip()
            raw[r] = np.nan
            if not text or text == "none":
                if not optional:
                    table.error(f"'{column.field}' needs a value", r, column.index)
                continue
            try:
                number = float(text)
            except ValueError:
                table.error(f"'{column.field}' must be a number, not {cell!r}", r, column.index)
                continue
            if number != number or number in (float("inf"), float("-inf")):
                table.error(f"'{column.field}' must be a finite number, not {cell!r}", r,
                            column.index)
                continue
            raw[r] = number
    values = raw
    for scale in column.scales:
        values = values * scale
    return values


def _check_range(table: _Table, names: list[str], column: _Column, values: Floats, key: str,
                 strict: bool = True) -> None:
    """Report each cell outside the `key` range of `PLAUSIBLE` (zero allowed unless strict)."""
    lo, hi, _ = PLAUSIBLE[key]
    inside = ((values >= lo) & (values <= hi)) | np.isnan(values)
    if not strict:
        inside |= values == 0.0
    for r in map(int, np.flatnonzero(~inside)):
        what = f"'{column.field}' of class '{names[r]}'"
        span = table.span(r, column.index)
        before = len(table.bag.items)
        cell = table.rows[r][column.index].strip()
        if positive_at(what, float(cell), span, table.bag, strict):  # as written: sign kept
            scaled = column.scales not in ((), (1.0,)) or column.field == "rate"
            in_range(what, float(values[r]), span, table.bag, key, zero_ok=not strict,
                     shown=cell if scaled else None)
        if len(table.bag.items) > before:
            table.reported += 1
            if table.reported > MAX_ERRORS:
                table.bag.items.pop()


def _names(table: _Table, columns: dict[str, _Column]) -> list[tuple[str, Span]]:
    index = columns["name"].index
    file, out = table.file, []
    for r, (line, number, row) in enumerate(zip(table.lines, table.numbers, table.rows,
                                                strict=True)):
        if len(row) <= index:
            continue
        if index == 0 and '"' not in line:  # the common case: the cell is the line's start
            end = len(row[0]) or 1  # as `_Table.span`: at least one column wide
            out.append((row[0].strip(), Span(file, number, 1, number, end + 1)))
        else:
            out.append((row[index].strip(), table.span(r, index)))
    return out


def _classes(table: _Table, columns: dict[str, _Column], cluster: Cluster | None,
             default_prices: dict[str, Price], spans: list[tuple[str, Span]],
             ) -> list[WorkloadClass] | None:
    name_col = columns["name"]
    names = [name for name, _ in spans]
    for r, name in enumerate(names):
        if not _NAME.fullmatch(name):
            table.error(f"class name {name!r} is not a name (letters, digits and '_', not "
                        "starting with a digit)", r, name_col.index)
        elif name == "all":
            table.error("a class may not be called 'all' (it means every class in an slo)",
                        r, name_col.index)
    rate_col = columns["rate"]
    rate = _numbers(table, rate_col, optional=False)
    if not rate_col.per_gpu and cluster is not None:
        rate = rate / cluster.gpus
    _check_range(table, names, rate_col, rate, "rate")
    prompt = _numbers(table, columns["prompt"], optional=False)
    _check_range(table, names, columns["prompt"], prompt, "prompt")
    output = _numbers(table, columns["output"], optional=False)
    _check_range(table, names, columns["output"], output, "output")
    extra: dict[str, Floats] = {}
    for field in ("patience", "weight", "price_input", "price_output"):
        if field in columns:
            extra[field] = _numbers(table, columns[field], optional=True)
            key = {"price_input": "price per token", "price_output": "price per token"}.get(
                field, field)
            if field.startswith("price") and columns[field].dim == MONEY_PER_REQUEST:
                key = "price per request"
            _check_range(table, names, columns[field], extra[field], key,
                         strict=not field.startswith("price"))
    if table.reported:
        table.finish()
        return None
    per_request = {f: f in columns and columns[f].dim == MONEY_PER_REQUEST
                   for f in ("price_input", "price_output")}
    price_in = _prices(extra.get("price_input"), per_request["price_input"],
                       default_prices.get("input"), prompt)
    price_out = _prices(extra.get("price_output"), per_request["price_output"],
                        default_prices.get("output"), output)
    n = len(names)
    nan = [float("nan")] * n
    patience = extra["patience"].tolist() if "patience" in extra else nan
    weight = extra["weight"].tolist() if "weight" in extra else nan
    return [WorkloadClass(name, rt, p, o, None if pat != pat else pat, pin, pout,
                          1.0 if w != w else w, span)
            for (name, span), rt, p, o, pat, pin, pout, w in zip(
                spans, rate.tolist(), prompt.tolist(), output.tolist(), patience,
                price_in.tolist(), price_out.tolist(), weight, strict=True)]


def _prices(cells: Floats | None, per_request: bool, default: Price | None,
            tokens: Floats) -> Floats:
    """Each class's price per token (`fields.per_token`, elementwise): the table's cell where
    it has one (NaN: empty), otherwise the pricing block's price."""
    if default is None:
        fallback = np.zeros_like(tokens)
    else:
        fallback = (default.value / tokens if default.per_request
                    else np.full_like(tokens, default.value))
    if cells is None:
        return fallback
    given = cells / tokens if per_request else cells
    return np.where(np.isnan(cells), fallback, given)
