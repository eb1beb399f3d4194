"""The calibration problem: settings file, protocol settings as nuisance parameters, the rows'
likelihood view, predictions (stand-ins, two-arm contrasts), priors, history matching, and that
no validation row ever reaches the fit."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from microneedling.errors import InputError
from microneedling.io import loads_toml
from microneedling.studies.credibility import calibrate
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    CalibrationConfigError,
    Nuisance,
    Problem,
    apply_settings,
    build_problem,
    history_match,
    load_config,
    needs_cohort_spread,
    parallel_evaluation,
    predict_rows,
    recorded_spread,
    refined_grid,
    row_specs,
    tomlable,
    with_patient_spread,
)
from microneedling.studies.credibility.likelihood import Likelihood
from microneedling.studies.credibility.literature import (
    load_protocol_file,
    load_protocols,
    protocol_course,
    rows,
)


@pytest.fixture(scope="module")
def problem() -> Problem:
    return build_problem(None)


def test_settings_file_is_validated_naming_the_field() -> None:
    cfg = load_config()
    assert cfg.screening.sobol_n_base >= 512  # the minimum for the shipped screening
    assert cfg.validation.draws >= 256
    text = (
        calibrate.config_path()
        .read_text(encoding="utf-8")
        .replace("sobol_n_base = 512", "sobol_n_base = -1")
    )
    with pytest.raises(CalibrationConfigError) as exc:
        CalibrationConfig.from_toml_text(text, source="calibrate.toml")
    assert "screening.sobol_n_base" in str(exc.value)


def test_apply_settings_changes_the_course_as_the_study_would() -> None:
    course = {
        "horizon_days": 176.0,
        "patient": {"age_years": 25, "sex": "female", "fitzpatrick": 4},
        "sessions": [
            {"day": 0.0, "needle_length_mm": 1.5, "passes": 15},
            {"day": 30.0, "needle_length_mm": 1.5, "passes": 15},
            {"day": 60.0, "needle_length_mm": 1.5, "passes": 15},
        ],
    }
    c = apply_settings(
        course,
        {"needle_length_mm": 1.0, "passes": 8.4, "age_years": 44.6, "fitzpatrick": 2,
         "interval_days": 14},
    )  # fmt: skip
    assert [s["needle_length_mm"] for s in c["sessions"]] == [1.0] * 3
    assert [s["passes"] for s in c["sessions"]] == [8] * 3
    assert c["patient"] == {"age_years": 45, "sex": "female", "fitzpatrick": 2}
    assert [s["day"] for s in c["sessions"]] == [0.0, 14.0, 28.0]
    assert c["horizon_days"] == 28.0 + (176.0 - 60.0)  # the end point keeps its offset
    assert course["sessions"][1]["day"] == 30.0  # the protocol itself is untouched
    with pytest.raises(InputError):
        apply_settings(course, {"site": 1.0})


def test_nuisance_scores_map_uniformly_onto_the_range() -> None:
    u = np.random.default_rng(0).standard_normal(200_000)
    passes = Nuisance("s", "passes", 8, 20, ("r",)).at(u)
    counts = np.bincount(passes.astype(int) - 8)
    assert set(np.unique(passes)) == set(range(8, 21))
    assert counts.min() / counts.max() > 0.95  # 13 equally likely integers
    length = Nuisance("s", "needle_length_mm", 1.0, 2.0, ("r",)).at(u)
    assert length.min() >= 1.0 and length.max() <= 2.0
    assert np.mean(length) == pytest.approx(1.5, abs=0.005)


def test_every_evaluable_calibration_row_has_a_likelihood(problem: Problem) -> None:
    protocols = load_protocols()
    cal = rows("calibration")
    # evaluable, and not already in the model (a row that set a parameter by hand is left out)
    evaluable = [r for r in cal if protocols[r.key].evaluable and not r.sets_parameters]
    assert [s.key for s in problem.likelihood.specs] == [r.key for r in evaluable]
    assert {k for k, _ in problem.skipped} == {r.key for r in cal} - {r.key for r in evaluable}
    assert all(reason.strip() for _, reason in problem.skipped)
    for r, s in zip(evaluable, problem.likelihood.specs, strict=True):
        if r.kind == "count" and needs_cohort_spread(r, protocols[r.key]):
            assert s.kind == "ordinal" and s.k == r.k  # a graded count: its cohort's spread
        elif r.kind == "count":
            assert s.kind == "binomial" and s.k == r.k and s.observed == r.k / r.n
        elif r.kind == "direction":
            assert s.kind == ("upper" if r.bound == "upper" else "lower") and s.observed == 0.0
        elif r.kind == "bound":
            assert s.kind == r.bound
        else:
            assert s.kind == "gaussian" and s.se > 0
        assert s.study == r.study and s.scale >= 0


def test_priors_of_calibrated_entries_come_from_the_settings_file(problem: Problem) -> None:
    cfg = load_config()
    for f in problem.factors:
        for name, prior in zip(f.members, f.priors, strict=True):
            if problem.base.parameters[name].kind == "calibrated" or name in cfg.priors:
                p = cfg.priors[name]
                assert prior == (p.value, p.low, p.high), name
                assert f.prior_source == "calibrate.toml [priors]"
    # a tie moves its members together
    k1 = next(f for f in problem.factors if "healing.k_1" in f.members)
    assert k1.members == ("healing.k_1", "healing.k_3")
    v = k1.values_at(1.0)
    assert v["healing.k_1"] == pytest.approx(v["healing.k_3"])


def test_the_fit_refuses_validation_rows_and_never_simulates_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InputError, match="calibration rows only"):
        build_problem(None, lit_rows=rows("validation")[:2])
    seen: list[str] = []
    real = calibrate.predict_rows

    def spy(lit_rows, sets, *a, **kw):  # type: ignore[no-untyped-def]
        seen.extend(r.key for r in lit_rows)
        return real(lit_rows, sets, *a, **kw)

    monkeypatch.setattr(calibrate, "predict_rows", spy)
    pr = build_problem(None)
    pr.evaluate(np.zeros((1, pr.ndim)))
    assert seen and not set(seen) & {r.key for r in rows("validation")}


def test_stand_ins_drawn_from_their_ranges_move_the_prediction() -> None:
    protocols = load_protocols()
    row = next(
        r
        for r in rows("calibration")
        if protocols[r.key].evaluable
        and "needle_length_mm" in protocols[r.key].ranges
        and (protocols[r.key].endpoint or "").startswith("dermal_density")
    )
    settings = load_protocol_file()["settings"]
    lo, hi = protocols[row.key].ranges["needle_length_mm"]
    from microneedling.parameters.parameter_set import load_parameters

    ps = load_parameters()
    pred = predict_rows(
        [row], [ps, ps], protocols, settings,
        overrides=[{row.key: {"needle_length_mm": lo}}, {row.key: {"needle_length_mm": hi}}],
    )  # fmt: skip
    assert pred[1, 0] > pred[0, 0]  # deeper needling, more density gain


def test_two_arm_rows_are_the_contrast_of_two_simulated_arms() -> None:
    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    from microneedling.parameters.parameter_set import load_parameters

    ps = load_parameters()
    two = [
        r
        for r in rows()
        if r.two_arm
        and protocols[r.key].evaluable
        and protocols[r.key].reference is not None
        and not protocols[r.key].untreated_reference
    ]
    if not two:
        pytest.skip("no evaluable two-arm row with a treated comparator")
    r = two[0]
    p = protocols[r.key]
    ref = p.reference_protocol()
    assert ref is not None
    arm = dataclasses.replace(p, reference=None)
    got = predict_rows([r], [ps], protocols, settings)[0, 0]
    a = predict_rows([r], [ps], {r.key: arm}, settings)[0, 0]
    b = predict_rows([r], [ps], {r.key: ref}, settings)[0, 0]
    want = a / b if r.contrast == "ratio" else a - b
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_a_pih_count_is_compared_with_the_models_course_risk() -> None:
    """``course_incidence`` is the model's own course risk: one PIH threshold per patient, so the
    chance of PIH in a course is the largest session risk (the ``pih_risk`` end point), not
    1 − ∏(1 − p_k), which would draw each session of one patient afresh. With twelve weekly
    sessions (vietnam_pih) the two differ by far more than any tolerance."""
    from microneedling.engine.batch import simulate_batch
    from microneedling.engine.endpoints import endpoint_values, parse_endpoint
    from microneedling.parameters.parameter_set import load_parameters

    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    ps = load_parameters()
    r = next(x for x in rows() if x.key == "vietnam_pih")
    p = protocols[r.key]
    assert p.compare == "course_incidence"
    got = predict_rows([r], [ps], protocols, settings)[0, 0]
    run = simulate_batch([protocol_course(p)], [ps])
    course = 100.0 * endpoint_values(run, parse_endpoint("pih_risk"))[0]
    per_session = run.per_session["pih_risk"][0]
    independent = 100.0 * (1.0 - np.prod(1.0 - per_session[np.isfinite(per_session)]))
    assert got == pytest.approx(course, rel=1e-12)
    assert got == pytest.approx(100.0 * np.nanmax(per_session), rel=1e-12)
    assert independent > got + 5.0  # the sessions are not independent draws


def test_refined_grid_holds_the_default_grid_and_fine_steps() -> None:
    protocols = load_protocols()
    p = next(protocols[r.key] for r in rows("calibration") if protocols[r.key].course)
    course = protocol_course(p)
    from microneedling.engine.prepare import output_times

    days = np.array(sorted({float(s.day) for s in course.sessions}))
    default = output_times(days, float(course.horizon_days))
    fine = refined_grid([course], 4, 15.0, 3.0)
    assert np.all(np.isin(default, fine))
    step = 15.0 / 1440.0
    near = fine[(fine > days[0]) & (fine < days[0] + 3.0)]
    assert np.max(np.diff(near)) <= step + 1e-12
    assert len(fine) > 4 * len(default)


def test_history_matching_rules_out_the_implausible(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose first Gaussian row is y + 10 noise units x z[0] and whose second can never
    reach its observation: the first row rules out |z0| >~ 0.3, the second is a conflict."""
    specs = problem.likelihood.specs
    obs = np.array([s.observed for s in specs])
    scale = np.array([math.hypot(s.se, 0.9 * s.scale) for s in specs])
    i0, i1 = [i for i, s in enumerate(specs) if s.kind == "gaussian"][:2]

    def predict(self: Problem, x: np.ndarray, *, strict: bool = False) -> np.ndarray:
        out = np.tile(obs, (len(x), 1))
        out[:, i0] += 10.0 * scale[i0] * x[:, 0]
        out[:, i1] += 100.0 * scale[i1]
        return out

    monkeypatch.setattr(Problem, "predict", predict)
    cfg = load_config()
    cfg = cfg.model_copy(
        update={"history_matching": cfg.history_matching.model_copy(update={"points": 512})}
    )
    hm = history_match(problem, cfg)
    s = hm.summary()
    assert s["rows"][i1]["conflict"] and not s["rows"][i0]["conflict"]
    assert s["empty"]  # no point reaches the second row
    ok = hm.implausibility[:, i0] <= 3.0
    assert np.all(np.abs(hm.x[ok, 0]) < 0.45) and np.any(ok)
    assert s["waves"][1]["points"] == 512


