"""Calibration: weighted least squares on the calibration rows, with a Laplace posterior.

Every calibration row of ``data/literature.toml`` listed in ``protocols.toml [settings]
point_fit_rows`` (:func:`literature.point_fit_rows`) is reproduced by simulating the
study's own protocol (stand-in settings where the study is silent, each named in
``data/calibration/protocols.toml``). The fitted coordinates are the logarithms of the parameters in
``protocols.toml [[fit]]`` (a coordinate may move several tied parameters, e.g. ``healing.k_1`` and
``healing.k_3``). The fit minimises

    sum_i ((model_i(theta) - observed_i) / se_i)^2

by Gauss-Newton, where ``se_i`` is the row's standard error (the reported SE, SD/sqrt(n), a range read
as +-2 SD, or a documented default coefficient of variation: :func:`literature.standard_error`). All
rows and all perturbed parameter vectors of one iteration run in ONE batched healing solve
(:func:`microneedling.engine.batch.simulate_batch`); the Jacobian is a central finite difference in
log-parameter space. The Laplace approximation at the optimum gives the posterior covariance of the
log-parameters, ``(J^T J)^-1`` with ``J`` the weighted Jacobian; its condition number and the
correlations say how well the rows identify the parameters.

Output: a versioned calibration (``data/calibration/<version>.toml``, version = a hash of the content,
no dates, so a re-run reproduces it byte for byte) with the posterior mean, covariance, 5-95%
intervals, the rows it saw and their residuals; ``current.toml`` is the shipped one, and ``--write``
puts the posterior values and intervals into ``data/parameters/healing.toml`` / ``observe.toml`` so
the shipped default IS this output. ``microneedling.parameters.sampling.sample_parameter_sets`` samples these parameters
jointly from the stored covariance.

Command line: ``microneedling calibrate [--out DIR] [--write]`` (or ``python -m
microneedling.studies.credibility.calibrate``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.io import atomic_directory, atomic_path, data_path, dumps_toml
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import CURRENT, calibration_dir, shipped_calibration
from microneedling.physics import needles
from microneedling.studies.credibility.literature import (
    LiteratureRow,
    Protocol,
    load_protocol_file,
    load_protocols,
    point_fit_rows,
    protocol_course,
    standard_error,
)
from microneedling.units import convert

Z95 = 1.6448536269514722  # 95th percentile of N(0, 1): low/high are 5th/95th percentiles
#: the Dermaroller MF8 device table of ``protocols.toml`` (course-schema fields)
MF8: dict[str, Any] = dict(load_protocol_file()["devices"]["mf8"])


@dataclass(frozen=True)
class FitParameter:
    """One fitted coordinate: log of ``members[0]``; the other members keep their ratio to it."""

    label: str
    members: tuple[str, ...]
    start: float


def fit_parameters(settings_file: Mapping[str, Any] | None = None) -> tuple[FitParameter, ...]:
    """The ``[[fit]]`` entries of ``protocols.toml``."""
    raw = settings_file or load_protocol_file()
    return tuple(
        FitParameter(f["label"], tuple(f["members"]), float(f["start"])) for f in raw["fit"]
    )


# --------------------------------------------------------------------------- predictions
def _comparison(row: LiteratureRow, protocol: Protocol) -> tuple[float, float | None]:
    """(observed, tolerance) in the units the model prediction is expressed in."""
    tol = row.tolerance
    if protocol.compare == "relative_change":
        rel = row.relative_change_percent
        if rel is not None:
            base = abs(row.baseline or 1.0)
            return rel, None if tol is None else 100.0 * tol / base
        return row.value_in("%"), tol
    return row.value, tol


def observed_value(row: LiteratureRow, protocol: Protocol) -> float:
    """The row's number in the units of :func:`predict_rows` (e.g. % change for score rows)."""
    return _comparison(row, protocol)[0]


