"""Hostile inputs stay fixed: every case asserts the exit status, the words of the message,
no traceback, no raw control character on the terminal, no hang (timeouts) and that no file
other than the requested output changed.

Static cases live in tests/fixtures/hostile/*.sli with `# exit:` and `# words:` headers;
cases that need a FIFO, a device, a symlink or a second file are built here.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fluidgate.calibration.cli import app as calibrate_app
from fluidgate.cli import app
from tests.conftest import EXAMPLES, REFERENCE, ROOT

HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
CALIB_FIXTURES = ROOT / "tests" / "fixtures" / "calibration"
STATIC = sorted(HOSTILE.glob("*.sli"))
RUN = CliRunner()
STEERING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
INLINE_ITERATION = ("    iteration {\n        mixed = 17.4 ms + 0.062 ms/token * chunk\n"
                    "        solo  = 22 ms\n    }\n")


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every node under `root`: its type and, for regular files, a hash of the content."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            out[str(path)] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            out[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            out[str(path)] = (stat.filemode(info.st_mode)[0], "")
    return out


def changed(before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def assert_clean(code: int, output: str, wanted_code: int, *words: str) -> None:
    assert code == wanted_code, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert not STEERING.search(output), f"raw control character reached the terminal: {output!r}"
    for w in words:
        assert w in output, f"{w!r} not in:\n{output}"


def headers(path: Path) -> tuple[int, list[str]]:
    text = path.read_text(encoding="utf-8-sig")
    code = int(re.search(r"^# exit: (\d+)$", text, re.M)[1])  # type: ignore[index]
    return code, re.findall(r"^# words: (.*)$", text, re.M)


@pytest.mark.parametrize("path", STATIC, ids=[p.stem for p in STATIC])
@pytest.mark.parametrize("command", ["check", "solve", "explain"])
def test_static_hostile_policy(path: Path, command: str) -> None:
    code, words = headers(path)
    before = snapshot(HOSTILE)
    res = RUN.invoke(app, [command, str(path)])
    assert_clean(res.exit_code, res.output, code, *words)
    assert changed(before, snapshot(HOSTILE)) == set()


def policy_text(iteration: str | None = None) -> str:
    text = REFERENCE
    if iteration is not None:
        text = text.replace(INLINE_ITERATION, f'    iteration from "{iteration}"\n')
        assert iteration in text
    return text


def run_cli(args: list[str], limit_mb: int = 1024, timeout: float = 60) -> tuple[int, str]:
    """The real entry point in a subprocess under an address-space cap and a timeout, so a
    read that blocks or grows without bound fails the test instead of the machine."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    proc = subprocess.run([sys.executable, "-m", "fluidgate", *args], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=cap,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path


# --- bounded reads ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "solve"])
def test_policy_that_is_dev_zero_fifo_or_directory(tmp_path: Path, fifo: Path,
                                                   command: str) -> None:
    code, out = run_cli([command, "/dev/zero", str(fifo), str(tmp_path)])
    if command == "check":
        assert_clean(code, out, 2, "policy file '/dev/zero' is a device, not a regular file",
                     f"policy file '{fifo}' is a FIFO (named pipe), not a regular file",
                     f"policy file '{tmp_path}' is a directory, not a regular file")
    else:  # solve takes one policy; the extra arguments are a usage error
        assert code == 2 and "Traceback" not in out


def test_iteration_from_dev_zero_and_fifo(tmp_path: Path, fifo: Path) -> None:
    for target, words in (("/dev/zero", "calibration file '/dev/zero' is a device"),
                          (str(fifo), "is a FIFO (named pipe), not a regular file")):
        path = tmp_path / "p.sli"
        path.write_text(policy_text(target))
        code, out = run_cli(["solve", str(path)])
        assert_clean(code, out, 2, f"{path}:10:20: error: ", words)


def test_oversized_policy_and_calibration_file(tmp_path: Path) -> None:
    big = tmp_path / "big.sli"
    big.write_bytes(REFERENCE.encode() + b"#" * (4 << 20))
    calib = tmp_path / "big.json"
    calib.write_bytes(b" " * ((4 << 20) + 1))
    uses = tmp_path / "uses.sli"
    uses.write_text(policy_text("big.json"))
    code, out = run_cli(["check", str(big), str(uses)], limit_mb=1024)
    assert_clean(code, out, 2, f"policy file '{big}' is larger than 4 MiB",
                 f"{uses}:10:20: error: calibration file '{tmp_path}/big.json' is larger "
                 "than 4 MiB")


