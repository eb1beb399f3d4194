"""Visible redness and swelling (physics.redness): the expected duration over patients against its
closed form, and the engine's redness smooth and monotone in needle length (no jump), hours after
shallow sessions, about two days after 1.5 mm, darker skin types seeing less, swelling shorter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import norm

from microneedling.course.model import Course
from microneedling.engine.batch import simulate_batch
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import redness as rd
from tests.physics.test_pigment import PEN

MF8 = {
    "type": "roller",
    "needle_count": 192,
    "needle_diameter_mm": 0.25,
    "tip_radius_um": 4.0,
    "tip": "cone",
    "max_needle_length_mm": 2.5,
    "drum_diameter_mm": 20.0,
    "drum_width_mm": 20.0,
}
STAMP = {
    "type": "stamp",
    "needle_count": 35,
    "needle_diameter_mm": 0.25,
    "tip_radius_um": 4.0,
    "tip": "cone",
    "max_needle_length_mm": 1.5,
    "stamp_area_cm2": 0.5,
}


@pytest.fixture(scope="module")
def ps() -> ParameterSet:
    return load_parameters()


@pytest.fixture(scope="module")
def rp(ps: ParameterSet) -> rd.RednessParameters:
    return rd.RednessParameters.from_parameters(ps)


def course(length: float, passes: int = 15, fitz: int = 3, device: dict[str, Any] = MF8) -> Course:
    session: dict[str, Any] = {"day": 0, "site": "cheek", "needle_length_mm": length}
    session["passes"] = passes
    if device["type"] == "pen":
        session["pen_speed_cm_s"] = 2.0
    return Course.model_validate(
        {
            "name": "redness test",
            "horizon_days": 28,
            "patient": {"age_years": 30, "sex": "female", "fitzpatrick": fitz},
            "sites": [{"name": "cheek"}],
            "device": device,
            "sessions": [session],
        }
    )


def days(courses: list[Course], ps: ParameterSet, name: str = "erythema_days") -> np.ndarray:
    return simulate_batch(courses, ps, parallel=False).per_session[name][:, 0]


def test_expected_duration_of_an_exponential_flare(rp: rd.RednessParameters) -> None:
    """V alone (no inflammation): R = A e^(−t/τ), so ∫Φ((ln(A/θ) − t/τ)/σ) dt has the closed form
    τ (c Φ(c/σ) + σ φ(c/σ)), c = ln(A/θ); the fine grid integrates it to 0.5%."""
    injured = np.array([[[0.1, 0.3, 0.05]]])
    t = np.linspace(0.0, 28.0, 50)
    zero = np.zeros((1, t.size))
    a = float(rd.vascular_signal(np.array([0.0]), np.array([[0.0]]), injured, rp)[0, 0])
    for theta in (0.05 * a, 0.5 * a, 2.0 * a):
        got = rd.expected_duration(
            t, zero, zero, np.array([[0.0]]), injured, np.array([[0.0]]), np.array([[28.0]]),
            np.array([theta]), rp,
        )[0, 0]  # fmt: skip
        c, s, tau = np.log(a / theta), rp.threshold_sd, rp.vascular_time
        exact = tau * (c * ndtr(c / s) + s * norm.pdf(c / s))
        assert got == pytest.approx(exact, rel=5e-3)


#: the largest relative difference allowed between a compiled duration and the NumPy reference
#: (libm's exp, log and erfc against NumPy's exp and log and SciPy's cephes ``ndtr``, and V and H
#: continued from the window's start: measured up to 9e-15 over random cases)
DURATION_RTOL = 1e-12


def assert_durations_close(got: np.ndarray, want: np.ndarray) -> float:
    """Same NaN windows and every duration within :data:`DURATION_RTOL` of the reference (zero
    where it is zero); returns the largest relative difference."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    diff = np.abs(got[ok] - want[ok])
    assert np.all(diff <= DURATION_RTOL * np.abs(want[ok])), np.max(diff / np.abs(want[ok]))
    rel = diff[diff > 0] / np.abs(want[ok][diff > 0])
    return float(rel.max(initial=0.0))


