"""Leave-one-study-out cross-validation by refitting, against the importance-sampling estimate.

``microneedling validate`` scores each calibration study left out without refitting: Pareto-smoothed
importance weights 1/p(y_study | draw) turn the full posterior into one without the study (Vehtari,
Gelman & Gabry 2017, *Stat Comput* 27:1413). When a study pulls the posterior far from where it
would be without it, the weights' tail is heavy (Pareto k > 0.7) and the estimate cannot be
trusted; the same paper's remedy is to refit without the study. This module scores such refits:

    microneedling calibrate --screening shipped --leave-out STUDY --out DIR --workers 2
    python -m microneedling.studies.credibility.loso_refit DIR [DIR ...] [--draws N] [--seed S] [--ship]

For each left-out study of a refit (``left_out`` in its posterior summary) it compares, on the same
calibration problem (the shipped posterior's: its factors, the nuisance settings it sampled, its
graded counts' between-patient spread):

* the **refit**: distinct draws of the refit's posterior, equally weighted, the left-out study's
  own unreported settings drawn from their prior (as the importance-sampling estimate redraws
  them) and the discrepancy of a group only that study had from its prior (which the
  importance-sampling estimate reaches by reweighting the fitted one): ``elpd`` (nats) = log
  mean_d p(y_study | draw d), each row's PIT and whether it lies in the 80% predictive interval
  (:func:`~microneedling.studies.credibility.loso.left_out_scores`);
* the **importance-sampling estimate** from as many distinct draws of the shipped posterior, with
  its Pareto k (:func:`~microneedling.studies.credibility.loso.leave_one_study_out`).

A refit leaves one study out and keeps the shipped screening's parameter selection (``calibrate
--leave-out`` requires ``--screening shipped``: a screening run would see the study), so it
answers "what would the calibration say without this study", not "what would a whole new
calibration select". Both are scored on the likelihood the shipped posterior was fitted with
(:func:`~microneedling.studies.credibility.loso.fitted_problem`); a refit of other inputs
(another screening, other parameter files, rows or protocols changed since) is refused.

``--ship`` puts a refit beside the shipped posterior (``data/calibration/refits/<version>``,
:func:`ship_refit`) once it has converged (its own importance correction's k_hat <= 0.7) and its
inputs are the posterior's; ``microneedling validate`` then scores that study by the refit instead
of by importance sampling (:func:`shipped_refits`, :func:`with_refits`) and says so in the
credibility report. A refit that stops applying (a new calibration, changed rows or protocols) is
listed there with the reason, never used.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.errors import InputError, ParameterError
from microneedling.io import atomic_path, write_text_atomic
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import (
    Posterior,
    calibration_dir,
    load_posterior,
    shipped_posterior,
)
from microneedling.studies.credibility.calibrate import CalibrationConfig, Problem, load_config
from microneedling.studies.credibility.emulator import RELIABLE_K_HAT
from microneedling.studies.credibility.loso import (
    IMPORTANCE,
    REFIT,
    distinct_draws,
    fitted_problem,
    leave_one_study_out,
    left_out_scores,
    loso_totals,
    posterior_x,
)
from microneedling.studies.credibility.posterior import run_summary

__all__ = [
    "CONVERGED_K_HAT",
    "compare_refits",
    "format_table",
    "refit_issue",
    "refit_posterior",
    "refit_scores",
    "refits_dir",
    "ship_refit",
    "shipped_refits",
    "with_refits",
]

#: a refit's own importance correction (emulate-sample-correct) must be reliable for its draws to
#: stand for the posterior without the study: Pareto k_hat below 0.7 (Vehtari et al. 2024)
CONVERGED_K_HAT = RELIABLE_K_HAT


def refit_posterior(run_dir: Path) -> Posterior:
    """The posterior of a ``calibrate --leave-out`` run directory (its newest ``posterior-*.toml``);
    an :class:`InputError` if it has none or left no study out."""
    post = load_posterior(run_summary(Path(run_dir), "DIR"))
    if not post.summary.get("left_out"):
        raise InputError(
            "DIR", str(run_dir), "a refit made with `calibrate --leave-out STUDY` (none left out)"
        )
    return post


def refit_scores(problem: Problem, refit: Posterior, draws: int, seed: int) -> dict[str, Any]:
    """The left-out study's ``elpd`` (nats) and its rows' PIT and 80% coverage predicted from
    ``draws`` distinct draws of ``refit`` (a posterior fitted without one study), on ``problem``
    (the calibration problem with every study); with ``study``, ``draws`` and the refit's
    ``posterior`` version."""
    lik = problem.likelihood
    left = [str(s) for s in refit.summary.get("left_out", [])]
    if len(left) != 1:
        raise InputError("left_out", left, "one study per refit (calibrate --leave-out STUDY)")
    (study,) = left
    if study not in lik.studies:
        raise InputError("left_out", study, f"a study of the problem: {lik.studies}")
    fitted = [f.label for f in problem.factors]
    labels = [f["label"] for f in refit.factors]
    if labels != fitted:
        raise InputError("the refit's factors", labels, f"the problem's: {fitted}")
    idx = distinct_draws(refit.n_samples, draws, seed)
    x = posterior_x(problem, refit, idx, seed)
    # only the left-out study's rows are simulated: its scores read no other row (Problem.predict
    # says how close that is to the whole evaluation's numbers); as in Problem.evaluate, a draw
    # outside the prior's support is not run and has no density
    cols = [i for i, spec in enumerate(lik.specs) if spec.study == study]
    tau = np.exp(x[:, problem.P : problem.P + problem.Q])
    ok = np.isfinite(problem.log_prior(x))
    f = np.full((len(x), len(lik.specs)), np.nan)
    loglik = np.full(len(x), -np.inf)
    if np.any(ok):
        f[ok] = problem.predict(x[ok], columns=cols)
        loglik[ok] = lik.by_study(f[ok], tau[ok])[:, lik.studies.index(study)]
    weights = np.full(len(x), 1.0 / len(x))
    rng = np.random.default_rng([seed, 59])
    scores = left_out_scores(lik, study, f, tau, loglik, weights, rng)
    return {"study": study, **scores, "draws": len(x), "posterior": refit.version}


def _same_inputs(full: Posterior, refit: Posterior, where: str) -> None:
    """An :class:`InputError` unless ``refit`` was fitted on ``full``'s screening and parameter
    files (only then is it the same calibration without one study)."""
    for key in ("parameter_set_hash", "model_parameter_hash"):
        if refit.summary.get(key) != full.summary.get(key):
            raise InputError(
                f"{where}: {key}", refit.summary.get(key), f"the shipped posterior's, "
                f"{full.summary.get(key)} (recalibrate the refit on these parameter files)"
            )  # fmt: skip
    got = refit.summary.get("screening", {}).get("version")
    want = full.summary.get("screening", {}).get("version")
    if got != want:
        raise InputError(f"{where}: screening", got, f"the shipped posterior's, {want}")


def refits_dir(post: Posterior) -> Path:
    """``data/calibration/refits/<version of post>``: the shipped refits that cross-validate the
    posterior ``post`` (a new calibration starts with none)."""
    return calibration_dir() / "refits" / post.version


#: a refit sampled by emcee on the model (``[emulator] rounds = 0``) has no importance correction:
#: its chains must have mixed instead (Vehtari et al. 2021: rank-normalised R-hat below 1.01 for
#: a final analysis, 1.05 the looser bound used by the calibration's own report)
CONVERGED_R_HAT = 1.05


def _convergence_issue(refit: Posterior) -> str | None:
    """Why the refit's sampling cannot be trusted, or ``None``: its importance correction's k_hat
    above :data:`CONVERGED_K_HAT`, or (no correction: emcee on the model) its R-hat above
    :data:`CONVERGED_R_HAT`, or no convergence record at all."""
    diag = refit.summary.get("diagnostics", {})
    k_hat = diag.get("importance", {}).get("k_hat")
    if k_hat is not None:
        if float(k_hat) <= CONVERGED_K_HAT:
            return None
        return (
            f"its importance correction did not converge (k_hat {float(k_hat):.2f} > "
            f"{CONVERGED_K_HAT})"
        )
    r_hat = diag.get("r_hat_max")
    if r_hat is None:
        return "it records no convergence diagnostic (no importance k_hat, no R-hat)"
    if float(r_hat) <= CONVERGED_R_HAT:
        return None
    return f"its chains did not mix (max R-hat {float(r_hat):.3g} > {CONVERGED_R_HAT})"


def refit_issue(
    full: Posterior, refit: Posterior, config: CalibrationConfig, studies: Sequence[str]
) -> str | None:
    """Why ``refit`` cannot stand for the calibration of ``full`` without its left-out study, or
    ``None`` when it can: it must leave out one of ``studies`` (the studies of ``full``'s problem
    as rebuilt today, :func:`~microneedling.studies.credibility.loso.fitted_problem`), with
    ``full``'s factors, parameter files and screening; its sampling must have converged (k_hat <=
    :data:`CONVERGED_K_HAT` of its importance correction); and the problem it was fitted on,
    rebuilt from today's inputs, must have the fingerprint it recorded (rows, protocols, priors
    and settings unchanged since the refit)."""
    left = [str(s) for s in refit.summary.get("left_out", [])]
    if len(left) != 1:
        return f"it leaves out {left or 'no study'}, not one study"
    if left[0] not in studies:
        return f"{left[0]} is not a study of the calibration problem of {full.version} today"
    if [f["label"] for f in refit.factors] != [f["label"] for f in full.factors]:
        return f"its factors are not those of {full.version}"
    try:
        _same_inputs(full, refit, refit.version)
    except InputError as e:
        return str(e)
    converged = _convergence_issue(refit)
    if converged is not None:
        return converged
    try:
        fingerprint = fitted_problem(refit, config).fingerprint()
    except InputError as e:
        return str(e)
    if fingerprint != refit.summary.get("fingerprint"):
        return (
            f"the calibration's inputs changed since the refit (fingerprint {fingerprint}, "
            f"fitted on {refit.summary.get('fingerprint')}): refit again"
        )
    return None


def _shipped() -> Posterior:
    """The shipped posterior when it applies to the parameter files; an :class:`InputError`
    otherwise."""
    full = shipped_posterior(load_parameters())
    if full is None:
        raise InputError(
            "posterior", "none applies", "a shipped calibration of these parameter files"
        )
    return full


def _as_fitted(full: Posterior, config: CalibrationConfig) -> Problem:
    """The problem ``full`` was fitted on; an :class:`InputError` if the calibration's inputs
    changed since (its fingerprint is not the one ``full`` recorded)."""
    problem = fitted_problem(full, config)
    if problem.fingerprint() != full.summary.get("fingerprint"):
        raise InputError(
            "calibration inputs",
            problem.fingerprint(),
            f"those the shipped posterior was fitted on ({full.summary.get('fingerprint')}): "
            "rows, protocols or settings changed since; recalibrate first",
        )
    return problem


def ship_refit(run_dir: Path, *, config: CalibrationConfig | None = None) -> Path:
    """Copy the refit of ``run_dir`` (a ``calibrate --leave-out STUDY`` run) into
    :func:`refits_dir` of the shipped posterior, replacing an earlier refit of the same study, so
    that ``validate`` scores that study by it. Refused (an :class:`InputError`, nothing written)
    unless :func:`refit_issue` finds none. Returns the shipped summary's path."""
    config = config or load_config()
    full = _shipped()
    problem = _as_fitted(full, config)
    refit = refit_posterior(Path(run_dir))
    issue = refit_issue(full, refit, config, problem.likelihood.studies)
    if issue is not None:
        raise InputError(
            "DIR", str(run_dir), f"a refit that cross-validates {full.version}: {issue}"
        )
    study = refit.summary["left_out"][0]
    d = refits_dir(full)
    src = run_summary(Path(run_dir), "DIR")
    # the earlier refits of the study, read before anything is written (a file that cannot be
    # read stops the shipping here)
    older = [
        (old, d / str(load_posterior(old).summary["samples"]))
        for old in sorted(d.glob("posterior-*.toml"))
        if old.name != src.name and load_posterior(old).summary.get("left_out") == [study]
    ]
    d.mkdir(parents=True, exist_ok=True)
    for p in (src.parent / refit.summary["samples"], src):  # samples first: a summary on disk
        with atomic_path(d / p.name) as tmp:  # always has its samples
            tmp.write_bytes(p.read_bytes())
    for toml, npz in older:  # summary first: no summary is left without its samples
        toml.unlink()
        npz.unlink(missing_ok=True)
    return d / src.name


