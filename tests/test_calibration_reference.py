"""`iteration from "calib.json"`: the policy uses exactly the file's constants, and a bad
file is a positioned error in the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluidgate.diagnostics import PolicyError
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import load_policy
from tests.conftest import REFERENCE

INLINE = """    iteration {
        mixed = 17.4 ms + 0.062 ms/token * chunk
        solo  = 22 ms
    }"""


def policy_with_file(tmp_path: Path, content: object, name: str = "calib.json") -> Path:
    (tmp_path / name).write_text(
        content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    p = tmp_path / "policy.sli"
    p.write_text(REFERENCE.replace(INLINE, f'    iteration from "{name}"'), encoding="utf-8")
    return p


def test_calibration_constants_are_used_exactly(tmp_path: Path) -> None:
    path = policy_with_file(tmp_path, {"schema": "fluidgate.calibration/v1", "alpha": 0.0174,
                                       "beta": 6.2e-5, "gamma": 1 / 0.022,
                                       "r2": {"solo": 0.99, "mixed": 0.998}})
    pol = load_policy(path).policy
    it = pol.cluster.iteration
    assert (it.alpha, it.beta) == (0.0174, 6.2e-5)
    assert it.gamma == pytest.approx(1 / 0.022, rel=1e-15)
    assert it.source == str(tmp_path / "calib.json")
    assert solve_policy(pol).objective == pytest.approx(297.71619034717, rel=1e-9)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ({"schema": "fluidgate.calibration/v0", "alpha": 1, "beta": 0, "gamma": 1},
         "expected 'fluidgate.calibration/v1'"),
        ({"schema": "fluidgate.calibration/v1", "alpha": -1, "beta": 0, "gamma": 1}, "alpha"),
        ({"schema": "fluidgate.calibration/v1", "beta": 0, "gamma": 1}, "alpha"),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_bad_calibration_file_is_a_positioned_policy_error(
    tmp_path: Path, content: object, message: str
) -> None:
    path = policy_with_file(tmp_path, content)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    text = err.value.render()
    line = REFERENCE.replace(INLINE, '    iteration from "calib.json"').splitlines().index(
        '    iteration from "calib.json"') + 1
    assert f"{path}:{line}:20: error: " in text
    assert message in text


def test_operating_point_mismatch_is_a_warning(tmp_path: Path) -> None:
    path = policy_with_file(tmp_path, {"schema": "fluidgate.calibration/v1", "alpha": 0.0174,
                                       "beta": 6.2e-5, "gamma": 45.0, "max_batch": 32,
                                       "chunk_range": [512, 2048]})
    checked = load_policy(path)
    messages = [w.message for w in checked.warnings]
    assert any("derived for max_batch = 32, but the cluster uses 16" in m for m in messages)
    assert any("chunk = 256 tokens lies outside the calibration's chunk range 512–2048" in m
               for m in messages)
    assert all(w.span is not None and w.span.file == str(path) for w in checked.warnings)


def test_calibrated_example_uses_the_committed_sarathi_fit() -> None:
    from tests.conftest import EXAMPLES, ROOT

    calib = json.loads((ROOT / "fluidgate/calibration/data/sarathi-serve-fig2.calib.json")
                       .read_text())
    checked = load_policy(EXAMPLES / "calibrated.sli")
    assert checked.warnings == []
    it = checked.policy.cluster.iteration
    assert (it.alpha, it.beta, it.gamma) == (calib["alpha"], calib["beta"],
                                             pytest.approx(calib["gamma"], rel=1e-15))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"schema": "fluidgate.calibration/v1", "alpha": True, "beta": 0, "gamma": 45},
         "alpha"),
        ({"schema": "fluidgate.calibration/v1", "alpha": 0.02, "beta": "0.001", "gamma": 45},
         "beta"),
        ({"schema": "fluidgate.calibration/v1", "alpha": 0.02, "beta": 0, "gamma": 45,
          "chunk_range": [2048, 256]}, "chunk_range"),
        ({"schema": "fluidgate.calibration/v1", "alpha": 1e-300, "beta": 0, "gamma": 1e300},
         "outside the range fluidgate can solve reliably"),
        ("\udcff", "is not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ],
    ids=["bool", "string", "reversed-range", "implausible", "not-utf8", "deep"],
)
def test_calibration_files_are_validated_strictly(
    tmp_path: Path, content: object, message: str
) -> None:
    if content == "\udcff":
        (tmp_path / "calib.json").write_bytes(b'\xff\xfe{"schema": 1}')
        path = policy_with_file(tmp_path, {}, name="other.json")
        path.write_text(path.read_text().replace("other.json", "calib.json"))
    else:
        path = policy_with_file(tmp_path, content)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert message in err.value.render()