def test_tomlable_writes_what_toml_can_hold() -> None:
    data = {"a": None, "b": (1, np.float64(2.5)), "c": float("inf"), "d": np.arange(2)}
    out = tomlable(data)
    assert out == {"b": [1, 2.5], "c": "inf", "d": [0, 1]}
    from microneedling.io import dumps_toml

    assert loads_toml(dumps_toml(out)) == out


def test_row_specs_of_a_zero_value_row_get_a_default_spread() -> None:
    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    zero = [
        r
        for r in rows("calibration")
        if protocols[r.key].evaluable and r.value == 0 and r.kind in ("value", "direction")
    ]
    if not zero:
        pytest.skip("no calibration row at 0")
    specs, _, _, _ = row_specs(zero, protocols, settings, load_config())
    cv = float(settings["default_cv"])
    for r, s in zip(zero, specs, strict=True):
        assert s.se == pytest.approx(cv * s.scale / math.sqrt(r.n or 1))


def test_levels_are_compared_on_the_log_scale_and_changes_are_not() -> None:
    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    cal = {r.key: r for r in rows("calibration") if protocols[r.key].evaluable}
    want = {
        "hkjdv2018_erythema": True,  # hours of redness
        "kalluri2011_channel_depth": True,  # a needles stage
        "vietnam_gb_end": True,  # a grade: baseline x (1 + change)
        "gul_mmasi": True,
        "lotfi2013_collagen": False,  # % change
        "dogra2014_score": False,  # relative change
        "ogunjimi2020_black_minus_white": False,  # a contrast of two arms
        "kenkel2021_attenuation_1mo": False,  # a direction
        "vietnam_pih": False,  # a count
    }
    for key, level in want.items():
        assert calibrate.is_level_row(cal[key], protocols[key]) == level, key
    keys = list(want)
    specs, _, _, _ = row_specs([cal[k] for k in keys], protocols, settings, load_config())
    assert {s.key: s.log for s in specs} == want