def tolerance_value(row: LiteratureRow, protocol: Protocol) -> float | None:
    """The row's tolerance in the units of :func:`predict_rows`."""
    return _comparison(row, protocol)[1]


def _stage_value(
    row: LiteratureRow,
    protocol: Protocol,
    ps: ParameterSet,
    prep_row: int | None,
    run: Any,
    settings: Mapping[str, Any],
) -> float:

    stage = protocol.stage
    if stage == "resealing_time":
        f = float(
            settings[
                "closed_fraction_pores"
                if protocol.closure == "pores"
                else "closed_fraction_barrier"
            ]
        )
        k = ps.value("transport.k_close_open", "1/s")
        return convert(-math.log(1.0 - f) / k, "s", row.units)
    assert prep_row is not None and protocol.course is not None
    if stage == "puncture_density":
        return convert(float(run.prepared.puncture_density_cm2[prep_row, 0]), "1/cm^2", row.units)
    if stage == "channel_depth":
        return convert(float(run.prepared.penetration_depth_um[prep_row, 0]), "um", row.units)
    # channel_diameter: twice the surface radius of the channel
    npar = needles.NeedleParameters.from_parameters(ps)
    d_m = float(protocol.course["device"]["needle_diameter_mm"]) * 1e-3
    a = float(np.asarray(needles.channel_surface_radius(d_m, npar.channel_radius_ratio)))
    return convert(2.0 * a, "m", row.units)