def test_calibrate_inputs_are_bounded(tmp_path: Path, fifo: Path) -> None:
    before = snapshot(tmp_path)
    for args, words in ((["fit", "/dev/zero"], "measurement file '/dev/zero' is a device"),
                        (["import", "auto", str(fifo)], "is a FIFO (named pipe)"),
                        (["fit", str(tmp_path)], "is a directory, not a regular file")):
        code, out = run_cli(["calibrate", *args, "--out", str(tmp_path / "o")])
        assert_clean(code, out, 2, words)
    assert changed(before, snapshot(tmp_path)) == set()


# --- recursion -------------------------------------------------------------------------

def solve_json(tmp_path: Path, text: str, name: str) -> dict[str, object]:
    import json

    path = tmp_path / f"{name}.sli"
    path.write_text(text)
    out = tmp_path / f"{name}.json"
    res = RUN.invoke(app, ["solve", str(path), "--json", str(out), "-q"])
    assert_clean(res.exit_code, res.output, 0)
    doc: dict[str, object] = json.loads(out.read_text())
    return doc


def test_a_sum_of_thousands_of_terms_means_what_it_says(tmp_path: Path) -> None:
    """2,000 × 0.00025 /s per gpu is the reference's 0.5 /s per gpu, and 3,000 copies of
    abandonment(decode_heavy) bounded by 3,000 × 5 % is abandonment(decode_heavy) <= 5 %:
    the long forms must solve to the short forms' R*."""
    long_rate = " + ".join(["0.00025 /s per gpu"] * 2000)
    text = REFERENCE.replace("rate     = 0.5 /s per gpu", f"rate = {long_rate}")
    assert solve_json(tmp_path, text, "sum")["objective"] == pytest.approx(297.7162, abs=5e-5)
    short = REFERENCE + "\nslo {\n    abandonment(decode_heavy) <= 5 %\n}\n"
    long = REFERENCE + "\nslo {\n    " + " + ".join(["abandonment(decode_heavy)"] * 3000) + \
        " - abandonment(decode_heavy) + abandonment(decode_heavy) <= 15000 %\n}\n"
    want = solve_json(tmp_path, short, "short")["objective"]
    assert want != pytest.approx(297.7162, abs=1e-3)  # the SLO binds
    assert solve_json(tmp_path, long, "long")["objective"] == pytest.approx(want, rel=1e-9)


def test_subtraction_runs_keep_their_signs(tmp_path: Path) -> None:
    """500 + 1 - 2 + 3 - ... - 40 (41 terms, past the run kept left-deep) is 480, as read
    left to right; a sign lost while balancing the sum would give another number."""
    terms = " ".join(f"{'-' if k % 2 == 0 else '+'} {k}" for k in range(1, 41))
    assert 500 + sum(-k if k % 2 == 0 else k for k in range(1, 41)) == 480
    text = REFERENCE.replace("gpus      = 500", f"gpus = 500 {terms}")
    doc = solve_json(tmp_path, text, "signs")
    assert doc["cluster"]["gpus"] == 480  # type: ignore[index]