def test_a_two_arm_contrast_has_a_discrepancy_of_its_own() -> None:
    """Ogunjimi 2020's black - white contrast (16.3 h; the model has no skin-type dependence of
    closure) must not share the five lifetimes' study discrepancy: in one block the shared delta,
    scaled by each row's |observed|, explained part of the contrast and pulled the lifetimes to
    half their observed values (the 2026-12-06 calibration). Separate read-outs; and on the
    likelihood, lifetimes predicted at their observed level are then preferred to half of it."""
    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    cal = {r.key: r for r in rows("calibration")}
    keys = [k for k in cal if k.startswith("ogunjimi2020_")]
    specs, names, _, _ = row_specs([cal[k] for k in keys], protocols, settings, load_config())
    readout = {s.key: s.readout for s in specs}
    contrast = readout.pop("ogunjimi2020_black_minus_white")
    assert contrast.endswith(":contrast") and len(set(readout.values())) == 1
    assert contrast not in readout.values()
    observed = np.array([s.observed for s in specs])
    is_level = np.array([s.key != "ogunjimi2020_black_minus_white" for s in specs])
    mean_level = observed[is_level].mean()
    at_level = np.where(is_level, mean_level, 0.0)  # one lifetime for all, no contrast
    at_half = np.where(is_level, mean_level / 2.0, 0.0)
    pred = np.vstack([at_level, at_half])
    shared = [dataclasses.replace(s, readout=s.readout.removesuffix(":contrast")) for s in specs]
    for tau, margin in ((0.2, 2.0), (0.5, 0.0)):
        t = np.full((2, len(names)), tau)
        ll = Likelihood(specs, len(names))(pred, t)
        assert ll[0] > ll[1] + margin, tau
        old = Likelihood(shared, len(names))(pred, t)  # the former block: half is preferred
        assert old[1] > old[0], tau


