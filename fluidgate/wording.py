"""Counted nouns for messages: "1 GPU", "2 GPUs", "1 class", "3 classes", never "1 GPUs"."""

from __future__ import annotations


def plural(n: float, singular: str, many: str | None = None) -> str:
    """`n` and the noun in the right number; counts get thousands separators."""
    if many is None:
        many = singular + ("es" if singular.endswith(("s", "x", "sh", "ch")) else "s")
    count = f"{n:,}" if float(n).is_integer() is False else f"{int(n):,}"
    return f"{count} {singular if n == 1 else many}"