def test_deep_nesting_in_calibration_json(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    path = tmp_path / "p.sli"
    path.write_text(policy_text("deep.json"))
    res = RUN.invoke(app, ["check", str(path)])
    assert_clean(res.exit_code, res.output, 2, "nests too deeply")


# --- check reports every file ----------------------------------------------------------

def test_check_reports_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "unknown.sli"
    bad.write_text(REFERENCE.replace("gpus      = 500", "gpus = 500 furlongs"))
    args = [str(EXAMPLES / "two_class.sli"), str(tmp_path / "missing.sli"), str(tmp_path),
            str(bad), str(EXAMPLES / "dolly8.sli")]
    res = RUN.invoke(app, ["check", *args])
    assert_clean(res.exit_code, res.output, 2, f"{EXAMPLES / 'two_class.sli'}: ok",
                 f"{EXAMPLES / 'dolly8.sli'}: ok", "missing.sli' does not exist",
                 "is a directory", f"{bad}:7:16: error")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_check_reports_an_unreadable_file_and_goes_on(tmp_path: Path) -> None:
    locked = tmp_path / "locked.sli"
    locked.write_text(REFERENCE)
    locked.chmod(0)
    res = RUN.invoke(app, ["check", str(locked), str(EXAMPLES / "two_class.sli")])
    assert_clean(res.exit_code, res.output, 2, "Permission denied", "two_class.sli: ok")


# --- outputs ---------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A policy that reads a calibration file, a symlink and a hard link to the policy."""
    calib = ROOT / "fluidgate" / "calibration" / "data" / "sarathi-serve-fig2.calib.json"
    (tmp_path / "calib.json").write_bytes(calib.read_bytes())
    (tmp_path / "p.sli").write_text((EXAMPLES / "calibrated.sli").read_text().replace(
        "../fluidgate/calibration/data/sarathi-serve-fig2.calib.json", "calib.json"))
    (tmp_path / "link.sli").symlink_to("p.sli")
    os.link(tmp_path / "p.sli", tmp_path / "hard.sli")
    (tmp_path / "file").write_text("a file, not a directory")
    (tmp_path / "dir").mkdir()
    return tmp_path


REFUSED = [
    ("p.sli", "refusing to write '{d}/p.sli': it is an input of this run"),
    ("link.sli", "refusing to write '{d}/link.sli': it is an input of this run"),
    ("hard.sli", "refusing to write '{d}/hard.sli': it is an input of this run"),
    ("./dir/../p.sli", "it is an input of this run"),
    ("calib.json", "refusing to write '{d}/calib.json': it is an input of this run"),
    ("", "the output path is empty; name a file"),
    ("dir", "it is a directory; name a file inside it"),
    ("a/b/c.json", "the directory '{d}/a/b' does not exist (fluidgate does not create"),
    ("file/x.json", "a parent of it is not a directory"),
]


@pytest.mark.parametrize(("target", "words"), REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_json_output_refusals(run_dir: Path, target: str, words: str) -> None:
    before = snapshot(run_dir)
    out = f"{run_dir}/{target}" if target else ""
    res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json", out, "-q"])
    assert_clean(res.exit_code, res.output, 2, "error: ", words.format(d=run_dir))
    assert changed(before, snapshot(run_dir)) == set()
    assert not (run_dir / "a").exists()


def test_json_through_a_symlink_replaces_its_target_and_keeps_the_link(run_dir: Path) -> None:
    (run_dir / "dir" / "plan.json").write_text("old")
    (run_dir / "plan-link.json").symlink_to("dir/plan.json")
    before = snapshot(run_dir)
    res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json",
                           str(run_dir / "plan-link.json"), "-q"])
    assert_clean(res.exit_code, res.output, 0)
    assert (run_dir / "plan-link.json").is_symlink()
    assert '"fluidgate.solution/v1"' in (run_dir / "dir" / "plan.json").read_text()
    assert changed(before, snapshot(run_dir)) == {str(run_dir / "dir" / "plan.json")}


def test_json_to_dev_null_writes_the_device(run_dir: Path) -> None:
    before = os.stat("/dev/null")
    res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json", "/dev/null", "-q"])
    assert_clean(res.exit_code, res.output, 0)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_json_to_a_fifo_is_written_to_its_reader(run_dir: Path, fifo: Path) -> None:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    import time

    deadline = time.monotonic() + 10
    res = None
    while time.monotonic() < deadline:  # until the reader has opened its end
        res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json", str(fifo), "-q"])
        if res.exit_code == 0:
            break
        time.sleep(0.05)
    assert res is not None
    assert_clean(res.exit_code, res.output, 0)
    reader.join(10)
    assert got and b'"fluidgate.solution/v1"' in got[0]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_json_to_a_fifo_nobody_reads_is_an_error_not_a_hang(run_dir: Path, fifo: Path) -> None:
    code, out = run_cli(["solve", str(run_dir / "p.sli"), "--json", str(fifo), "-q"])
    assert_clean(code, out, 2, "no process is reading this FIFO")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes files whatever their mode")