def test_resealing_rows_read_the_occluded_rate_and_their_closed_fraction() -> None:
    from microneedling.parameters.parameter_set import load_parameters

    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    ps = load_parameters()
    table = {r.key: r for r in rows()}
    keys = ["kalluri2011_tewl", "ogunjimi2020_lifetime_white", "pmc8259462_halflife_abdomen"]
    got = calibrate.predict_rows([table[k] for k in keys], [ps], protocols, settings)[0]
    k_open = ps.value("transport.k_close_open", "1/h")
    k_occ = ps.value("transport.k_close_occluded", "1/h")
    assert not protocols[keys[0]].occluded and protocols[keys[1]].occluded
    assert got == pytest.approx(
        [math.log(4.0) / k_open, math.log(4.0) / k_occ, math.log(2.0) / k_occ], rel=1e-12
    )


def test_a_range_end_the_course_refuses_moves_inward() -> None:
    from microneedling.studies.credibility.calibrate import nuisances

    protocols = load_protocols()
    row = next(
        r
        for r in rows("calibration")
        if protocols[r.key].evaluable and "age_years" in protocols[r.key].ranges
    )
    p = protocols[row.key]
    bad = dataclasses.replace(p, ranges={**p.ranges, "age_years": (16.0, 40.0)})
    (nu,) = [n for n in nuisances([row], {row.key: bad}) if n.setting == "age_years"]
    assert (nu.low, nu.high) == (18.0, 40.0)  # adults only: 16 and 17 are refused
    assert nu.given == (16.0, 40.0) and nu.to_dict()["given"] == [16.0, 40.0]
    never = dataclasses.replace(p, ranges={**p.ranges, "age_years": (5.0, 12.0)})
    with pytest.raises(InputError, match=r"ranges\.age_years"):
        nuisances([row], {row.key: never})