def shipped_refits(
    full: Posterior, config: CalibrationConfig, studies: Sequence[str]
) -> tuple[list[Posterior], list[dict[str, str]]]:
    """The refits shipped for ``full`` (:func:`refits_dir`) that stand for its calibration without
    their study (``studies``: those of its problem as rebuilt today), and the others with the
    reason (``file``, ``reason``): :func:`refit_issue`, a file that cannot be read or whose
    samples do not match their summary's hash, or a second refit of the same study (an
    interrupted :func:`ship_refit`: both are refused, since which one is meant is unknown)."""
    usable: list[Posterior] = []
    refused: list[dict[str, str]] = []
    for p in sorted(refits_dir(full).glob("posterior-*.toml")):
        try:
            refit = load_posterior(p)
        except Exception as e:  # any file that cannot be read is refused, never used
            refused.append({"file": p.name, "reason": f"{type(e).__name__}: {e}"})
            continue
        issue = refit_issue(full, refit, config, studies)
        if issue is None:
            usable.append(refit)
        else:
            refused.append({"file": p.name, "reason": issue})
    count: dict[str, int] = {}
    for r in usable:
        count[r.summary["left_out"][0]] = count.get(r.summary["left_out"][0], 0) + 1
    for r in [r for r in usable if count[r.summary["left_out"][0]] > 1]:
        usable.remove(r)
        refused.append(
            {
                "file": f"{r.version}.toml",
                "reason": f"another shipped refit also leaves out {r.summary['left_out'][0]}",
            }
        )
    return usable, refused