def _impulses_reference(
    tt: np.ndarray, days: np.ndarray, amp: np.ndarray, tau: float | np.ndarray
) -> np.ndarray:
    """Σ_k amp_k exp(−(t − t_k)/τ) over every session column, masked where not yet over."""
    out = np.zeros(tt.shape)
    for j in range(days.shape[1]):
        d = days[:, j][:, None]
        ok = np.isfinite(d)
        dt = tt - np.where(ok, d, 0.0)
        on = ok & (dt >= 0.0)
        decay = np.exp(-np.where(on, dt, 0.0) / tau)
        out += np.where(on, amp[:, j][:, None] * decay, 0.0)
    return out


def _saturation(x: np.ndarray, p: rd.RednessParameters) -> np.ndarray:
    x = np.maximum(x, 0.0)
    return np.asarray(x / (p.recruitment_half + x))


def _visible_reference(
    t: np.ndarray,
    ip: np.ndarray,
    ir: np.ndarray,
    days: np.ndarray,
    injured: np.ndarray,
    cleft: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    log_thr: np.ndarray,
    p: rd.RednessParameters,
) -> np.ndarray:
    """The durations as NumPy computed them (the reference of the compiled kernel): window by
    window over every row, V and H summed over every session column, np.interp row by row, SciPy's
    ``ndtr``; thresholds' logs (M, B) give (M + 1, B, K), the last the downtime (largest of
    ln R − ln θ_m and ln H − ln θ_0)."""
    x = injured[..., 1] + p.vascular_epidermal_weight * injured[..., 0]
    amp_v = p.vascular_ratio * _saturation(x + p.reticular_weight * injured[..., 2], p)
    amp_h = p.haem_ratio * _saturation(cleft, p)
    B, K = starts.shape
    M = log_thr.shape[0]
    out = np.full((M + 1, B, K), np.nan)
    sd = np.maximum(p.threshold_sd, 1e-12)  # a number, or one per case (B, 1)
    for k in range(K):
        ok = np.isfinite(starts[:, k])
        if not np.any(ok):
            continue
        s0 = np.where(ok, starts[:, k], 0.0)
        e0 = np.where(ok & np.isfinite(ends[:, k]), ends[:, k], s0 + rd.DURATION_GRID[-1])
        grid = s0[:, None] + rd.DURATION_GRID[None, :]
        inside = grid <= e0[:, None]
        g = np.minimum(grid, e0[:, None])
        pap = np.array([np.interp(g[b], t, ip[b]) for b in range(B)])
        ret = np.array([np.interp(g[b], t, ir[b]) for b in range(B)])
        r = _impulses_reference(g, days, amp_v, p.vascular_time) + pap + p.reticular_weight * ret
        log_r = np.log(np.maximum(r, 1e-300))
        log_h = np.log(np.maximum(_impulses_reference(g, days, amp_h, p.haem_time), 1e-300))
        z = [log_r - log_thr[m][:, None] for m in range(M)]
        z.append(np.maximum(np.max(z, axis=0), log_h - log_thr[0][:, None]))
        for m, zm in enumerate(z):
            prob = np.where(inside, ndtr(zm / sd), 0.0)
            dur = np.sum(0.5 * (prob[:, 1:] + prob[:, :-1]) * np.diff(g, axis=1), axis=1)
            out[m, :, k] = np.where(ok, dur, np.nan)
    return out


def numpy_visible_durations(
    t: np.ndarray,
    ip: np.ndarray,
    ir: np.ndarray,
    days: np.ndarray,
    injured: np.ndarray,
    cleft: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    fitzpatrick: np.ndarray,
    p: rd.RednessParameters,
    which: tuple[str, ...] = rd.VISIBLE,
) -> rd.VisibleDurations:
    """:func:`~microneedling.physics.redness.visible_durations` by the NumPy reference (one set
    of coefficients, or one per case; those not in ``which`` NaN)."""
    B = starts.shape[0]
    swell = np.broadcast_to(np.asarray(p.oedema_threshold, dtype=float).reshape(-1), (B,))
    log_thr = np.stack([np.log(rd.visibility_threshold(fitzpatrick, p)), np.log(swell)])
    out = _visible_reference(t, ip, ir, days, injured, cleft, starts, ends, log_thr, p)
    return rd.VisibleDurations(
        *(
            x if n in which else np.full(x.shape, np.nan)
            for n, x in zip(rd.VISIBLE, out, strict=True)
        )
    )


