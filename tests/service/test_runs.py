"""Every kind of run through the API gives what the library (the CLI's calls) gives in process:
plan, absorb, trial, sensitivity and validate (on SQLite: their database work is the one the
other tests run on both databases)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from microneedling.course.model import Course
from microneedling.course.patient import PatientFile
from microneedling.parameters.parameter_set import load_parameters
from microneedling.reports import charts
from microneedling.reports.credibility import delivery_table
from microneedling.service.runs import Cancelled, Progress, chunk_mapper
from microneedling.studies.absorb import absorption_table
from microneedling.studies.credibility.delivery import predict as delivery_predict
from microneedling.studies.planning.search import search
from microneedling.studies.sensitivity import sensitive_names, sobol_indices
from microneedling.studies.trial.run import run_trial
from microneedling.studies.trial.spec import TrialSpec
from tests.service.helpers import Service, example, settings_for, trial_spec, wait

API = "/api/v1"


def _submit(svc: Service, kind: str, body: dict) -> dict:
    r = svc.client.post(f"{API}/runs/{kind}", json=body, headers=svc.a.h)
    assert r.status_code == 202, r.text
    run = wait(svc.client, r.json()["id"], svc.a.h, timeout=300)
    assert run["status"] == "done", run
    return run


def _names(run: dict) -> set[str]:
    return {f["name"] for f in run["files"]}


def test_plan_is_the_planners_plan(sqlite_service: Service) -> None:
    svc = sqlite_service
    patient = example("patients/acne-scars-two-sites.toml")
    pid = svc.client.post(f"{API}/patients", json=patient, headers=svc.a.h).json()["id"]
    run = _submit(svc, "plan", {"patient_id": pid, "draws": 0, "figures": False, "max_sessions": 3})
    expected = search(PatientFile.from_dict(patient).with_limits(max_sessions=3))
    assert run["summary"]["recommended"] == expected.recommended.summary()
    assert Course.from_dict(run["summary"]["course"]) == expected.recommended.course
    assert run["patient_id"] == pid
    assert {"course.toml", "report.html", "pareto.csv", "predictions.csv", "screening.txt"} <= (
        _names(run)
    )
    toml = svc.client.get(f"{API}/runs/{run['id']}/files/course.toml", headers=svc.a.h).text
    assert Course.from_toml_text(toml) == expected.recommended.course


def test_an_absolute_contraindication_fails_the_run_with_the_reason(
    sqlite_service: Service,
) -> None:
    svc = sqlite_service
    patient = example("patients/acne-scars-two-sites.toml")
    patient["history"]["pregnant"] = True
    r = svc.client.post(f"{API}/runs/plan", json={"patient": patient, "draws": 0}, headers=svc.a.h)
    run = wait(svc.client, r.json()["id"], svc.a.h)
    assert run["status"] == "failed"
    assert run["error"]["status"] == 400 and "pregnan" in run["error"]["error"].lower()


def test_absorb_is_the_absorption_table(sqlite_service: Service) -> None:
    svc = sqlite_service
    course = example("serum-absorption-study.toml")
    run = _submit(svc, "absorb", {"course": course, "draws": 0, "resolved": False})
    table, _ = absorption_table(Course.from_dict(course), draws=0, resolved=False)
    got = pd.DataFrame(run["summary"]["sessions"])
    np.testing.assert_allclose(got["absorbed_ug_cm2"], table["absorbed_ug_cm2"], rtol=1e-12)
    assert {"absorption.csv", "absorption.json", "report.html", "course.toml"} <= _names(run)
    # the page's charts, as data: the amounts (no resolved cell here, so no map)
    text = svc.client.get(f"{API}/runs/{run['id']}/files/charts.json", headers=svc.a.h).text
    assert [c.id for c in charts.loads(text)] == ["chart-absorbed", "chart-absorbed-layers"]
    # a course without a topical is refused when it is submitted, naming the reason
    r = svc.client.post(
        f"{API}/runs/absorb", json={"course": example("stamp-small-scar.toml")}, headers=svc.a.h
    )
    assert r.status_code == 422 and "topical" in r.json()["error"]


def test_trial_is_run_trial(sqlite_service: Service) -> None:
    svc = sqlite_service
    spec = trial_spec(n_per_arm=6, chunk_size=3)
    run = _submit(svc, "trial", {"trial": spec})
    expected = run_trial(TrialSpec.from_dict(spec, source="trial"))
    got = pd.DataFrame(run["summary"]["summary"])
    np.testing.assert_allclose(got["mean"], expected.summary["mean"], rtol=1e-12)
    # parameter uncertainty: the spec's draws (the default), with the epistemic statistics
    assert run["summary"]["parameter_draws"] == expected.spec.parameter_draws > 0
    assert "posterior" in run["summary"]["parameter_source"]
    for col in ("epistemic80_low", "epistemic80_high", "aleatory_sd", "var_epistemic"):
        assert col in got and col in pd.DataFrame(run["summary"]["comparisons"])
    np.testing.assert_allclose(
        got["epistemic80_low"].astype(float), expected.summary["epistemic80_low"], rtol=1e-9
    )
    assert run["summary"]["chunks"] == 4 and run["summary"]["chunks_reused"] == 0
    data = svc.client.get(f"{API}/runs/{run['id']}/files/trial.nc", headers=svc.a.h).content
    with xr.open_dataset(io.BytesIO(data)) as ds:
        np.testing.assert_array_equal(ds["value"].values, expected.values)
    assert {"summary.csv", "comparisons.csv", "report.html", "trial.toml"} <= _names(run)
    # a population of the organisation, by name
    pop = example("../src/microneedling/data/populations/acne-scar-adults.toml")
    pop["name"] = "ours"
    assert (
        svc.client.post(f"{API}/populations", json={"population": pop}, headers=svc.a.h).status_code
        == 201
    )
    spec["trial"]["population"] = "ours"
    again = _submit(svc, "trial", {"trial": spec})
    assert again["summary"]["summary"] == run["summary"]["summary"]  # same table, same seed
    r = svc.client.post(
        f"{API}/runs/trial", json={"trial": spec, "n_per_arm": 10**6}, headers=svc.a.h
    )
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "trial.n_per_arm"


def test_sensitivity_is_sobol_indices(sqlite_service: Service) -> None:
    svc = sqlite_service
    course = example("acne-scars-rolling-cheek.toml")
    # two parameters the course uses (whatever their names: the parameter files change)
    names = sensitive_names(Course.from_dict(course), load_parameters())[:2]
    body = {
        "course": course,
        "endpoints": ["erythema_days"],
        "n_base": 8,
        "seed": 3,
        "parameters": names,
        "chunk_size": 5,
    }
    run = _submit(svc, "sensitivity", body)
    ds = sobol_indices(Course.from_dict(course), ["erythema_days"], names=names, n_base=8, seed=3)
    got = pd.DataFrame(run["summary"]["indices"]).set_index("parameter")
    for p in names:
        assert got.loc[p, "S1"] == float(ds["S1"].sel(parameter=p).values[0])
    assert run["summary"]["n_runs"] == 8 * 4
    assert {"sobol.nc", "sobol.csv", "sobol.png", "report.html"} <= _names(run)
    r = svc.client.post(f"{API}/runs/sensitivity", json={**body, "n_base": 6}, headers=svc.a.h)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "n_base"


def test_delivery_validation_is_the_cli_table(sqlite_service: Service) -> None:
    run = _submit(sqlite_service, "validate", {"delivery": True})
    assert run["summary"]["delivery"] == delivery_table(delivery_predict())
    assert _names(run) == {"delivery.md"}


def test_chunks_go_to_dask_workers_when_configured(tmp_path: Path) -> None:
    """``--dask-workers N``: chunks run on a local Dask cluster, with progress, in order."""
    settings = settings_for(tmp_path, None, dask_workers=1)
    progress = Progress()
    out = chunk_mapper(settings, progress, "items")(math.factorial, list(range(6)))
    assert out == [1, 1, 2, 6, 24, 120]
    assert progress.fraction == 1.0 and progress.text == "items: 6 of 6 chunks"


def test_a_cancelled_run_stops_at_the_next_chunk(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    progress = Progress()
    seen: list[int] = []

    def work(i: int) -> int:
        seen.append(i)
        if i == 2:
            progress.cancelled = True  # as the heartbeat does when cancellation is requested
        return i

    with pytest.raises(Cancelled):
        chunk_mapper(settings, progress, "items")(work, list(range(10)))
    assert seen == [0, 1, 2]
