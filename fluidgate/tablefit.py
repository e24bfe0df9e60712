"""Tables that fit the terminal's width without cutting or splitting anything an operator reads.

Rich shrinks a table that is too wide by folding cells mid-word and ellipsising headers
(`decode_h` / `eavy`, `prefilli…`). Instead, a sheet is drawn whole when it fits; otherwise its
value columns are split into several tables that each repeat the key columns; and when not even
the keys and one value column fit, every record becomes a block of `header: value` pairs that
wraps only between pairs. Cells are plain text, never console markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text

#: Characters a heavy-head table adds around n columns: one border before each column, one
#: after the last, and a space of padding either side of every cell.
_PER_COLUMN, _EDGE = 3, 1


@dataclass(frozen=True)
class Column:
    header: str
    left: bool = False


@dataclass
class Sheet:
    """Rows of key cells (the record's name: class, or line and constraint) and value cells."""

    title: str
    keys: Sequence[Column]
    values: Sequence[Column]
    rows: list[tuple[Sequence[str], Sequence[str]]] = field(default_factory=list)

    def _widths(self) -> tuple[list[int], list[int]]:
        kw = [cell_len(c.header) for c in self.keys]
        vw = [cell_len(c.header) for c in self.values]
        for keys, values in self.rows:
            kw = [max(w, cell_len(s)) for w, s in zip(kw, keys, strict=True)]
            vw = [max(w, cell_len(s)) for w, s in zip(vw, values, strict=True)]
        return kw, vw


def _table_width(widths: Sequence[int]) -> int:
    return sum(widths) + _PER_COLUMN * len(widths) + _EDGE


def column_groups(key_widths: Sequence[int], value_widths: Sequence[int],
                  width: int) -> list[list[int]] | None:
    """Value columns split, in order, into the fewest consecutive groups that each fit next to
    the keys, as even as that allows (no lone last column); None when the keys and the widest
    single column do not fit at all."""
    base = _table_width(key_widths)
    if base + max(value_widths, default=0) + _PER_COLUMN > width:
        return None

    def fits(group: Sequence[int]) -> bool:
        return base + sum(value_widths[i] + _PER_COLUMN for i in group) <= width

    n = len(value_widths)
    for k in range(1, n + 1):
        bounds = [round(j * n / k) for j in range(k + 1)]
        groups = [list(range(bounds[j], bounds[j + 1])) for j in range(k)]
        if all(fits(g) for g in groups):
            return groups
        greedy: list[list[int]] = []
        for i in range(n):
            if greedy and fits([*greedy[-1], i]):
                greedy[-1].append(i)
            else:
                greedy.append([i])
        if len(greedy) == k:
            return greedy
    raise AssertionError("unreachable: one column per group always fits")


def _cell(text: str, width: int, left: bool) -> str:
    pad = " " * (width - cell_len(text))
    return f" {text}{pad} " if left else f" {pad}{text} "


def _table(sheet: Sheet, group: Sequence[int]) -> Text:
    """The table drawn directly with the heavy-head box of Rich's default table.

    Drawing here instead of through `rich.table.Table` matters for size: Rich measures and
    wraps every cell, about 6 ms a row, so `--all-classes` on 20,000 classes took minutes.
    The widths are already known and nothing wraps, so each row is one string.
    """
    kw, vw = sheet._widths()
    columns = [*sheet.keys, *(sheet.values[i] for i in group)]
    widths = [*kw, *(vw[i] for i in group)]

    def rule(left: str, mid: str, right: str, fill: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    out = Text(rule("┏", "┳", "┓", "━") + "\n┃", no_wrap=True, overflow="ignore")
    for c, w in zip(columns, widths, strict=True):
        out.append(_cell(c.header, w, c.left), style="bold")
        out.append("┃")
    lines = ["", rule("┡", "╇", "┩", "━")]
    for keys, values in sheet.rows:
        cells = [*keys, *(values[i] for i in group)]
        lines.append("│" + "│".join(_cell(s, w, c.left) for s, w, c
                                     in zip(cells, widths, columns, strict=True)) + "│")
    lines.append(rule("└", "┴", "┘", "─"))
    out.append("\n".join(lines))
    return out


def _records(sheet: Sheet, width: int) -> list[RenderableType]:
    out: list[RenderableType] = [Text(sheet.title)]
    for keys, values in sheet.rows:
        out.append(Text("  ".join(k for k in keys if k), style="bold"))
        pairs = [f"{c.header}: {v}" for c, v in zip(sheet.values, values, strict=True) if v]
        line = ""
        for pair in pairs:
            if line and cell_len(line) + 3 + cell_len(pair) > width - 2:
                out.append(Text("  " + line))
                line = ""
            line = f"{line}   {pair}" if line else pair
        if line:
            out.append(Text("  " + line))
    return out


def fit(sheet: Sheet, width: int) -> list[RenderableType]:
    """The sheet as renderables no wider than `width` (except a single key longer than the
    line itself, which the terminal wraps but nothing cuts)."""
    kw, vw = sheet._widths()
    if _table_width(kw + vw) <= width:
        groups: list[list[int]] | None = [list(range(len(vw)))]
    else:
        groups = column_groups(kw, vw, width)
    if groups is None:
        return _records(sheet, width)
    return [Text(sheet.title), *(_table(sheet, g) for g in groups)]