def test_batched_windows_give_the_same_numbers(rp: rd.RednessParameters) -> None:
    """The durations of every set window, two thresholds on one signal: the window-by-window NumPy
    loop (kept above) to :data:`DURATION_RTOL`, each threshold alone as both together bit for bit,
    on rows with 1 to 5 sessions (padding inf / NaN), a last window without an end, a session after
    the output grid; and V alone on the output grid bit for bit as the loop over every session."""
    rng = np.random.default_rng(3)
    t = np.unique(np.concatenate([np.linspace(0.0, 150.0, 301), rng.uniform(0.0, 150.0, 40)]))
    B, K = 7, 5
    counts = np.array([1, 5, 3, 0, 2, 4, 1])
    days = np.full((B, K), np.inf)
    for b, n in enumerate(counts):
        days[b, :n] = np.sort(rng.choice(np.arange(0.0, 140.0, 7.0), n, replace=False))
    days[6, 0] = 200.0  # after the last output time: never on
    starts = np.where(np.isfinite(days), days, np.nan)
    nxt = np.concatenate([days[:, 1:], np.full((B, 1), np.inf)], axis=1)
    ends = np.where(np.isfinite(starts), np.minimum(nxt, 150.0), np.nan)
    ends[2, 2] = np.nan  # a window without an end: the whole grid
    injured = rng.uniform(0.0, 0.4, (B, K, 3))
    ip = np.abs(rng.normal(0.0, 0.3, (B, t.size))) * np.exp(-t / 30.0)
    ir = np.abs(rng.normal(0.0, 0.3, (B, t.size))) * np.exp(-t / 20.0)
    thr = np.stack([rd.visibility_threshold(rng.integers(1, 7, B), rp), np.full(B, 0.3)])
    args = (t, ip, ir, days, injured, starts, ends)
    both = rd.expected_duration(*args, thr, rp)
    assert both.shape == (2, B, K)
    with np.errstate(divide="ignore"):
        ref = _visible_reference(*args[:5], np.zeros((B, K)), *args[5:], np.log(thr), rp)
    for m in range(2):
        want = ref[m]
        assert np.array_equal(np.isnan(want), ~np.isfinite(days))
        assert np.nanmax(want) > 0.1  # something is red
        assert_durations_close(both[m], want)
        assert np.array_equal(rd.expected_duration(*args, thr[m], rp), both[m], equal_nan=True)
    # V on the output grid (B, T), against the loop over every session column
    got = rd.vascular_signal(t, days, injured, rp)
    x = np.maximum(injured[..., 1] + rp.vascular_epidermal_weight * injured[..., 0]
                   + rp.reticular_weight * injured[..., 2], 0.0)  # fmt: skip
    amp = rp.vascular_ratio * x / (rp.recruitment_half + x)
    want_v = np.zeros((B, t.size))
    for j in range(K):
        d = days[:, j][:, None]
        on = np.isfinite(d) & (t[None, :] - np.where(np.isfinite(d), d, 0.0) >= 0.0)
        dt = np.where(on, t[None, :] - np.where(np.isfinite(d), d, 0.0), 0.0)
        want_v += np.where(on, amp[:, j][:, None] * np.exp(-dt / rp.vascular_time), 0.0)
    assert np.array_equal(got, want_v)
    assert np.all(got[3] == 0.0) and np.all(got[6] == 0.0)


def test_no_session_nothing_is_red(rp: rd.RednessParameters) -> None:
    t = np.linspace(0, 5, 11)
    v = rd.vascular_signal(t, np.array([[np.inf]]), np.zeros((1, 1, 3)), rp)
    assert np.all(v == 0.0)