def with_refits(
    loso: dict[str, Any],
    problem: Problem,
    refits: Sequence[Posterior],
    *,
    draws: int,
    seed: int,
    bootstrap: int,
) -> dict[str, Any]:
    """The importance-sampling leave-one-study-out ``loso``
    (:func:`~microneedling.studies.credibility.loso.leave_one_study_out` on ``problem``) with each
    refit's study scored by the refit instead (:func:`refit_scores`, ``draws`` draws): its
    ``elpd`` and rows are the refit's, ``estimate`` is ``"refit"``, and the importance-sampling
    ``elpd_is`` and ``pareto_k`` are kept beside them. The totals are recomputed
    (:func:`~microneedling.studies.credibility.loso.loso_totals`)."""
    studies = [dict(s) for s in loso["studies"]]
    index = {s["study"]: j for j, s in enumerate(studies)}
    for refit in refits:
        ex = refit_scores(problem, refit, draws, seed)
        est = studies[index[ex["study"]]] if ex["study"] in index else {}
        entry = {
            "study": ex["study"],
            "elpd": ex["elpd"],
            "rows": ex["rows"],
            "pareto_k": est.get("pareto_k", math.nan),
            "elpd_is": est.get("elpd", math.nan),
            "estimate": REFIT,
            "posterior": ex["posterior"],
            "draws": ex["draws"],
        }
        if ex["study"] in index:
            studies[index[ex["study"]]] = entry
        else:
            studies.append(entry)
    for s in studies:
        s.setdefault("estimate", IMPORTANCE)
    return loso_totals(studies, seed, bootstrap)


