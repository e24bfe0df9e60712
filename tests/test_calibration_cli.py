"""`fluidgate calibrate` commands: happy paths, and bad input as one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.calibration.cli import app
from fluidgate.calibration.schema import load_calibration

FIXTURES = Path(__file__).parent / "fixtures" / "calibration"
SARATHI = Path(__file__).resolve().parents[2] / "shared" / "data" / "sarathi_serve"
runner = CliRunner()


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_import_then_fit_writes_a_loadable_calibration_and_a_plot(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    result = runner.invoke(
        app, ["import", "vllm", str(FIXTURES / "vllm_iterations.log"), "--out", str(csv)]
    )
    assert result.exit_code == 0, result.output
    assert "41 measurements" in result.stdout
    out, png = tmp_path / "calib.json", tmp_path / "fit.png"
    result = runner.invoke(
        app,
        [
            "fit",
            str(csv),
            "--out",
            str(out),
            "--max-batch",
            "16",
            "--chunk-range",
            "128",
            "1024",
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "LP constants at B = 16" in result.stdout
    calib = load_calibration(out)
    assert calib.alpha == pytest.approx(0.020 + 15 * 2e-4, rel=0.03)
    assert calib.beta == pytest.approx(6e-5, rel=0.03)
    assert calib.chunk_range == (128.0, 1024.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_reads_a_log_directly(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = runner.invoke(app, ["fit", str(FIXTURES / "vllm_iterations.log"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_calibration(out).gamma > 0


@pytest.mark.skipif(not SARATHI.is_dir(), reason=f"shared data not found at {SARATHI}")
def test_fit_takes_sarathi_files_directly(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = runner.invoke(
        app,
        [
            "fit",
            str(SARATHI / "osdi_figure-2_decode.csv"),
            str(SARATHI / "osdi_figure-2_prefill.csv"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    calib = load_calibration(out)
    assert min(calib.r2.values()) >= 0.95
    assert any("no mixed batches" in w for w in calib.warnings)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fit", "does-not-exist.csv"], "does not exist"),
        (["fit", "{tmp}/trace.csv"], "unrecognised input"),
        (["fit", "{fixtures}/sglang_server.log"], "no batches with a prefill chunk"),
        (["fit", "{tmp}/few.csv"], "too few"),
        (["fit", "{fixtures}/vllm_iterations.log", "--out", "{tmp}"], "cannot write"),
        (["import", "sarathi", "{fixtures}/vllm_iterations.log"], "not a Sarathi-Serve"),
        (["import", "splitwise", "{fixtures}/splitwise_small.csv"], "choose one of"),
        (["measure", "--model", "llama3-8", "--device", "cpu"], "did you mean llama3-8b"),
        (["measure", "--batch-sizes", "1,x", "--device", "cpu"], "--batch-sizes"),
        (["measure", "--device", "cpu", "--context", "100000000"], "GiB for weights and KV"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n1,2,3\n")
    (tmp_path / "few.csv").write_text(
        "kind,batch_size,chunk,time_s\nsolo,1,0,0.01\nsolo,2,0,0.011\n"
        "prefill,0,128,0.02\nprefill,0,256,0.03\n"
    )
    filled = [a.format(tmp=tmp_path, fixtures=FIXTURES) for a in args]
    if filled[0] == "measure":
        pytest.importorskip("torch", reason="measure checks its input after finding PyTorch")
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    assert needle in _error_line(result.stderr)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_measure_without_torch_says_how_to_install_it() -> None:
    done = _run(
        "import sys; sys.modules['torch'] = None\n"
        "from fluidgate.calibration.cli import app\n"
        "app(['measure', '--out', 'never.csv'])"
    )
    assert done.returncode == 2, done.stderr
    line = _error_line(done.stderr)
    assert "pip install -e '.[calibrate]'" in line
    assert not Path("never.csv").exists()


def test_importing_the_cli_loads_no_heavy_library() -> None:
    done = _run(
        "import sys, fluidgate.calibration.cli\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'scipy', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_help_texts_teach_the_workflow() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    assert 'iteration from "calib.json"' in top.stdout
    fit_help = runner.invoke(app, ["fit", "--help"], terminal_width=200)
    assert "--chunk-range" in fit_help.stdout and "secant" in fit_help.stdout
    import_help = runner.invoke(app, ["import", "--help"], terminal_width=200)
    assert "--enable-logging-iteration-details" in import_help.stdout
    measure_help = runner.invoke(app, ["measure", "--help"], terminal_width=200)
    assert "pip install -e '.[calibrate]'" in measure_help.stdout


def test_measure_help_shows_the_sweep_defaults_of_both_plans() -> None:
    """The help text is written out (importing the plans would slow every CLI start), so
    check it against the plans themselves."""
    from fluidgate.calibration.measure import CPU_PLAN, GPU_PLAN

    text = " ".join(CliRunner().invoke(app, ["measure", "--help"], terminal_width=400)
                    .stdout.split())

    def csv(values: tuple[int, ...]) -> str:
        return ",".join(map(str, values))

    for field in ("batch_sizes", "chunks", "mixed_batches"):
        gpu, cpu = getattr(GPU_PLAN, field), getattr(CPU_PLAN, field)
        assert f"default {csv(gpu)} on a GPU, {csv(cpu)} on a CPU" in text, field
    assert GPU_PLAN.context == CPU_PLAN.context == 1024 and "default 1024" in text
    for field in ("warmup", "repeats", "passes"):
        gpu, cpu = getattr(GPU_PLAN, field), getattr(CPU_PLAN, field)
        assert f"default {gpu} on a GPU, {cpu} on a CPU" in text, field


@pytest.mark.parametrize("width", [60, 80, 120])
def test_fit_tables_fit_the_terminal_without_cutting_a_value(tmp_path: Path, width: int) -> None:
    """Every number of the fit appears whole at any width: narrow terminals split the tables
    (tablefit) instead of ellipsising `affine` or an interval's bound."""
    data = Path(__file__).resolve().parents[1] / "fluidgate" / "calibration" / "data"
    out = tmp_path / "calib.json"
    result = runner.invoke(app, ["fit", str(data / "cpu-tiny.csv"), "--out", str(out)],
                           terminal_width=width, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    table_lines = [ln for ln in result.stdout.splitlines() if ln[:1] in "┏┃┡│└"]
    assert table_lines and all(len(ln) <= width for ln in table_lines), result.stdout
    assert "…" not in result.stdout
    cal = load_calibration(out)
    assert len(cal.curves) == 2
    for curve in cal.curves.values():
        assert curve.form in result.stdout
        for name, value in curve.coefficients.items():
            assert f"{value:.4g}" in result.stdout, name
            lo, hi = curve.ci95[name]
            assert f"[{lo:.4g}, {hi:.4g}]" in result.stdout, name
