"""Results files of the benchmarks: committed records, so never replaced by accident.

Every runner in bench/ takes `--out FILE` and `--overwrite`; it refuses an existing file
before it measures anything (a run can take minutes) and writes the JSON atomically, so an
interrupted run leaves the previous record or nothing, never half a file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OVERWRITE_HELP = "replace --out if it exists (results files are committed records)"


def refuse_existing(parser: argparse.ArgumentParser, out: Path, overwrite: bool) -> None:
    """Exit 2 with words when `out` exists and `--overwrite` was not given."""
    if out.exists() and not overwrite:
        parser.exit(2, f"error: {out} exists (results in bench/results/ are committed "
                       "records); choose a new --out, or pass --overwrite to replace it\n")


def write_record(out: Path, doc: dict[str, Any], indent: int = 1) -> None:
    from fluidgate.atomic import write_text_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(doc, indent=indent) + "\n")