def compare_refits(
    run_dirs: Sequence[Path],
    *,
    draws: int = 256,
    seed: int = 0,
    post: Posterior | None = None,
    config: CalibrationConfig | None = None,
) -> list[dict[str, Any]]:
    """Per left-out study of the refits in ``run_dirs``: the refit's scores next to the
    importance-sampling estimate of the shipped posterior ``post`` (default: the shipped one),
    both from ``draws`` draws with ``seed``. Rows: ``study``, ``pareto_k``, ``elpd_is``,
    ``elpd_refit``, ``rows`` (``key``, ``pit_is``, ``pit_refit``, ``covered_is``,
    ``covered_refit``), the refit's ``posterior``."""
    config = config or load_config()
    full = post or _shipped()
    refits = [(Path(d), refit_posterior(Path(d))) for d in run_dirs]
    for d, refit in refits:
        _same_inputs(full, refit, str(d))
    problem = _as_fitted(full, config)
    n = min([draws, full.n_samples, *(r.n_samples for _, r in refits)])
    x = posterior_x(problem, full, distinct_draws(full.n_samples, n, seed), seed)
    psis = leave_one_study_out(problem, x, seed, bootstrap=config.validation.bootstrap)
    by_study = {s["study"]: s for s in psis["studies"]}
    table = []
    for _, refit in refits:
        ex = refit_scores(problem, refit, n, seed)
        est = by_study.get(ex["study"], {"elpd": math.nan, "pareto_k": math.nan, "rows": []})
        is_rows = {r["key"]: r for r in est["rows"]}
        rows_out = []
        for r in ex["rows"]:
            e = is_rows.get(r["key"], {})
            rows_out.append(
                {
                    "key": r["key"],
                    "pit_is": e.get("pit", math.nan),
                    "pit_refit": r["pit"],
                    "covered_is": e.get("covered_80"),
                    "covered_refit": r["covered_80"],
                }
            )
        table.append(
            {
                "study": ex["study"],
                "pareto_k": est["pareto_k"],
                "elpd_is": est["elpd"],
                "elpd_refit": ex["elpd"],
                "rows": rows_out,
                "posterior": ex["posterior"],
                "draws": n,
            }
        )
    return table


