"""Fixture-driven: every malformed policy under tests/policies/bad gives exit 2 and the
documented `file:line:col: error: message` lines named in its `# expect:` header; every
policy under tests/policies/good and examples/ checks clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from tests.conftest import EXAMPLES, ROOT

BAD = sorted((ROOT / "tests" / "policies" / "bad").glob("*.sli"))
GOOD = sorted((ROOT / "tests" / "policies" / "good").glob("*.sli")) + sorted(
    EXAMPLES.glob("*.sli"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+): (.*)$", re.M)
FORMAT = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: .+$", re.M)


def expectations(path: Path) -> list[tuple[int, int, str]]:
    return [(int(a), int(b), c.decode()) for a, b, c in EXPECT.findall(path.read_bytes())]


def run_check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_policy_reports_documented_errors(path: Path) -> None:
    wanted = expectations(path)
    assert wanted, f"{path.name} has no '# expect:' header"
    code, out = run_check(path)
    assert code == 2, out
    assert "Traceback" not in out
    found = [(int(m["line"]), int(m["col"])) for m in FORMAT.finditer(out)]
    assert found, f"no message in the documented format:\n{out}"
    for line, col, text in wanted:
        prefix = f"{path}:{line}:{col}: error: "
        assert any(ln.startswith(prefix) and text in ln for ln in out.splitlines()), (
            f"expected '{prefix}{text}' in:\n{out}")
    # every message carries the source line and a caret under the span
    assert "^" in out


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_policy_checks_clean(path: Path) -> None:
    code, out = run_check(path)
    assert code == 0, out
    assert ": ok — " in out


def test_console_script_exit_status_and_no_traceback() -> None:
    """The real entry point, in a subprocess: exit 2 and the documented format on stderr."""
    path = ROOT / "tests" / "policies" / "bad" / "unknown_class.sli"
    proc = subprocess.run([sys.executable, "-m", "fluidgate", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}:9:10: error: unknown class 'decode_hevy'" in proc.stderr
    assert "             ^^^^^^^^^^^" in proc.stderr


def test_missing_policy_file() -> None:
    code, out = run_check(ROOT / "no-such.sli")
    assert code == 2 and "does not exist" in out and "Traceback" not in out