def test_smooth_and_monotone_in_needle_length(ps: ParameterSet) -> None:
    """Expected redness rises smoothly with needle length: hours at 0.25 mm, about two days at
    1.5 mm (the calibration row, 1-3 d), no step (the former hard threshold jumped from 0 h at
    0.5 mm to 19-25 h at 0.55-0.6 mm). Halving the length step near the steepest point halves the
    change (continuous, not a jump)."""
    lengths = [0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0]
    hours = 24.0 * days([course(L) for L in lengths], ps)
    assert np.all(np.diff(hours) >= -1e-9), hours
    assert hours[lengths.index(0.25)] < 6.0
    assert 24.0 <= hours[lengths.index(1.5)] <= 72.0
    steps = np.diff(hours)
    assert steps.max() < 12.0, steps  # largest change between 0.05 mm neighbours
    k = int(np.argmax(steps))
    lo, hi = lengths[k], lengths[k + 1]
    mid = 0.5 * (lo + hi)
    fine = 24.0 * days([course(lo), course(mid), course(hi)], ps)
    assert 0.25 < (fine[1] - fine[0]) / (fine[2] - fine[0]) < 0.75


def _largest_step(hours: np.ndarray) -> float:
    assert np.all(np.diff(hours) >= -1e-9), hours
    return float(np.diff(hours).max())


def test_roller_redness_is_smooth_in_needle_length_as_shipped(shipped: ParameterSet) -> None:
    """:func:`test_smooth_and_monotone_in_needle_length` at the set users get: no step above 12 h
    per 0.05 mm, hours at 0.25 mm, one to three days at 1.5 mm (measured 2026-12-08: 0.5 h, 39 h,
    largest step 6.4 h)."""
    lengths = [0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0]
    hours = 24.0 * days([course(L) for L in lengths], shipped)
    assert _largest_step(hours) < 12.0, hours
    assert hours[lengths.index(0.25)] < 6.0
    assert 24.0 <= hours[lengths.index(1.5)] <= 72.0


@pytest.mark.xfail(
    strict=True,
    reason="known miss (audit of issue 10, 2026-12-08): a pen's redness rises by 16 h between "
    "0.2 and 0.25 mm at the shipped posterior (22 h at the files' values): its 7,500 punctures "
    "per cm2 injure 1 to 10% of the papillary dermis over those 0.05 mm, smoothly, and the "
    "saturating recruitment x/(K_D + x) turns that into most of a day; the layers' depths are "
    "the same for every patient, so nothing spreads the step (only the visibility threshold is)",
)
def test_pen_redness_is_smooth_in_needle_length_as_shipped(shipped: ParameterSet) -> None:
    lengths = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0]
    hours = 24.0 * days([course(L, 8, device=PEN) for L in lengths], shipped)
    assert _largest_step(hours) < 12.0, hours


def test_passes_skin_type_and_swelling(ps: ParameterSet) -> None:
    """More passes, more redness; darker skin hides it (the threshold ×2 for V-VI); swelling needs
    more than redness and does not depend on pigment."""
    by_passes = days([course(1.0, p) for p in (1, 4, 8, 15)], ps)
    assert np.all(np.diff(by_passes) > 0.0)
    by_type = days([course(1.0, 15, f) for f in (3, 4, 6)], ps)
    assert by_type[0] > by_type[1] > by_type[2] > 0.0
    swell = days([course(1.0, 15, f) for f in (3, 6)], ps, "oedema_days")
    assert swell[0] == pytest.approx(swell[1]) and swell[0] < by_type[0]


def test_one_press_of_a_shallow_array_reddens_for_hours(ps: ParameterSet) -> None:
    """Bal 2008 (the calibration study of the shallow end): redness under 2 h after 200-400 µm
    arrays. One press of a 35-needle stamp at 0.2 and 0.4 mm: hours, not days (2.3 h at 0.4 mm
    with the shipped threshold, 1.7 h at the value the downtime row asks of the new signal)."""
    hours = 24.0 * days([course(0.2, 1, 2, STAMP), course(0.4, 1, 2, STAMP)], ps)
    assert np.all(hours < 3.0) and hours[1] > hours[0]