def test_a_row_that_set_a_parameter_by_hand_is_left_out_of_the_likelihood() -> None:
    """Kalluri 2011's rat channel depth set needles.insertion_factor by hand (derived): in the
    likelihood it would count twice (and, simulated with the human insertion, it put the whole
    posterior's weight on the needle mechanics: 631 um predicted against 152.5 +/- 9.6 um). A row
    whose parameter is sampled stays out too: that parameter's prior was formed from the row."""
    problem = build_problem(["healing.k_1", "needles.channel_radius_ratio"])
    skipped = dict(problem.skipped)
    keys = {r.key for r in problem.rows}
    for key, name in (
        ("kalluri2011_channel_depth", "needles.insertion_factor"),
        ("kalluri2011_channel_diameter", "needles.channel_radius_ratio"),
        ("gupta2011_reseal", "transport.k_close_open"),
    ):
        assert key not in keys
        assert name in skipped[key] and "by hand" in skipped[key]
    row = next(r for r in rows("calibration") if r.key == "kalluri2011_channel_diameter")
    with pytest.raises(InputError, match="at least one calibration row"):
        build_problem(["needles.channel_radius_ratio"], lit_rows=[row])
    free = dataclasses.replace(row, sets_parameters=())
    pr = build_problem(["needles.channel_radius_ratio"], lit_rows=[free])
    assert [r.key for r in pr.rows] == [row.key]


def test_parallel_evaluation_gives_the_same_numbers_and_stops_its_workers() -> None:
    """Two worker processes evaluate a batch of vectors exactly as one process does (each case
    of a batched solve is integrated on its own steps), and are gone when the block ends."""
    cal = [r for r in rows("calibration") if r.key.startswith(("lotfi2013", "kenkel2021"))]
    pr = build_problem(["healing.k_1", "healing.k_H"], lit_rows=cal)
    rng = np.random.default_rng(3)
    x = np.zeros((5, pr.ndim))
    x[:, : pr.P] = rng.standard_normal((5, pr.P)) * 0.7
    serial = pr.predict(x)
    with parallel_evaluation(pr, 2) as par:
        assert par is pr
        split = pr.predict(x)
        assert len(multiprocessing.active_children()) == 2
        # some rows only, on the workers: those rows' numbers, NaN for the rest
        cols = [j for j, r in enumerate(pr.rows) if r.key.startswith("kenkel2021")]
        some = pr.predict(x, columns=cols)
    assert np.array_equal(serial, split, equal_nan=True)
    assert not multiprocessing.active_children()
    assert pr.predict(x[:2]).shape == (2, len(pr.rows))  # serial again
    assert 0 < len(cols) < len(pr.rows)
    # solved without the other rows, so output at fewer times: an end point between output times
    # is interpolated differently (Kenkel's 1-month attenuation 3.2e-4 relative), the rest agree
    # to the integrator's tolerance
    np.testing.assert_allclose(some[:, cols], serial[:, cols], rtol=1e-3)
    assert np.isnan(np.delete(some, cols, axis=1)).all()
    assert np.array_equal(pr.predict(x[:2], columns=cols), some[:2], equal_nan=True)  # serial
    with pytest.raises(InputError, match="columns"):
        pr.predict(x[:1], columns=[len(pr.rows)])
    with pytest.raises(InputError, match="columns"):
        pr.predict(x[:1], columns=[0, 0])
    with pytest.raises(InputError, match="columns"):
        pr.predict(x[:1], columns=[0.5])  # type: ignore[list-item]
    with pytest.raises(InputError, match="columns"):
        pr.predict(x[:1], columns=[True])

    with pytest.raises(InputError, match="workers"):
        with parallel_evaluation(pr, 0):
            pass


def test_a_studys_log_likelihood_reads_only_its_own_rows(problem: Problem) -> None:
    """What a refit's scores rely on (``loso_refit.refit_scores`` predicts one study's rows): on
    the calibration's likelihood (every kind of row), a study's log-likelihood with every other
    study's predictions NaN is bit for bit the one with all of them, without a warning, and the
    other studies get -inf."""
    import warnings

    lik = problem.likelihood
    rng = np.random.default_rng(0)
    full = np.array(
        [0.3 if s.kind == "binomial" else s.observed for s in lik.specs], dtype=float
    ) * (1.0 + 0.05 * rng.standard_normal((3, len(lik.specs))))
    tau = np.full((3, problem.Q), 0.3)
    ref = lik.by_study(full, tau)
    assert np.isfinite(ref).all()
    for j, study in enumerate(lik.studies):
        own = [i for i, s in enumerate(lik.specs) if s.study == study]
        f = np.full_like(full, np.nan)
        f[:, own] = full[:, own]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = lik.by_study(f, tau)
        assert np.array_equal(got[:, j], ref[:, j]), study
        assert np.isneginf(np.delete(got, j, axis=1)).all(), study


