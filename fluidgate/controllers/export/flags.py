"""The flags a serving stack's argument parser accepts, kept as data with their provenance.

Each `controllers/flags/<stack>-<version>.json` was extracted from that release's own parser
(the file says which source and how). Every argument list an exporter emits is checked
against it, so a renamed or removed flag fails here, not on a GPU node at launch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

VLLM_FLAGS = "vllm-0.33.0"
SGLANG_FLAGS = "sglang-0.5.23"
SGLANG_ROUTER_FLAGS = "sglang-router-0.3.2"


@dataclass(frozen=True)
class Flag:
    takes_value: bool
    choices: tuple[str, ...] | None


@dataclass(frozen=True)
class FlagTable:
    stack: str
    version: str
    source: str
    extracted: str
    flags: Mapping[str, Flag]

    def problems(self, args: Sequence[str]) -> list[str]:
        """Why `args` would not parse: unknown flags, missing values, values outside choices."""
        out: list[str] = []
        i = 0
        while i < len(args):
            name = args[i]
            flag = self.flags.get(name)
            if flag is None:
                out.append(f"{name}: not a {self.stack} {self.version} flag")
                i += 1
                continue
            j = i + 1
            while j < len(args) and not args[j].startswith("--"):
                j += 1
            values = args[i + 1:j]
            if flag.takes_value and not values:
                out.append(f"{name}: needs a value")
            elif not flag.takes_value and values:
                out.append(f"{name}: takes no value, got {' '.join(values)}")
            elif flag.choices is not None:
                out.extend(f"{name}: {v!r} is not one of {', '.join(flag.choices)}"
                           for v in values if v not in flag.choices)
            i = j
        return out


def load_flag_table(name: str) -> FlagTable:
    """Read `controllers/flags/<name>.json` from the installed package."""
    text = (resources.files("fluidgate.controllers") / "flags" / f"{name}.json").read_text(
        encoding="utf-8")
    raw = json.loads(text)
    flags = {k: Flag(bool(v["takes_value"]),
                     tuple(v["choices"]) if v["choices"] is not None else None)
             for k, v in raw["flags"].items()}
    return FlagTable(raw["stack"], raw["version"], raw["source"], raw["extracted"], flags)


def checked(args: list[str], table: FlagTable) -> list[str]:
    """`args` unchanged if the table accepts them; an exporter emitting others is a bug."""
    problems = table.problems(args)
    if problems:
        raise AssertionError(f"exported arguments {table.stack} {table.version} would reject: "
                             + "; ".join(problems))
    return args
