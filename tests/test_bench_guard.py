"""`bench/run.py --out` never replaces a results file (they are committed records) by accident."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_existing_results_file_is_refused_before_measuring(tmp_path: Path) -> None:
    from bench.run import main

    target = tmp_path / "2026-11-23-dev.json"
    target.write_text('{"recorded": true}\n')
    with pytest.raises(SystemExit) as exc:
        # --no-cold and a seed: were the guard missing, this would start measuring
        main(["--out", str(target), "--no-cold", "--quick"])
    assert exc.value.code == 2
    assert target.read_text() == '{"recorded": true}\n'


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
