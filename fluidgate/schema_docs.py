"""Field tables for the docs, generated from the published JSON Schemas.

`docs/spec.md` holds one generated section per schema between marker comments; the tests
regenerate them and fail when the page and the schema disagree. After changing a model, run

    python -m fluidgate.schema_docs docs/spec.md

to rewrite the sections (everything outside the markers is left alone).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from fluidgate.schemas import SchemaName, json_schema

_BEGIN = "<!-- BEGIN GENERATED: fluidgate schema {name} -->"
_END = "<!-- END GENERATED: fluidgate schema {name} -->"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"[{prop['$ref'].rsplit('/', 1)[-1]}](#{_anchor(prop['$ref'])})"
    if "const" in prop:
        return f"`\"{prop['const']}\"`"
    if "enum" in prop:
        return " \\| ".join(f"`\"{v}\"`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop and isinstance(
            prop["additionalProperties"], dict):
        return f"map of name → {_type(prop['additionalProperties'])}"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    return str(kind)


def _anchor(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].lower()


def _limits(prop: dict[str, Any]) -> str:
    words = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                      ("exclusiveMaximum", "<"), ("minLength", "length ≥"),
                      ("minItems", "items ≥")):
        if key in prop:
            words.append(f"{sign} {prop[key]}")
    for p in prop.get("anyOf", []):
        inner = _limits(p)
        if inner:
            words.append(inner)
    if "pattern" in prop:
        words.append(f"matches `{prop['pattern']}`")
    return ", ".join(words)


def _table(title: str, obj: dict[str, Any]) -> list[str]:
    out = [f"### {title}", ""]
    if obj.get("description"):
        out += [" ".join(obj["description"].split()), ""]
    if "enum" in obj:
        values = ", ".join(f"`\"{v}\"`" for v in obj["enum"])
        return [*out, f"One of {values}.", ""]
    required = set(obj.get("required", []))
    out += ["| field | type | required | limits | meaning |", "|---|---|---|---|---|"]
    for name, prop in obj.get("properties", {}).items():
        desc = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        out.append(f"| `{name}` | {_type(prop)} | {'yes' if name in required else 'no'} | "
                   f"{_limits(prop)} | {desc} |")
    extra = obj.get("additionalProperties")
    out += ["", "Other keys are rejected." if extra is False else "Other keys are kept.", ""]
    return out


def schema_markdown(name: SchemaName) -> str:
    """The generated section for one schema: the document, then every object it uses."""
    schema = json_schema(name)
    lines = [f"Generated from `fluidgate schema {name.value}` (`{schema['$id']}`).", ""]
    lines += _table(f"{schema.get('title', name.value)} (the document)", schema)
    for title, obj in sorted(schema.get("$defs", {}).items()):
        lines += _table(title, obj)
    return "\n".join(lines).rstrip() + "\n"


def regenerate(page: str) -> str:
    """The page with every generated section rewritten from the current schemas."""
    for name in SchemaName:
        begin, end = _BEGIN.format(name=name.value), _END.format(name=name.value)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        found = pattern.search(page)
        if found is None:
            continue
        section = f"{begin}\n{schema_markdown(name)}{end}"
        page = page[:found.start()] + section + page[found.end():]
    return page


def main(argv: list[str]) -> int:
    from fluidgate.atomic import write_text_atomic

    for arg in argv:
        path = Path(arg)
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            write_text_atomic(path, new)
            print(f"rewrote the generated sections of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
