"""The calibration as one resumable command: screening, history matching, the posterior
(emulate-sample-correct, or emcee on the model), posterior files.

:func:`run_pipeline` is what ``microneedling calibrate`` runs. Every stage keeps its finished work
under the run directory (``screening/``, ``history/``, ``emulator/`` or ``chain/``: chunk files written atomically,
with a fingerprint of the inputs), so a re-run with the same inputs resumes where it stopped and a
run with changed inputs (rows, protocols, parameter files, settings) is refused in that directory
rather than mixed. The outputs are ``screening.toml``, ``posterior-<hash>.npz`` and
``posterior-<hash>.toml`` in the run directory; :func:`ship_run` copies them into
``data/calibration`` (``current.toml`` = the new posterior) and, with ``write_values``, puts the
posterior medians and 5–95% intervals into the parameter files.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from microneedling.errors import InputError
from microneedling.io import atomic_path, data_path, dumps_toml
from microneedling.parameters.sampling import load_posterior, shipped_calibration
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    build_problem,
    config_path,
    history_match,
    initial_walkers,
    likelihood_rows,
    load_config,
    parallel_evaluation,
    spread_at,
    study_of,
)
from microneedling.studies.credibility.emulator import emulate_sample_correct
from microneedling.studies.credibility.literature import load_protocols, rows
from microneedling.studies.credibility.posterior import (
    refuse_refit,
    run_sampler,
    run_summary,
    ship,
    summarise,
    summarise_samples,
    write_posterior,
)
from microneedling.studies.credibility.screening import (
    SCREENING,
    load_screening,
    run_screening,
    write_screening,
)

__all__ = ["keep_priors", "run_pipeline", "ship_run", "write_values"]


def run_pipeline(
    out: Path,
    *,
    config: CalibrationConfig | None = None,
    screening: str = "run",
    steps: int | None = None,
    workers: int = 1,
    leave_out: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole calibration in ``out`` (resumable): screening (``"run"``, or ``"shipped"`` to
    reuse ``data/calibration/screening.toml``), history matching, emcee, the posterior files.
    ``workers`` processes evaluate the parameter vectors of every stage (the same numbers as one).
    ``leave_out``: one calibration study left out (a refit for leave-one-study-out
    cross-validation, :mod:`~microneedling.studies.credibility.loso_refit`), with the shipped
    screening (a screening run would see the study); its posterior records it as ``left_out`` and
    is never shipped (:func:`~microneedling.studies.credibility.posterior.ship` refuses it).

    Returns the posterior summary with ``paths`` (the files written)."""
    config = config or load_config()
    left_out = [leave_out] if leave_out is not None else []
    if left_out:
        if screening != "shipped":
            raise InputError(
                "--screening",
                screening,
                "'shipped' with --leave-out (a screening run would see the left-out study)",
            )
        cal, _ = likelihood_rows(rows("calibration"), load_protocols())
        known = sorted({study_of(r) for r in cal})
        if leave_out not in known:
            raise InputError(
                "--leave-out", leave_out, f"a study with rows in the likelihood: {known}"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if screening == "run":
        screen = run_screening(
            config=config, store_dir=out / "screening", progress=progress, workers=workers
        )
        write_screening(screen, out)
    elif screening == "shipped":
        screen = load_screening()
    else:
        raise InputError("--screening", screening, "'run' or 'shipped'")
    selected = list(screen["selected"])
    log(
        f"screening ({screen.get('n_runs', 0)} runs, {screen.get('seconds', 0)} s): "
        f"{len(selected)} parameters calibrated: {', '.join(selected) or 'none'}"
    )
    nus = screen.get("nuisances", {})
    # a left-out study's settings (``study:setting``) leave with it
    sampled = [n for n in nus.get("sampled", []) if n.split(":", 1)[0] not in left_out]
    problem = build_problem(
        selected,
        config=config,
        exclude_studies=left_out,
        nuisance_labels=sampled if nus else None,
        stand_in_sd=dict(nus.get("stand_in_sd", {})) if nus else None,
    )
    if leave_out is not None:
        log(f"left out (cross-validation refit, never shipped): {leave_out}")
    log(
        f"problem: {len(problem.rows)} rows from {len(problem.likelihood.studies)} studies, "
        f"{problem.P} parameters, {problem.Q} discrepancy groups, {problem.M} nuisance settings "
        f"({problem.ndim} dimensions)"
    )
    with parallel_evaluation(problem, workers):
        hm = history_match(problem, config, out / "history", progress=progress)
        hs = hm.summary()
    conflicts = [r["key"] for r in hs["rows"] if r["conflict"]]
    log(
        "history matching: "
        + "; ".join(
            f"wave {w['wave']}: {w['non_implausible']} of {w['points']} non-implausible"
            for w in hs["waves"]
        )
        + (f"; rows no point reaches: {', '.join(conflicts)}" if conflicts else "")
    )
    sc = config.sampler
    if config.emulator.rounds > 0:
        with parallel_evaluation(problem, workers):
            x, blobs, diag = emulate_sample_correct(
                problem,
                hm,
                config,
                out / "emulator",
                steps=steps,
                progress=progress,
                log=log,
                respread=partial(spread_at, problem, config=config),
            )
        summary = summarise_samples(
            problem,
            x,
            blobs,
            diag,
            config,
            history=hs,
            screening=screen,
            method="emulate-sample-correct: emcee on a neural-network emulator trained on the "
            "model runs, its draws re-run on the model and importance-weighted (PSIS)",
        )
    else:
        walkers = sc.walkers or max(2 * problem.ndim + 2, sc.min_walkers)
        walkers += walkers % 2
        init = initial_walkers(hm, problem, walkers, sc.seed)
        with parallel_evaluation(problem, workers):
            chain = run_sampler(
                problem, init, config, out / "chain", steps=steps, progress=progress, log=log
            )
        summary = summarise(problem, chain, config, history=hs, screening=screen)
        x = chain.samples
    summary["seconds_total"] = round(time.perf_counter() - t0, 1)
    if left_out:
        summary["left_out"] = left_out
    paths = write_posterior(summary, x, out)
    d = summary["diagnostics"]
    what = "emcee on the emulator" if config.emulator.rounds > 0 else "emcee"
    log(
        f"{what}: {d['walkers']} walkers x {d['steps']} steps ({d['seconds_per_step']} s/step), "
        f"acceptance {d['acceptance_mean']}, max R-hat {d['r_hat_max']}, min bulk ESS "
        f"{d['ess_bulk_min']}, max autocorrelation {d['autocorr_max_steps']} steps"
    )
    if "importance" in d:
        imp = d["importance"]
        log(
            f"importance correction: k_hat {imp['k_hat']:.2f}, ESS {imp['ess']:.0f}, "
            f"{imp['distinct_samples']} distinct of {len(x)} samples; "
            f"{imp['evaluations']} model runs in all"
        )
    log(f"wrote {paths['samples']} and {paths['summary']}")
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    return summary


def ship_run(out: Path, *, values: bool = False) -> list[str]:
    """Ship the posterior of run directory ``out`` (the newest ``posterior-*.toml``) and its
    ``screening.toml`` into ``data/calibration``; with ``values``, also write the posterior medians
    and 5–95% intervals into the parameter files (:func:`write_values`). Returns what was written."""
    out = Path(out)
    summary = run_summary(out, "--out")
    npz = summary.with_suffix(".npz")
    written = [str(ship({"samples": npz, "summary": summary}))]
    if (out / SCREENING).exists():
        with atomic_path(data_path("calibration", SCREENING)) as tmp:
            shutil.copyfile(out / SCREENING, tmp)
        written.append(SCREENING)
    if values:
        written += write_values(summary)
    return written


def keep_priors(factors: list[dict[str, Any]], config_file: Path | None = None) -> list[str]:
    """Record in ``calibrate.toml [priors]`` the pre-calibration prior of every calibrated member
    that has none there yet (before its file entry is overwritten by a posterior), so the next
    calibration starts from the prior, never from a posterior. Returns the names added."""
    path = config_file or config_path()
    config = CalibrationConfig.from_toml(path)
    new = {}
    for f in factors:
        for p in f["prior"]:
            if p["member"] in config.priors or isinstance(p["value"], dict):
                continue
            new[p["member"]] = {
                "value": p["value"],
                "low": p["low"],
                "high": p["high"],
                "source": ["estimate"],
                "note": "The parameter file's value and interval before `calibrate --write` "
                "replaced them with the posterior (recorded automatically).",
            }
    if new:
        text = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + dumps_toml({"priors": new})
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        CalibrationConfig.from_toml(path)  # still valid
    return sorted(new)


def write_values(
    summary_path: Path, directory: Path | None = None, config_file: Path | None = None
) -> list[str]:
    """Put each calibrated scalar member's posterior median and 5–95% interval into its parameter
    file (``value``, ``low``, ``high`` lines; ``kind = "calibrated"``), after recording its prior
    (:func:`keep_priors`). Keyed members are left as they are (the ensemble draws them from the
    samples). Returns the names written."""
    post = load_posterior(summary_path)
    refuse_refit(post.summary, str(summary_path))
    d = directory or data_path("parameters")
    keep_priors(post.factors, config_file)
    stats = {f["label"]: f for f in post.summary["statistics"]["factors"]}
    written = []
    for f in post.factors:
        for m in stats[f["label"]]["members"]:
            if m.get("keyed"):
                continue
            name = m["member"]
            group, key = name.split(".", 1)
            path = d / f"{group}.toml"
            text = path.read_text(encoding="utf-8")
            found = re.search(rf"^\[{re.escape(key)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
            if found is None:
                raise InputError(name, "not found", f"a [{key}] table in {path}")
            block = found.group(1)
            for fld, val in (
                ("value", m["median"]),
                ("low", m["low"]),
                ("high", m["high"]),
                ("kind", "calibrated"),
            ):
                line = f'{fld} = "{val}"' if isinstance(val, str) else f"{fld} = {val:.6g}"
                block, n = re.subn(rf"^{fld} = .*$", line, block, flags=re.M)
                if n != 1:
                    raise InputError(name, f"no single '{fld} =' line", f"one in {path}")
            with atomic_path(path) as tmp:
                tmp.write_text(text[: found.start(1)] + block + text[found.end(1) :], "utf-8")
            written.append(name)
    shipped_calibration.cache_clear()
    return written