def test_json_without_permission(run_dir: Path) -> None:
    (run_dir / "dir" / "ro.json").write_text("keep")
    (run_dir / "dir" / "ro.json").chmod(0o444)
    res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json",
                           str(run_dir / "dir" / "ro.json"), "-q"])
    assert_clean(res.exit_code, res.output, 2, "no permission to write this file")
    assert (run_dir / "dir" / "ro.json").read_text() == "keep"
    (run_dir / "dir").chmod(0o555)
    try:
        res = RUN.invoke(app, ["solve", str(run_dir / "p.sli"), "--json",
                               str(run_dir / "dir" / "new.json"), "-q"])
        assert_clean(res.exit_code, res.output, 2, "no permission to create files in")
    finally:
        (run_dir / "dir").chmod(0o755)


CALIBRATE_REFUSED = [
    (["fit", "{log}", "--out", "{log}"], "it is an input of this run"),
    (["fit", "{log}", "--out", "{d}/c.json", "--plot", "{d}/c.json"], "it is an input of this run"),
    (["fit", "{log}", "--out", ""], "the output path is empty"),
    (["fit", "{log}", "--out", "{d}/no/such/c.json"], "does not exist (fluidgate does not create"),
    (["fit", "{log}", "--out", "-"], "'-' (standard output) is not supported"),
    (["import", "vllm", "{log}", "--out", "{log}"], "it is an input of this run"),
    (["measure", "--out", "{d}", "--device", "cpu"], "it is a directory"),
]


@pytest.mark.parametrize(("args", "words"), CALIBRATE_REFUSED,
                         ids=[" ".join(a[:1] + a[-3:]) for a, _ in CALIBRATE_REFUSED])
def test_calibrate_output_refusals(tmp_path: Path, args: list[str], words: str) -> None:
    log = tmp_path / "vllm.log"
    log.write_bytes((CALIB_FIXTURES / "vllm_iterations.log").read_bytes())
    before = snapshot(tmp_path)
    res = RUN.invoke(calibrate_app, [a.format(log=log, d=tmp_path) for a in args])
    assert_clean(res.exit_code, res.output, 2, "error: ", words)
    assert changed(before, snapshot(tmp_path)) == set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), min_size=1, max_size=300))
def test_balanced_sums_equal_left_to_right_sums(terms: list[tuple[bool, int]]) -> None:
    """Any run of '+' and '-' of integers evaluates exactly to its left-to-right value."""
    from fluidgate.diagnostics import DiagnosticBag
    from fluidgate.sli_dsl import syntax as sx
    from fluidgate.sli_dsl.evaluate import evaluate
    from fluidgate.sli_dsl.parser import default_parser

    text = str(terms[0][1]) + "".join(f" {'-' if neg else '+'} {v}" for neg, v in terms[1:])
    expected = terms[0][1] + sum(-v if neg else v for neg, v in terms[1:])
    doc = default_parser().parse(f"cluster {{ gpus = {text} }}")
    block = doc.items[0]
    assert isinstance(block, sx.ClusterBlock)
    value = evaluate(block.assigns[0].value, DiagnosticBag())
    assert value is not None and value.const == expected


def test_permission_refusals_whoever_runs_the_tests(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The decisions behind the permission messages, also where the suite runs as root (which
    the kernel lets write anything): a file or directory the user may not write is refused
    before anything is touched."""
    from fluidgate import atomic

    existing = tmp_path / "keep.json"
    existing.write_text("keep")
    before = snapshot(tmp_path)
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    with pytest.raises(atomic.OutputError, match="no permission to write this file"):
        atomic.write_output(existing, "new")
    with pytest.raises(atomic.OutputError, match="no permission to create files in"):
        atomic.write_output(tmp_path / "new.json", "new")
    assert changed(before, snapshot(tmp_path)) == set()


def test_json_to_dev_stdout_redirected_to_a_file(tmp_path: Path) -> None:
    """`--json /dev/stdout > plan.json` writes into the file the shell opened; a rename would
    leave standard output on an unlinked inode and the file empty."""
    import json

    plan = tmp_path / "plan.json"
    with plan.open("wb") as handle:
        proc = subprocess.run([sys.executable, "-m", "fluidgate", "solve",
                               str(EXAMPLES / "two_class.sli"), "--json", "/dev/stdout", "-q"],
                              stdout=handle, stderr=subprocess.PIPE, text=False, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        inode = os.fstat(handle.fileno()).st_ino
    assert proc.returncode == 0, proc.stderr
    assert plan.stat().st_ino == inode
    assert json.loads(plan.read_text())["schema"] == "fluidgate.solution/v1"