class _SlowProblem(Problem):
    """Every prediction takes a minute (a chunk in flight when the run is interrupted)."""

    def predict(
        self, x: np.ndarray, *, strict: bool = False, columns: Sequence[int] | None = None
    ) -> np.ndarray:
        if self._pool is not None:
            return super().predict(x, strict=strict, columns=columns)
        marker = os.environ.get("MICRONEEDLING_TEST_MARKER")
        if marker:
            Path(marker).touch()  # the test interrupts once a worker is inside the chunk
        time.sleep(60)
        return np.zeros((len(np.atleast_2d(x)), len(self.rows)))


def _slow_problem() -> _SlowProblem:
    cal = [r for r in rows("calibration") if r.key.startswith("lotfi2013")]
    pr = build_problem(["healing.k_1"], lit_rows=cal)
    return _SlowProblem(**{f.name: getattr(pr, f.name) for f in dataclasses.fields(pr) if f.init})


def test_an_interrupted_block_ends_its_workers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM's unwinding) while workers run a chunk: the block does not wait for
    the chunk (a minute here); the workers are ended within seconds."""
    marker = tmp_path / "inside"
    monkeypatch.setenv("MICRONEEDLING_TEST_MARKER", str(marker))
    pr = _slow_problem()
    x = np.zeros((4, pr.ndim))
    sent: list[float] = []

    def interrupt_when_inside() -> None:
        deadline = time.monotonic() + 120.0  # spawning workers on a loaded machine
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        with parallel_evaluation(pr, 2) as par:
            threading.Thread(target=interrupt_when_inside, daemon=True).start()
            par.predict(x)
    assert marker.exists()
    assert time.perf_counter() - sent[0] < 15.0
    # ended within seconds of the signal (a worker just sent SIGTERM may take a moment to exit)
    while multiprocessing.active_children() and time.perf_counter() - sent[0] < 15.0:
        time.sleep(0.05)
    assert not multiprocessing.active_children()


def test_workers_end_themselves_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL, or a second SIGTERM) cannot stop its workers; they
    notice and exit instead of waiting for work forever."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[3])!r})\n"
        "from tests.studies.credibility.test_calibrate import _slow_problem\n"
        "from microneedling.studies.credibility.calibrate import parallel_evaluation\n"
        "import multiprocessing\n"
        "if __name__ == '__main__':\n"
        "    pr = _slow_problem()\n"
        "    with parallel_evaluation(pr, 2) as par:\n"
        "        list(par._pool.map(abs, [1, 2]))\n"
        "        print(' '.join(str(c.pid) for c in multiprocessing.active_children()), flush=True)\n"
        "        par.predict(np.zeros((4, pr.ndim)))\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) >= 2
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15.0
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if _alive(p)]
    assert not alive, f"workers {alive} outlived their killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_every_fitted_parameter_has_a_prior_that_is_not_its_fit() -> None:
    """A parameter whose file holds a fitted value (kind "calibrated", e.g. the PIH threshold and
    the grade map's mild depth) needs a pre-calibration prior in calibrate.toml: otherwise
    `microneedling calibrate` stops when it lists the candidate factors (seen on 2026-12-06). The
    prior is not the fitted value (a prior centred on a fit would count the fitted rows twice; the
    older ones are the start values of a previous least-squares fit, close to but not its result)
    and reaches the fitted interval."""
    from microneedling.parameters.parameter_set import load_parameters

    ps = load_parameters()
    config = calibrate.load_config()
    calibrate.candidate_factors(ps, config)  # raises without such a prior
    fitted = [
        n
        for n, p in ps.parameters.items()
        if p.kind == "calibrated" and n.split(".")[0] in config.screening.groups
    ]
    assert "observe.scar_grade_mild_depth" in fitted and "observe.pih_threshold" in fitted
    for name in fitted:
        assert name in config.priors, name
        prior, par = config.priors[name], ps.parameters[name]
        assert prior.value != par.value, name
        # wide enough that the data can reach the fit: the prior's 5-95% range holds the file's
        assert par.low is not None and par.high is not None
        assert prior.low <= par.low and prior.high >= par.high, name


def test_predictions_read_only_the_output_times_their_end_points_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """predict_rows observes each batched solve only at the output times its rows' end points
    interpolate between (engine.batch.Reads), and a one-at-a-time design's repeated cases are
    integrated once; both give every row (both roles, two arms, stages, counts) the numbers of
    a run observed on the whole grid, bit for bit."""
    from microneedling.parameters.parameter_set import load_parameters

    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    evaluable = [r for r in rows() if protocols[r.key].evaluable]
    ps = load_parameters()
    name = "observe.pih_threshold"  # an observation coefficient: no healing input changes
    sets = [ps, ps.with_values({name: 1.1 * float(ps.parameter(name).value)})]  # type: ignore[arg-type]
    seen: list[calibrate.Reads | None] = []
    real = calibrate._batch_reads

    def spy(*args: object, **kw: object) -> list[calibrate.Reads]:
        out = real(*args, **kw)  # type: ignore[arg-type]
        seen.extend(out)
        return out

    monkeypatch.setattr(calibrate, "_batch_reads", spy)
    got = predict_rows(evaluable, sets, protocols, settings)
    assert seen and all(r is not None and r.endpoints for r in seen)
    monkeypatch.setattr(calibrate, "_batch_reads", lambda batches, *a: [None] * len(batches))
    whole = predict_rows(evaluable, sets, protocols, settings)
    assert np.array_equal(got, whole, equal_nan=True)
    assert np.isfinite(got).sum() > 0.8 * len(evaluable) * len(sets)


def test_a_graded_calibration_count_takes_its_spread_from_a_virtual_cohort() -> None:
    """A calibration count with a threshold and no reported SD gets the between-patient SD and
    offset of its protocol's virtual cohort at the given set (calibrate.graded_spread, seeded by
    [screening] seed), and row_specs makes it an ordinal row with the threshold moved by the
    offset; a count without a threshold is left alone."""
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.studies.credibility.calibrate import graded_spread, responder_spread

    config = load_config()
    config = config.model_copy(
        update={
            "validation": config.validation.model_copy(update={"cohort_patients": 8}),
        }
    )
    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    table = {r.key: r for r in rows()}
    key = "park2012_marked_excellent"  # 7 of 16 by > 50 %: a graded count
    graded, plain = table[key], table["vietnam_pih"]
    ps = load_parameters()
    got = graded_spread([graded, plain], protocols, ps, config)
    assert list(got) == [key]
    f = float(predict_rows([graded], [ps], protocols)[0, 0])
    want = responder_spread([graded], protocols, ps, config, config.screening.seed, {key: f})[key]
    sd, offset = got[key]
    assert (sd, offset) == (want["sd"], want["offset"]) and sd > 0
    (spec,), *_ = row_specs([graded], protocols, settings, config, patient_spread=got)
    assert spec.kind == "ordinal" and spec.se == sd
    assert spec.threshold == pytest.approx(protocols[key].threshold - offset, rel=1e-12)


def test_a_new_patient_spread_moves_only_the_graded_counts(problem: Problem) -> None:
    """``with_patient_spread`` puts a graded count's cohort (sd, offset) where ``row_specs`` does
    (SE, threshold moved by the offset) and leaves every other row as it was; ``recorded_spread``
    reads it back from a summary's rows, and ``build_problem`` given it builds the same
    likelihood without running a cohort."""
    protocols = load_protocols()
    by_key = {r.key: r for r in problem.rows}
    graded = [
        s.key
        for s in problem.likelihood.specs
        if s.kind == "ordinal" and needs_cohort_spread(by_key[s.key], protocols[s.key])
    ]
    assert "alsterli2020_striae_gt75" in graded
    spread = {k: (7.5 + i, -3.0 + i) for i, k in enumerate(graded)}
    new = with_patient_spread(problem, spread)
    for old, got in zip(problem.likelihood.specs, new.specs, strict=True):
        if old.key in spread:
            sd, offset = spread[old.key]
            thr = protocols[old.key].threshold
            assert thr is not None
            assert got.se == sd and got.threshold == pytest.approx(thr - offset, abs=1e-12)
            assert dataclasses.replace(got, se=old.se, threshold=old.threshold) == old
        else:
            assert got == old
    back = recorded_spread({"rows": new.describe()}, protocols)
    assert back.keys() == spread.keys()
    for k, (sd, offset) in spread.items():
        assert back[k] == pytest.approx((sd, offset), abs=1e-12)
    with pytest.raises(InputError):
        with_patient_spread(problem, {})
    with pytest.raises(InputError):
        with_patient_spread(problem, {k: (0.0, 0.0) for k in spread})
    again = build_problem(
        [f.label for f in problem.factors],
        patient_spread=spread,
    )
    assert again.likelihood.describe() == new.describe()