# ------------------------------------------------------------------------- bruise and downtime
def test_haem_signal_is_a_slow_exponential_of_the_cleft(rp: rd.RednessParameters) -> None:
    """H = ρ_H s(c) e^(−t/τ_H) after a session, 0 before it and without clefts; sessions add."""
    t = np.array([-1.0, 0.0, 1.0, 3.0])
    h = rd.haem_signal(t, np.array([[0.0]]), np.array([[0.1]]), rp)[0]
    s = 0.1 / (rp.recruitment_half + 0.1)
    assert h[0] == 0.0
    assert h[1:] == pytest.approx(rp.haem_ratio * s * np.exp(-t[1:] / rp.haem_time))
    assert np.all(rd.haem_signal(t, np.array([[0.0]]), np.array([[0.0]]), rp) == 0.0)
    two = rd.haem_signal(t, np.array([[0.0, 1.0]]), np.array([[0.1, 0.1]]), rp)[0]
    assert two[3] == pytest.approx(h[3] * (1.0 + np.exp(1.0 / rp.haem_time)))


def _windows(rng: np.random.Generator, B: int = 5) -> tuple[np.ndarray, ...]:
    t = np.linspace(0.0, 60.0, 241)
    days = np.array([[0.0, 14.0, 28.0]] * B)
    starts = days.copy()
    ends = np.concatenate([days[:, 1:], np.full((B, 1), 60.0)], axis=1)
    injured = rng.uniform(0.0, 0.3, (B, 3, 3))
    ip = np.abs(rng.normal(0.0, 0.4, (B, t.size))) * np.exp(-(t % 14.0) / 2.0)
    ir = np.abs(rng.normal(0.0, 0.4, (B, t.size))) * np.exp(-(t % 14.0) / 3.0)
    return t, ip, ir, days, injured, starts, ends


def test_visible_durations_redness_swelling_and_downtime(rp: rd.RednessParameters) -> None:
    """Redness and swelling equal :func:`expected_duration` at their thresholds; downtime is the
    longer of the two exactly without clefts (one signal, two thresholds) and with clefts at least
    that, more with more clefts, and the bruise alone gives the closed form of a decaying signal."""
    rng = np.random.default_rng(11)
    t, ip, ir, days, injured, starts, ends = _windows(rng)
    fitz = np.array([1, 2, 3, 5, 6])
    args = (t, ip, ir, days, injured)
    none = rd.visible_durations(*args, np.zeros((5, 3)), starts, ends, fitz, rp)
    thr = np.stack([rd.visibility_threshold(fitz, rp), np.full(5, rp.oedema_threshold)])
    want = rd.expected_duration(*args, starts, ends, thr, rp)
    assert np.array_equal(none.erythema, want[0]) and np.array_equal(none.oedema, want[1])
    assert none.downtime == pytest.approx(np.maximum(want[0], want[1]), abs=1e-12)
    cleft = rng.uniform(0.0, 0.2, (5, 3))
    some = rd.visible_durations(*args, cleft, starts, ends, fitz, rp)
    assert np.array_equal(some.erythema, none.erythema)
    assert np.all(some.downtime >= none.downtime - 1e-12)
    more = rd.visible_durations(*args, 2.0 * cleft, starts, ends, fitz, rp)
    assert np.all(more.downtime >= some.downtime - 1e-12)
    assert np.any(more.downtime > some.downtime + 0.01)
    # the bruise alone (no redness): ∫Φ((ln(A/θ) − t/τ)/σ) dt = τ (c Φ(c/σ) + σ φ(c/σ))
    zero = np.zeros((1, t.size))
    alone = rd.visible_durations(
        t, zero, zero, np.array([[0.0]]), np.zeros((1, 1, 3)), np.array([[0.15]]),
        np.array([[0.0]]), np.array([[28.0]]), np.array([3]), rp,
    )  # fmt: skip
    a = rp.haem_ratio * 0.15 / (rp.recruitment_half + 0.15)
    c, s = np.log(a / rd.visibility_threshold(np.array([3]), rp)[0]), rp.threshold_sd
    exact = rp.haem_time * (c * ndtr(c / s) + s * norm.pdf(c / s))
    assert alone.downtime[0, 0] == pytest.approx(exact, rel=5e-3)
    assert alone.erythema[0, 0] == 0.0


