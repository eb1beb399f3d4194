"""Calibration: the shipped parameter set is what `microneedling calibrate` reproduces, the fit
sees only calibration rows, and the ensemble samples the posterior."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from microneedling.io import data_path as _data_dir
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import (
    load_calibration,
    sample_parameter_sets,
    shipped_posterior,
)
from microneedling.studies.credibility import calibrate
from microneedling.studies.credibility.calibrate import calibration_toml, fit, write_values
from microneedling.studies.credibility.literature import point_fit_rows, rows


@pytest.fixture(scope="module")
def cal() -> calibrate.Calibration:
    return fit()


def test_refit_reproduces_the_shipped_calibration_exactly(cal: calibrate.Calibration) -> None:
    version, text = calibration_toml(cal)
    shipped = load_calibration()
    assert version == shipped["version"]
    current = (calibrate.calibration_dir() / calibrate.CURRENT).read_text(encoding="utf-8")
    assert text == current  # byte for byte: no dates, deterministic fit
    assert (calibrate.calibration_dir() / f"{version}.toml").read_text(encoding="utf-8") == text


def test_shipped_parameter_files_hold_the_posterior(cal: calibrate.Calibration) -> None:
    ps = load_parameters()
    intervals = cal.intervals
    for name, value in cal.values.items():
        p = ps.parameters[name]
        assert p.kind == "calibrated", name
        assert p.value == pytest.approx(value, rel=1e-9), name
        assert (p.low, p.high) == pytest.approx(intervals[name], rel=1e-9), name
        assert p.low < p.value < p.high


def test_fit_reproduces_every_calibration_row(cal: calibrate.Calibration) -> None:
    assert set(cal.rows) == {r.key for r in point_fit_rows()}
    assert set(cal.rows) <= {r.key for r in rows("calibration")}
    assert np.all(np.abs(cal.normalised_residuals) < 1e-3)
    assert np.all(cal.se > 0)
    # the posterior is proper and the parameters identified by the rows
    assert np.all(np.linalg.eigvalsh(cal.covariance_log) > 0)
    assert cal.condition_number < 100.0
    assert np.all(np.abs(cal.correlation[np.triu_indices(len(cal.parameters), 1)]) < 0.99)


def test_a_validation_row_is_never_used_in_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = calibrate.predict_rows

    def spy(lit_rows, sets, protocols=None, settings=None):  # type: ignore[no-untyped-def]
        seen.extend(r.key for r in lit_rows)
        assert all(r.role == "calibration" for r in lit_rows), [r.key for r in lit_rows]
        return real(lit_rows, sets, protocols, settings)

    monkeypatch.setattr(calibrate, "predict_rows", spy)
    fit()
    validation = {r.key for r in rows("validation")}
    assert seen and not (set(seen) & validation)


def test_ensemble_samples_the_posterior_jointly(cal: calibrate.Calibration) -> None:
    ps = load_parameters()
    post = shipped_posterior(ps)
    assert post is not None
    draws = sample_parameter_sets(ps, 400, seed=3)
    k1 = np.array([d.parameters["healing.k_1"].value for d in draws])
    k3 = np.array([d.parameters["healing.k_3"].value for d in draws])
    dens = np.array([d.parameters["observe.density_per_collagen_I"].value for d in draws])
    assert np.array_equal(k1, k3)  # tied members move together
    r = np.corrcoef(np.log(k1), np.log(dens))[0, 1]
    assert r == pytest.approx(cal.correlation[0, 2], abs=0.12)
    lo, hi = np.percentile(np.log(k1), [5, 95])
    assert math.exp(lo) == pytest.approx(cal.intervals["healing.k_1"][0], rel=0.05)
    assert math.exp(hi) == pytest.approx(cal.intervals["healing.k_1"][1], rel=0.05)


def test_edited_set_is_sampled_independently() -> None:
    ps = load_parameters().with_values({"healing.k_1": 0.003})
    assert shipped_posterior(ps) is None
    draws = sample_parameter_sets(ps, 50, seed=1)
    k1 = np.array([d.parameters["healing.k_1"].value for d in draws])
    k3 = np.array([d.parameters["healing.k_3"].value for d in draws])
    assert not np.array_equal(k1, k3)


def test_write_values_round_trip(tmp_path: Path, cal: calibrate.Calibration) -> None:
    src = _data_dir() / "parameters"
    dst = tmp_path / "parameters"
    shutil.copytree(src, dst)
    names = write_values(cal, dst)
    ps = load_parameters(dst)
    for n in names:
        assert ps.parameters[n].value == pytest.approx(cal.values[n], rel=1e-9)
        assert ps.parameters[n].low == pytest.approx(cal.intervals[n][0], rel=1e-9)
    # the other parameters are untouched
    assert (dst / "needles.toml").read_text() == (src / "needles.toml").read_text()


def test_calibration_file_is_the_package_toml_writer(cal: calibrate.Calibration) -> None:
    import hashlib

    from microneedling.io import dumps_toml, loads_toml

    version, text = calibration_toml(cal)
    content = cal.to_dict()
    assert version == "cal-" + hashlib.sha256(dumps_toml(content).encode()).hexdigest()[:12]
    assert text.endswith(dumps_toml({"version": version, **content}))
    assert all(line.startswith("# ") for line in text[: text.index("version =")].splitlines())
    assert loads_toml(text) == {"version": version, **content}