def predict_rows(
    lit_rows: Sequence[LiteratureRow],
    sets: Sequence[ParameterSet],
    protocols: Mapping[str, Protocol] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Model predictions (S, R) of every row under every parameter set, in one batched solve.

    Units are those of :func:`observed_value` (the row's units, or % for relative changes). NaN for
    rows whose protocol is not evaluable.
    """

    protocols = protocols if protocols is not None else load_protocols()
    settings = settings if settings is not None else load_protocol_file()["settings"]
    prots = [protocols[r.key] for r in lit_rows]
    # distinct courses (rows sharing a protocol share the simulation)
    course_keys: dict[str, int] = {}
    courses: list[Any] = []
    row_course: list[int | None] = []
    for p in prots:
        if not p.evaluable or p.course is None:
            row_course.append(None)
            continue
        ck = json.dumps(p.course, sort_keys=True)
        if ck not in course_keys:
            course_keys[ck] = len(courses)
            courses.append(protocol_course(p))
        row_course.append(course_keys[ck])
    S, R, U = len(sets), len(lit_rows), len(courses)
    out = np.full((S, R), np.nan)
    run = None
    if U:
        run = simulate_batch([c for _ in sets for c in courses], [s for s in sets for _ in courses])
        assert run.n_cases == S * U, "one site per protocol course"
    for j, (row, p) in enumerate(zip(lit_rows, prots, strict=True)):
        if not p.evaluable:
            continue
        u = row_course[j]
        if p.stage is not None:
            for s, ps in enumerate(sets):
                out[s, j] = _stage_value(
                    row, p, ps, None if u is None else s * U + u, run, settings
                )
            continue
        assert u is not None and run is not None and p.endpoint is not None
        cases = np.arange(S) * U + u
        spec = parse_endpoint(p.endpoint)
        if p.compare == "course_incidence":
            risk = run.per_session["pih_risk"][cases]
            v = 100.0 * (1.0 - np.nanprod(1.0 - risk, axis=1))
        else:
            v = endpoint_values(run, spec)[cases]
            if spec.per_session:  # an unbounded per-session value (inf) is a result, not "n/a"
                raw = run.per_session[spec.variable][cases]
                v = np.where(np.isnan(v) & np.any(np.isposinf(raw), axis=1), np.inf, v)
            if p.compare == "per_session_mean":
                v = v / run.prepared.session_mask[cases].sum(axis=1)
            if p.compare == "grade":
                v = (row.baseline or 0.0) * (1.0 + v / 100.0)
            elif p.compare == "value":
                v = v * convert(1.0, spec.units, row.units)
        out[:, j] = v
    return out


# ---------------------------------------------------------------------------------- fit
@dataclass
class Calibration:
    """The posterior of a calibration run (log-parameter coordinates)."""

    parameters: tuple[FitParameter, ...]
    mean_log: np.ndarray  # (P,)
    covariance_log: np.ndarray  # (P, P)
    rows: tuple[str, ...]
    observed: np.ndarray  # (R,)
    se: np.ndarray  # (R,)
    se_rule: tuple[str, ...]
    predicted: np.ndarray  # (R,)
    jacobian: np.ndarray  # (R, P) weighted: d((model - obs)/se)/d log theta
    iterations: int
    history: list[float] = field(default_factory=list)  # chi^2 per iteration

    @property
    def values(self) -> dict[str, float]:
        """Posterior mean of every member parameter (6 significant digits, as written)."""
        out: dict[str, float] = {}
        for fp, m in zip(self.parameters, self.mean_log, strict=True):
            for name in fp.members:
                out[name] = float(f"{math.exp(m):.6g}")
        return out

    @property
    def sd_log(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance_log))

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """5th/95th posterior percentiles of every member (log-normal marginals)."""
        out: dict[str, tuple[float, float]] = {}
        for fp, m, s in zip(self.parameters, self.mean_log, self.sd_log, strict=True):
            lo, hi = math.exp(m - Z95 * s), math.exp(m + Z95 * s)
            for name in fp.members:
                out[name] = (float(f"{lo:.6g}"), float(f"{hi:.6g}"))
        return out

    @property
    def residuals(self) -> np.ndarray:
        """Model minus observed, row units."""
        return self.predicted - self.observed

    @property
    def normalised_residuals(self) -> np.ndarray:
        return self.residuals / self.se

    @property
    def chi2(self) -> float:
        return float(np.sum(self.normalised_residuals**2))

    @property
    def correlation(self) -> np.ndarray:
        s = self.sd_log
        return np.asarray(self.covariance_log / np.outer(s, s))

    @property
    def condition_number(self) -> float:
        """Condition number of the weighted Jacobian (identifiability: large = poorly identified)."""
        return float(np.linalg.cond(self.jacobian))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (no dates): what the TOML and JSON outputs hold."""
        return {
            "method": "weighted least squares (Gauss-Newton) in log-parameter space; Laplace "
            "approximation at the optimum, covariance (J^T J)^-1 of the weighted Jacobian",
            "parameters": [
                {
                    "label": fp.label,
                    "members": list(fp.members),
                    "start": fp.start,
                    "mean_log": float(f"{m:.10g}"),
                    "value": float(f"{math.exp(m):.6g}"),
                    "sd_log": float(f"{s:.6g}"),
                    "low": float(f"{math.exp(m - Z95 * s):.6g}"),
                    "high": float(f"{math.exp(m + Z95 * s):.6g}"),
                }
                for fp, m, s in zip(self.parameters, self.mean_log, self.sd_log, strict=True)
            ],
            "covariance_log": [[float(f"{x:.6g}") for x in r] for r in self.covariance_log],
            "correlation": [[float(f"{x:.4g}") for x in r] for r in self.correlation],
            "condition_number": float(f"{self.condition_number:.4g}"),
            "chi2": float(f"{self.chi2:.4g}"),
            "iterations": self.iterations,
            "rows": [
                {
                    "key": k,
                    "observed": float(f"{o:.6g}"),
                    "se": float(f"{s:.6g}"),
                    "se_rule": rule,
                    "predicted": float(f"{p:.6g}"),
                    "residual": float(f"{p - o:.4g}"),
                    "normalised_residual": float(f"{(p - o) / s:.4g}"),
                }
                for k, o, s, rule, p in zip(
                    self.rows, self.observed, self.se, self.se_rule, self.predicted, strict=True
                )
            ],
        }


def _at(
    ps: ParameterSet, fps: Sequence[FitParameter], theta: np.ndarray, label: str
) -> ParameterSet:
    values: dict[str, Any] = {}
    for fp, t in zip(fps, theta, strict=True):
        for name in fp.members:
            values[name] = math.exp(float(t))
    return ps.with_values(values, label=label)


def _round_theta(theta: np.ndarray) -> np.ndarray:
    return np.log([float(f"{math.exp(float(t)):.6g}") for t in theta])


def fit(ps: ParameterSet | None = None, *, verbose: bool = False) -> Calibration:
    """Fit the calibration rows (deterministic; starts from ``protocols.toml`` ``start`` values).

    Raises
    ------
    RuntimeError
        If Gauss-Newton does not converge within ``max_iterations``.
    """
    raw = load_protocol_file()
    settings = raw["settings"]
    fps = fit_parameters(raw)
    base = ps or load_parameters()
    protocols = load_protocols()
    cal = point_fit_rows()  # the calibration rows listed in protocols.toml [settings]
    assert all(r.role == "calibration" for r in cal)  # never a validation row
    obs = np.array([observed_value(r, protocols[r.key]) for r in cal])
    se_rule = [standard_error(r, settings) for r in cal]
    se = np.array([s for s, _ in se_rule])
    if protocols and any(protocols[r.key].compare == "relative_change" for r in cal):
        raise ValueError("calibration rows must compare absolute values (relative SE undefined)")
    h = float(settings["fd_step"])
    P = len(fps)
    theta = np.log([fp.start for fp in fps])

    def evaluate(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sets = [_at(base, fps, th, "calibration")]
        for j in range(P):
            for sign in (1.0, -1.0):
                e = np.zeros(P)
                e[j] = sign * h
                sets.append(_at(base, fps, th + e, "calibration-fd"))
        pred = predict_rows(cal, sets, protocols, settings)
        r = (pred[0] - obs) / se
        J = np.stack([(pred[1 + 2 * j] - pred[2 + 2 * j]) / (2 * h) for j in range(P)], axis=1)
        return pred[0], r, J / se[:, None]

    history: list[float] = []
    it = 0
    for it in range(1, int(settings["max_iterations"]) + 1):
        _, r, J = evaluate(theta)
        chi2 = float(r @ r)
        history.append(chi2)
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        step = np.clip(step, -1.0, 1.0)  # at most a factor e per iteration
        if verbose:
            print(f"iteration {it}: chi2 {chi2:.3g}, max step {np.max(np.abs(step)):.2g}")
        theta = theta + step
        if np.max(np.abs(step)) < float(settings["tolerance"]):
            break
    else:
        raise RuntimeError(f"calibration did not converge in {it} iterations (chi2 {history[-1]})")
    theta = _round_theta(theta)
    pred, r, J = evaluate(theta)
    cov = np.linalg.inv(J.T @ J)
    return Calibration(
        parameters=fps,
        mean_log=theta,
        covariance_log=cov,
        rows=tuple(r_.key for r_ in cal),
        observed=obs,
        se=se,
        se_rule=tuple(s for _, s in se_rule),
        predicted=pred,
        jacobian=J,
        iterations=it,
        history=history,
    )


# -------------------------------------------------------------------------------- output
_HEADER = (
    "# Calibration posterior written by `microneedling calibrate`\n"
    "# (microneedling.studies.credibility.calibrate). Log-parameter coordinates; low/high are the\n"
    "# 5th/95th posterior percentiles.\n"
)


def calibration_toml(cal: Calibration) -> tuple[str, str]:
    """(version, TOML text) of a calibration, written with :func:`microneedling.io.dumps_toml`;
    version = ``cal-`` + hash of the content without the version (no dates, so a re-run reproduces
    both)."""
    d = cal.to_dict()
    version = "cal-" + hashlib.sha256(dumps_toml(d).encode()).hexdigest()[:12]
    return version, _HEADER + dumps_toml({"version": version, **d})


def write_values(cal: Calibration, directory: Path | None = None) -> list[str]:
    """Put the posterior mean and 5-95% interval into the parameter files (``value``, ``low``,
    ``high`` lines of each member's table); returns the names written."""
    d = directory or data_path("parameters")
    values, intervals = cal.values, cal.intervals
    for name, v in values.items():
        group, key = name.split(".", 1)
        path = d / f"{group}.toml"
        text = path.read_text(encoding="utf-8")
        m = re.search(rf"^\[{re.escape(key)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
        if m is None:
            raise KeyError(f"{name} not found in {path}")
        block = m.group(1)
        lo, hi = intervals[name]
        for fld, val in (("value", v), ("low", lo), ("high", hi)):
            block, n = re.subn(rf"^{fld} = .*$", f"{fld} = {val:.6g}", block, flags=re.M)
            if n != 1:
                raise KeyError(f"{name}: no single '{fld} =' line in {path}")

        with atomic_path(path) as tmp:
            Path(tmp).write_text(text[: m.start(1)] + block + text[m.end(1) :], encoding="utf-8")
    shipped_calibration.cache_clear()
    return list(values)


def write_calibration(cal: Calibration, out: Path | None = None, *, ship: bool = False) -> Path:
    """Write ``<version>.toml`` (and ``calibration.json``) into ``out``; with ``ship``, also into
    the package's calibration folder as the version file and ``current.toml``."""

    version, text = calibration_toml(cal)
    result = Path(out) if out is not None else calibration_dir()
    if out is not None:
        with atomic_directory(result, overwrite=True) as tmp:
            tmp_p = Path(tmp)
            (tmp_p / f"{version}.toml").write_text(text, encoding="utf-8")
            (tmp_p / "calibration.json").write_text(
                json.dumps({"version": version, **cal.to_dict()}, indent=2), encoding="utf-8"
            )
    if ship:
        for name in (f"{version}.toml", CURRENT):
            with atomic_path(calibration_dir() / name) as tmp:
                Path(tmp).write_text(text, encoding="utf-8")
        shipped_calibration.cache_clear()
    return result / f"{version}.toml"


def summary(cal: Calibration) -> str:
    """Human-readable table of the fit."""
    lines = ["row                       observed       se    model  residual/se"]
    for k, o, s, p in zip(cal.rows, cal.observed, cal.se, cal.predicted, strict=True):
        lines.append(f"{k:24s} {o:9.4g} {s:8.3g} {p:8.4g} {(p - o) / s:10.2e}")
    lines.append("parameter                     value      5%       95%    sd(log)")
    iv = cal.intervals
    for fp, m, s in zip(cal.parameters, cal.mean_log, cal.sd_log, strict=True):
        lo, hi = iv[fp.members[0]]
        lines.append(f"{'='.join(fp.members):28s} {math.exp(m):9.4g} {lo:8.4g} {hi:8.4g} {s:8.3f}")
    lines.append(
        f"condition number {cal.condition_number:.3g}; chi2 {cal.chi2:.2e}; "
        f"{cal.iterations} Gauss-Newton iterations"
    )
    corr = cal.correlation
    off = [
        (cal.parameters[i].label, cal.parameters[j].label, corr[i, j])
        for i in range(len(corr))
        for j in range(i + 1, len(corr))
    ]
    worst = max(off, key=lambda x: abs(x[2]))
    lines.append(f"largest posterior correlation: {worst[0]} / {worst[1]} = {worst[2]:+.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="ship the fit as the default")
    parser.add_argument("--out", type=Path, default=None, help="directory for the outputs")
    args = parser.parse_args(argv)
    cal = fit(verbose=True)
    print(summary(cal))
    if args.out is not None:
        print(f"wrote {write_calibration(cal, args.out)}")
    if args.write:
        write_calibration(cal, ship=True)
        write_values(cal)
        print("shipped: data/calibration/current.toml and the parameter files")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