def test_compiled_durations_are_the_numpy_reference_over_random_windows(
    rp: rd.RednessParameters,
) -> None:
    """Redness, swelling and downtime of the compiled kernel against the NumPy reference on random
    batches: 1 to 5 sessions a row at random days (missing ones inf), windows to the next session
    or without an end (later sessions inside the window: their impulses summed term by term),
    inflammation from 1e-4 to 10, clefts or none, every skin type: every duration within
    :data:`DURATION_RTOL` (the largest difference measured: 9e-15)."""
    rng = np.random.default_rng(21)
    largest = 0.0
    for _ in range(40):
        B, K = int(rng.integers(1, 9)), int(rng.integers(1, 6))
        t = np.unique(np.concatenate([np.linspace(0.0, 200.0, int(rng.integers(50, 400))),
                                      rng.uniform(0.0, 200.0, 20)]))  # fmt: skip
        step = float(rng.choice([1.0, 3.5, 7.0, 30.0]))
        days = np.sort(rng.choice(np.arange(0.0, 180.0, step), (B, K)), axis=1)
        days[rng.random((B, K)) < 0.15] = np.inf
        starts = np.where(np.isfinite(days), days, np.nan)
        nxt = np.concatenate([days[:, 1:], np.full((B, 1), np.inf)], axis=1)
        ends = np.where(np.isfinite(starts), np.minimum(nxt, rng.uniform(100.0, 220.0)), np.nan)
        ends[rng.random((B, K)) < 0.2] = np.nan
        injured = rng.uniform(0.0, 0.5, (B, K, 3)) * rng.choice([1e-4, 1e-2, 1.0])
        scale = 10.0 ** rng.uniform(-4.0, 1.0)
        ip = np.abs(rng.normal(0.0, scale, (B, t.size))) * np.exp(-t / rng.uniform(2.0, 40.0))
        ir = np.abs(rng.normal(0.0, scale, (B, t.size))) * np.exp(-t / rng.uniform(2.0, 40.0))
        cleft = rng.uniform(0.0, 0.3, (B, K)) * (rng.random((B, K)) < 0.5)
        fitz = rng.integers(1, 7, B)
        got = rd.visible_durations(t, ip, ir, days, injured, cleft, starts, ends, fitz, rp)
        log_thr = np.stack(
            [np.log(rd.visibility_threshold(fitz, rp)), np.full(B, np.log(rp.oedema_threshold))]
        )
        want = _visible_reference(t, ip, ir, days, injured, cleft, starts, ends, log_thr, rp)
        for m, name in enumerate(("erythema", "oedema", "downtime")):
            largest = max(largest, assert_durations_close(getattr(got, name), want[m]))
    assert largest < 1e-13  # rounding, not a different integral


def test_each_duration_is_the_same_whichever_others_are_computed(
    rp: rd.RednessParameters,
) -> None:
    """``which`` picks the durations computed; each is the number of the call that computes all
    three, bit for bit, and the others are NaN."""
    rng = np.random.default_rng(5)
    t, ip, ir, days, injured, starts, ends = _windows(rng)
    fitz = np.array([1, 2, 4, 5, 6])
    cleft = rng.uniform(0.0, 0.2, (5, 3))
    args = (t, ip, ir, days, injured, cleft, starts, ends, fitz, rp)
    every = rd.visible_durations(*args)
    subsets = [(), ("erythema",), ("oedema",), ("downtime",), ("erythema", "downtime"),
               ("oedema", "erythema")]  # fmt: skip
    for which in subsets:
        got = rd.visible_durations(*args, which=which)
        for name in rd.VISIBLE:
            x = getattr(got, name)
            if name in which:
                assert np.array_equal(x, getattr(every, name)), (which, name)
            else:
                assert x.shape == starts.shape and np.isnan(x).all(), (which, name)
    with pytest.raises(ValueError, match="swelling"):
        rd.visible_durations(*args, which=("swelling",))


