"""The calibration file contract: what `fit` writes is what the policy checker reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluidgate.calibration.csvformat import Measurement, MeasurementSet, write_csv
from fluidgate.calibration.fit import FitOptions, calibrate
from fluidgate.calibration.report import calibration_file
from fluidgate.calibration.schema import (
    SCHEMA_ID,
    CalibrationError,
    load_calibration,
    save_calibration,
)


def _measurements(tmp_path: Path) -> tuple[MeasurementSet, Path]:
    rows = [Measurement("solo", b, 0, 0.015 + 2e-4 * b + 1e-5 * (b % 3)) for b in (1, 2, 4, 8, 16)]
    rows += [
        Measurement(
            "mixed" if b else "prefill", b, c, 0.02 + 6e-5 * c + 2e-4 * b + 1e-5 * ((b + c) % 5)
        )
        for c in (128, 256, 512, 1024)
        for b in (0, 7, 15)
    ]
    data = MeasurementSet(tuple(rows), {"device": "test"})
    return data, write_csv(tmp_path / "m.csv", data)


def test_fit_json_load_round_trip_keeps_the_constants(tmp_path: Path) -> None:
    data, source = _measurements(tmp_path)
    options = FitOptions(max_batch=16)
    cal = calibrate(data, options)
    path = save_calibration(tmp_path / "calib.json", calibration_file(cal, data, [source], options))
    loaded = load_calibration(path)
    assert (loaded.alpha, loaded.beta, loaded.gamma) == (cal.alpha, cal.beta, cal.gamma)
    assert loaded.r2 == {"solo": cal.solo.r2, "mixed": cal.mix.r2}
    assert loaded.curves["mixed"].coefficients == cal.mix.coefficients()
    assert loaded.curves["solo"].ci95 == cal.solo.ci95()
    assert loaded.max_batch == 16
    assert loaded.provenance["inputs"][0]["path"] == str(source)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["schema"] == SCHEMA_ID
    assert "schema_" not in raw


def test_a_policy_path_given_as_text_also_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"schema": SCHEMA_ID, "alpha": 0.0174, "beta": 6.2e-5, "gamma": 45.45})
    )
    loaded = load_calibration(str(path))
    assert (loaded.alpha, loaded.beta, loaded.gamma) == (0.0174, 6.2e-5, 45.45)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (
            '{"schema": "fluidgate.calibration/v0", "alpha": 1, "beta": 0, "gamma": 1}',
            "has schema 'fluidgate.calibration/v0'",
        ),
        ('{"alpha": 1, "beta": 0, "gamma": 1}', "has schema None"),
        (f'{{"schema": "{SCHEMA_ID}", "alpha": -1, "beta": 0, "gamma": 1}}', "alpha"),
        (f'{{"schema": "{SCHEMA_ID}", "alpha": 1, "beta": 0}}', "gamma: Field required"),
        (f'{{"schema": "{SCHEMA_ID}", "alpha": 1, "beta": 0, "gamma": Infinity}}', "gamma"),
        (f'{{"schema": "{SCHEMA_ID}", "alpha": "fast", "beta": 0, "gamma": 1}}', "alpha"),
    ],
)
def test_malformed_files_raise_calibration_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=message) as info:
        load_calibration(path)
    assert str(path) in str(info.value)


def test_a_missing_file_is_a_calibration_error(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "nope.json")