def _yes(v: bool | None) -> str:
    return "–" if v is None else ("yes" if v else "no")


def format_table(table: Sequence[dict[str, Any]]) -> str:
    """The comparison as a Markdown table, one line per left-out row."""
    lines = [
        "| study (refit) | Pareto k | elpd, importance sampling | elpd, refit | row | PIT, IS | "
        "PIT, refit | in 80 %, IS | in 80 %, refit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in table:
        for j, r in enumerate(s["rows"]):
            head = (
                f"{s['study']} ({s['posterior']}) | {s['pareto_k']:.2f} | {s['elpd_is']:.2f} | "
                f"{s['elpd_refit']:.2f}"
                if j == 0
                else " | | |"
            )
            lines.append(
                f"| {head} | {r['key']} | {r['pit_is']:.3f} | {r['pit_refit']:.3f} | "
                f"{_yes(r['covered_is'])} | {_yes(r['covered_refit'])} |"
            )
    return "\n".join(lines)


def _finite(v: Any) -> Any:
    """``v`` with NaN and infinities as ``None`` (strict JSON), lists and dicts walked."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m microneedling.studies.credibility.loso_refit DIR [DIR ...]``: print the
    comparison (:func:`format_table`); ``--json FILE`` also writes it (NaN as null). A directory
    that is not a usable refit stops it with one line saying why (exit status 1), as a refit
    refused by ``--ship`` does."""
    ap = argparse.ArgumentParser(
        prog="python -m microneedling.studies.credibility.loso_refit",
        description="Score `calibrate --leave-out` refits against the importance-sampling "
        "leave-one-study-out estimate of the shipped posterior.",
    )
    ap.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    ap.add_argument("--draws", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="FILE")
    ap.add_argument(
        "--ship",
        action="store_true",
        help="also ship each refit into data/calibration/refits/<posterior> (validate then "
        "scores its study by it); refused unless it converged and its inputs are the shipped "
        "posterior's",
    )
    a = ap.parse_args(argv)
    try:
        table = compare_refits(a.dirs, draws=a.draws, seed=a.seed)
    except (InputError, ParameterError, OSError) as e:  # not a refit; unreadable; files missing
        print(f"not compared: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(format_table(table))
    if a.json is not None:
        write_text_atomic(json.dumps(_finite(table), indent=2, allow_nan=False), a.json)
    if a.ship:
        refused = 0
        for d in a.dirs:
            try:
                print(f"shipped {ship_refit(d)}")
            except InputError as e:
                refused += 1
                print(f"not shipped: {e}", file=sys.stderr)
        if refused:
            raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