def test_roller_downtime_outlasts_its_redness_a_pens_does_not(ps: ParameterSet) -> None:
    """The engine: a 1.5 mm roller's clefts leave a bruise, so its downtime outlasts its redness
    (by half a day or more: the blood they hold also lengthens the redness, healing_rhs Bl and
    Hm, so the gap is smaller than the day it was before); the same roller is red longer than a
    pen at the same length (Chu 2012's and El-Domyati 2024's direction); a pen (vertical, no
    cleft) and a shallow roller (above the capillary loops) have downtime = the longer of redness
    and swelling; downtime grows with needle length and passes."""
    courses = [course(1.5, 15), course(1.5, 3, 3, PEN), course(0.1, 15), course(1.0, 15),
               course(1.5, 8)]  # fmt: skip
    per = simulate_batch(courses, ps, parallel=False).per_session
    red, swell, down = (per[k][:, 0] for k in ("erythema_days", "oedema_days", "downtime_days"))
    assert down[0] > red[0] + 0.5
    assert red[0] > red[1] + 0.5
    assert down[1:3] == pytest.approx(np.maximum(red[1:3], swell[1:3]), abs=1e-9)
    assert down[3] < down[0] and down[4] < down[0]


def _impulse_sum_reference(
    t: np.ndarray, days: np.ndarray, amp: np.ndarray, tau: float
) -> np.ndarray:
    """The impulse sum as it was computed before (exp of max(dt, 0), masked afterwards)."""
    tt = np.broadcast_to(t, (days.shape[0], t.shape[-1]))
    out = np.zeros(tt.shape)
    for k in range(days.shape[1]):
        dt = tt - days[:, k][:, None]
        on = dt >= 0.0
        out += np.where(on, amp[:, k][:, None] * np.exp(-np.where(on, dt, 0.0) / tau), 0.0)
    return out


def test_impulse_sum_is_the_masked_exponential_bit_for_bit() -> None:
    """Exponentials only where a session is over give the old masked sum to the bit: on a shared
    and on per-row time grids, with a session exactly on a time, a missing session (inf / NaN), a
    session after every time and all sessions set (the whole-batch branch)."""
    rng = np.random.default_rng(8)
    t = np.unique(np.concatenate([np.linspace(0.0, 90.0, 181), rng.uniform(0.0, 90.0, 30)]))
    days = np.array(
        [[0.0, 14.0, 28.0], [3.3, np.inf, np.inf], [5.0, 40.0, 200.0], [t[17], t[90], np.nan]]
    )
    amp = rng.uniform(0.0, 0.5, days.shape)
    for tau in (0.7, 3.0, 40.0):
        assert np.array_equal(
            rd._impulse_sum(t, days, amp, tau), _impulse_sum_reference(t, days, amp, tau)
        )
        g = rng.uniform(-5.0, 95.0, (4, 50))
        assert np.array_equal(
            rd._impulse_sum(g, days, amp, tau), _impulse_sum_reference(g, days, amp, tau)
        )
    full = days[:1].repeat(3, axis=0) + rng.uniform(0.0, 1.0, (3, 1))
    assert np.array_equal(
        rd._impulse_sum(t, full, amp[:3], 3.0), _impulse_sum_reference(t, full, amp[:3], 3.0)
    )


def test_impulse_sum_at_once_and_session_by_session_agree_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small batch (every session at once) and a large one (session by session over the rows
    where a session is over) give the same bits: shared and per-row grids, missing and late
    sessions, τ a number or one per case."""
    rng = np.random.default_rng(15)
    for trial in range(60):
        B, K, T = int(rng.integers(1, 9)), int(rng.integers(0, 5)), int(rng.integers(1, 300))
        days = np.sort(rng.uniform(0.0, 100.0, (B, K)), axis=1)
        days[rng.random((B, K)) < 0.2] = np.inf
        days[rng.random((B, K)) < 0.05] = np.nan
        amp = rng.uniform(0.0, 2.0, (B, K))
        t = (
            np.sort(rng.uniform(0.0, 120.0, T))
            if trial % 2
            else np.sort(rng.uniform(0.0, 120.0, (B, T)), axis=1)
        )
        tau: float | np.ndarray = 0.7 if trial % 3 else rng.uniform(0.1, 3.0, (B, 1))
        monkeypatch.setattr(rd, "IMPULSE_AT_ONCE", 10**9)
        at_once = rd._impulse_sum(t, days, amp, tau)
        monkeypatch.setattr(rd, "IMPULSE_AT_ONCE", 0)
        by_session = rd._impulse_sum(t, days, amp, tau)
        assert at_once.tobytes() == by_session.tobytes()
