"""The benchmarks' `--out` never replaces a results file (a committed record) by accident."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(("runner", "args"), [
    # were the guard missing, each of these would start measuring (and fail the test's time)
    ("bench.run", ["--no-cold", "--quick"]),
    ("bench.decisions", ["--runs", "1", "--cycles", "10"]),
    ("bench.simulator", ["--quick"]),
    ("bench.gateway", ["--quick"]),
])
def test_existing_results_file_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runner: str, args: list[str]
) -> None:
    import importlib

    main = importlib.import_module(runner).main
    target = tmp_path / "2026-11-23-dev.json"
    target.write_text('{"recorded": true}\n')
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(target), *args])
    assert exc.value.code == 2
    assert target.read_text() == '{"recorded": true}\n'
    assert "--overwrite" in capsys.readouterr().err


def test_gitignore_hides_generated_files_not_records(tmp_path: Path) -> None:
    """The guard's promise rests on results being committed: .gitignore must not hide them,
    while what the README tour and calibrate write at the root is ignored."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "bench/results/2026-11-23-dev.json", "plan.json",
         "calib.json", "measurements.csv", "fit.png", "fluidgate/calibration/data/cpu-tiny.csv",
         "fluidgate/calibration/data/sarathi-serve-fig2.calib.json"],
        cwd=root, capture_output=True, text=True, check=False).stdout.split()
    assert ignored == ["plan.json", "calib.json", "measurements.csv", "fit.png"]
