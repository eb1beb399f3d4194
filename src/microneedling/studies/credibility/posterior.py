"""Posterior sampling of the calibration problem with emcee, its diagnostics and its files.

:func:`run_sampler` runs an ``emcee.EnsembleSampler`` with ``vectorize=True``: every half-ensemble
update is ONE call of :meth:`Problem.log_prob_blobs
<microneedling.studies.credibility.calibrate.Problem.log_prob_blobs>`, i.e. one batched healing solve
of every walker's courses. Moves: differential evolution (ter Braak 2006) mixed with its snooker
variant, which cope with the ridges of amplitude parameters (e.g. collagen synthesis rate against
fibroblast capacity). The run is cut into chunks of steps; each finished chunk (positions, log
posterior, blobs with the predictions, acceptance, the sampler's random state) is written atomically
to a :class:`~microneedling.engine.executor.ChunkStore`, so an interrupted run resumes after its
last finished chunk and gives the same chain as an uninterrupted one.

:func:`summarise` discards the burn-in, thins evenly to ``keep`` samples and computes diagnostics
with ArviZ (rank-normalised split R-hat and bulk/tail ESS, walkers taken as chains — walkers of an
ensemble are not independent chains, so R-hat is a screen, not a proof), emcee's integrated
autocorrelation time, the acceptance fraction, the posterior/prior SD ratio of each parameter
(identifiability) and the largest posterior correlations.

:func:`write_posterior` writes ``posterior-<hash>.npz`` (the samples; hash = SHA-256 of their
content, :func:`microneedling.parameters.sampling.samples_hash`) and ``posterior-<hash>.toml`` (the
summary), and :func:`ship` copies both into ``data/calibration`` with ``current.toml``.
"""

from __future__ import annotations

import io
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import arviz as az
import emcee
import numpy as np

from microneedling import interrupts
from microneedling.engine.executor import ChunkStore, map_chunks
from microneedling.errors import InputError
from microneedling.io import atomic_path, dumps_toml, read_toml, write_bytes_atomic
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import (
    CURRENT,
    calibration_dir,
    posterior_statistics,
    samples_hash,
    shipped_calibration,
)
from microneedling.studies.credibility.calibrate import CalibrationConfig, Problem, tomlable

__all__ = [
    "Chain",
    "Sampled",
    "refuse_refit",
    "run_sampler",
    "run_summary",
    "ship",
    "summarise",
    "summarise_samples",
    "write_posterior",
]


class Sampled(Protocol):
    """What :func:`run_sampler` samples: a :class:`Problem` or an emulated posterior."""

    n_evaluations: int

    @property
    def ndim(self) -> int: ...

    @property
    def labels(self) -> list[str]: ...

    def log_prob_blobs(self, x: np.ndarray) -> np.ndarray: ...

    def fingerprint(self) -> str: ...


@dataclass
class Chain:
    """A finished (or resumed) ensemble run: positions (steps, W, D), log posterior (steps, W),
    blobs (steps, W, R + S: predictions, then log-likelihood per study), accepted moves per
    walker, the seconds spent and the model evaluations made (this process)."""

    chain: np.ndarray
    log_prob: np.ndarray
    blobs: np.ndarray
    accepted: np.ndarray
    seconds: float
    evaluations: int
    burn: int = 0
    keep: int = 0

    @property
    def steps(self) -> int:
        return int(self.chain.shape[0])

    @property
    def walkers(self) -> int:
        return int(self.chain.shape[1])

    def _flat_index(self) -> np.ndarray:
        n = (self.steps - self.burn) * self.walkers
        k = min(self.keep or n, n)
        out: np.ndarray = np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))
        return out

    @property
    def samples(self) -> np.ndarray:
        """Thinned post-burn-in samples (N, D), evenly spaced over steps and walkers."""
        flat = self.chain[self.burn :].reshape(-1, self.chain.shape[2])
        out: np.ndarray = flat[self._flat_index()]
        return out

    @property
    def sample_blobs(self) -> np.ndarray:
        flat = self.blobs[self.burn :].reshape(-1, self.blobs.shape[2])
        out: np.ndarray = flat[self._flat_index()]
        return out

    @property
    def sample_log_prob(self) -> np.ndarray:
        out: np.ndarray = self.log_prob[self.burn :].reshape(-1)[self._flat_index()]
        return out


class _InterruptibleLogProb:
    """The log posterior as emcee calls it, with Ctrl-C and SIGTERM kept out of emcee.

    emcee wraps the function it is given in a handler that prints "emcee: Exception while calling
    your likelihood function" and a traceback for *any* exception before re-raising it, so an
    interrupt that arrives during a model evaluation (nearly all of a run's time) would bury the
    one-line "terminated" message under a traceback. Here an interrupt raised inside the function
    is kept (:func:`microneedling.interrupts.defer`), every later call of the chunk returns
    ``-inf`` without evaluating the model (emcee rejects those proposals at once), and
    :class:`_Stepper` raises the kept interrupt once ``run_mcmc`` has returned, before the
    chunk could be stored: an interrupted chunk is never kept, the finished ones are.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn
        self.width = 1  # columns of a result: log posterior + blobs (run_sampler sets it)
        self.interrupted = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.interrupted:
            try:
                return np.asarray(self.fn(x))
            except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM (cli.common.Terminated)
                interrupts.defer(exc)
                self.interrupted = True
        if self.width == 1:  # no blobs: emcee takes a 1-D log posterior
            return np.full(len(x), -np.inf)
        rejected = np.full((len(x), self.width), np.nan)
        rejected[:, 0] = -np.inf
        return rejected


class _Stepper:
    """The sequential chunks of one ensemble run (called in order by ``map_chunks``)."""

    def __init__(
        self,
        sampler: emcee.EnsembleSampler,
        state: emcee.State,
        steps: int,
        log_prob: _InterruptibleLogProb | None = None,
    ) -> None:
        self.sampler = sampler
        self.state = state
        self.steps = steps
        self.log_prob = log_prob

    def __call__(self, index: int) -> dict[str, Any]:
        self.sampler.reset()
        state = self.sampler.run_mcmc(self.state, self.steps, progress=False)
        if self.log_prob is not None and self.log_prob.interrupted:
            interrupts.raise_pending()
            raise KeyboardInterrupt  # the kept interrupt was raised elsewhere meanwhile
        self.state = state
        return {
            "chain": self.sampler.get_chain(),
            "log_prob": self.sampler.get_log_prob(),
            "blobs": self.sampler.get_blobs(),
            "accepted": np.asarray(self.sampler.backend.accepted, dtype=float),
            "coords": state.coords,
            "last_log_prob": state.log_prob,
            "last_blobs": state.blobs,
            "random_state": state.random_state,
        }


def _moves(de_fraction: float) -> list[tuple[Any, float]]:
    moves: list[tuple[Any, float]] = []
    if de_fraction > 0:
        moves.append((emcee.moves.DEMove(), de_fraction))
    if de_fraction < 1:
        moves.append((emcee.moves.DESnookerMove(), 1.0 - de_fraction))
    return moves


def run_sampler(
    problem: Sampled,
    init: np.ndarray,
    config: CalibrationConfig,
    store_dir: Path | None = None,
    *,
    steps: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Chain:
    """Run (or resume) the ensemble from ``init`` (W, D) for ``steps`` (default: the config's).

    Chunks of ``chunk_steps`` steps are stored in ``store_dir``; a resumed run loads them, restores
    the last position and random state and continues.
    """
    sc = config.sampler
    total = int(steps or sc.steps)
    W, D = init.shape
    if D != problem.ndim:
        raise ValueError(f"init has {D} columns, the problem {problem.ndim}")
    n_chunks = math.ceil(total / sc.chunk_steps)
    fp = f"mcmc-{problem.fingerprint()}-{config.fingerprint()}-{W}-{total}"
    store = ChunkStore(store_dir, fp) if store_dir is not None else None
    done = sorted(store.done()) if store is not None else []
    done = [i for i in done if i < n_chunks]
    # resume from the last contiguous chunk
    k = 0
    while k < len(done) and done[k] == k:
        k += 1
    done = done[:k]
    rng = np.random.RandomState(sc.seed)  # emcee's generator type
    log_prob = _InterruptibleLogProb(problem.log_prob_blobs)
    sampler = emcee.EnsembleSampler(W, D, log_prob, vectorize=True, moves=_moves(sc.de_fraction))
    t0 = time.perf_counter()
    if done:
        assert store is not None
        last = store.load(done[-1])
        state = emcee.State(
            last["coords"],
            log_prob=last["last_log_prob"],
            blobs=last["last_blobs"],
            random_state=last["random_state"],
        )
        if log:
            log(f"sampler: resuming after {len(done) * sc.chunk_steps} stored steps")
    else:
        sampler.random_state = rng.get_state()
        lp_blobs = problem.log_prob_blobs(init)
        state = emcee.State(
            init, log_prob=lp_blobs[:, 0], blobs=lp_blobs[:, 1:], random_state=rng.get_state()
        )
        if not np.all(np.isfinite(state.log_prob)):
            bad = int(np.sum(~np.isfinite(state.log_prob)))
            raise ValueError(f"{bad} of {W} starting walkers have zero posterior density")
    if state.blobs is not None:  # emcee keeps one blob column as a 1-D array
        log_prob.width = 1 + (state.blobs.shape[1] if state.blobs.ndim == 2 else 1)
    stepper = _Stepper(sampler, state, sc.chunk_steps, log_prob)
    lengths = [min(sc.chunk_steps, total - i * sc.chunk_steps) for i in range(n_chunks)]

    def one(i: int) -> dict[str, Any]:
        stepper.steps = lengths[i]
        return stepper(i)

    evals0 = problem.n_evaluations
    results = map_chunks(
        one,
        list(range(n_chunks)),
        progress=progress,
        label="emcee",
        skip=done,
        on_result=store.save if store is not None else None,
        rate=lambda r: float(r["chain"].shape[0]),
        rate_unit="steps",
    )
    for i in done:
        assert store is not None
        results[i] = store.load(i)
    parts = [r for r in results if r is not None]
    chain = Chain(
        chain=np.concatenate([p["chain"] for p in parts]),
        log_prob=np.concatenate([p["log_prob"] for p in parts]),
        blobs=np.concatenate([p["blobs"] for p in parts]),
        accepted=np.sum([p["accepted"] for p in parts], axis=0),
        seconds=time.perf_counter() - t0,
        evaluations=problem.n_evaluations - evals0,
    )
    chain.burn = int(sc.burn_fraction * chain.steps)
    chain.keep = sc.keep
    return chain


# -------------------------------------------------------------------------------- diagnostics
def diagnostics(problem: Sampled, chain: Chain) -> dict[str, Any]:
    """R-hat, ESS (ArviZ), autocorrelation time (emcee), acceptance, per coordinate."""
    post = chain.chain[chain.burn :]
    labels = problem.labels
    data = {f"c{j}": post[:, :, j].T for j in range(post.shape[2])}  # (chains = walkers, draws)
    with warnings.catch_warnings():  # short test chains: ArviZ warns of more chains than draws
        warnings.simplefilter("ignore")
        idata = az.from_dict(posterior=data)
        rhat = az.rhat(idata)
        ess_bulk = az.ess(idata, method="bulk")
        ess_tail = az.ess(idata, method="tail")
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = emcee.autocorr.integrated_time(post, quiet=True, tol=0) if post.shape[0] > 1 else []
    acc = chain.accepted / max(chain.steps, 1)
    per: list[dict[str, Any]] = []
    for j, lab in enumerate(labels):
        per.append(
            {
                "label": lab,
                "r_hat": _num(float(rhat[f"c{j}"])),
                "ess_bulk": _num(float(ess_bulk[f"c{j}"])),
                "ess_tail": _num(float(ess_tail[f"c{j}"])),
                "autocorr_steps": _num(float(tau[j])) if len(tau) else math.nan,
            }
        )

    def worst(key: str, fn: Any) -> float:
        vals = [p[key] for p in per if math.isfinite(p[key])]
        return fn(vals) if vals else math.nan

    return {
        "steps": chain.steps,
        "walkers": chain.walkers,
        "burn": chain.burn,
        "acceptance_mean": _num(float(np.mean(acc))),
        "acceptance_min": _num(float(np.min(acc))),
        "r_hat_max": worst("r_hat", max),
        "ess_bulk_min": worst("ess_bulk", min),
        "ess_tail_min": worst("ess_tail", min),
        "autocorr_max_steps": worst("autocorr_steps", max),
        "seconds": round(chain.seconds, 1),
        "evaluations": chain.evaluations,
        "seconds_per_step": _num(chain.seconds / max(chain.steps, 1)) if chain.evaluations else 0.0,
        "coordinates": per,
        "note": "R-hat and ESS treat each walker as a chain (ArviZ, rank-normalised split R-hat); "
        "walkers of an ensemble are not independent, so these are screens; the autocorrelation "
        "time (emcee) should be well below steps / 50 for a reliable estimate.",
    }


def _num(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits (non-finite kept: written as text in TOML)."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


# ----------------------------------------------------------------------------------- summary
def summarise(
    problem: Problem,
    chain: Chain,
    config: CalibrationConfig,
    *,
    history: dict[str, Any] | None = None,
    screening: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The posterior summary (the TOML shipped beside the samples) of an emcee run on the model."""
    return summarise_samples(
        problem,
        chain.samples,
        chain.sample_blobs,
        diagnostics(problem, chain),
        config,
        history=history,
        screening=screening,
    )


def summarise_samples(
    problem: Problem,
    x: np.ndarray,
    blobs: np.ndarray,
    diag: dict[str, Any],
    config: CalibrationConfig,
    *,
    history: dict[str, Any] | None = None,
    screening: dict[str, Any] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """The posterior summary of samples ``x`` (N, D) with their model ``blobs`` (N, R + S) and
    sampler diagnostics ``diag``."""
    factors: list[dict[str, Any]] = []
    for f in problem.factors:
        d = f.to_dict()
        for prior in d["prior"]:
            v = problem_file_value(problem, prior["member"])
            if v is not None:
                prior["file_value"] = v
        factors.append(d)
    groups: list[dict[str, Any]] = [
        {"name": g, "prior_scale": float(s)}
        for g, s in zip(problem.group_names, problem.group_prior_scale, strict=True)
    ]
    nus = [n.to_dict() for n in problem.nuisances]
    stats = posterior_statistics(x, factors, [g["name"] for g in groups], nus)
    pred = blobs[:, : len(problem.likelihood.specs)]
    rows = []
    tau = np.exp(x[:, problem.P : problem.P + problem.Q])
    for i, spec in enumerate(problem.likelihood.specs):
        fi = pred[:, i]
        rows.append(
            {
                **problem.likelihood.describe()[i],
                "predicted_median": _num(float(np.nanmedian(fi)), 6),
                "pit": _num(problem.likelihood.pit(i, fi, tau[:, spec.group])),
            }
        )
    ident = []
    for j, f in enumerate(problem.factors):
        sd = stats["factors"][j]["z_sd"]
        ident.append(
            {
                "label": f.label,
                "posterior_prior_sd": sd,
                "identified": bool(sd < 0.5),
            }
        )
    corr = np.asarray(stats.get("correlation", [[1.0]]))
    labels = problem.labels
    pairs = sorted(
        (
            (labels[i], labels[j], float(corr[i, j]))
            for i in range(min(len(labels), corr.shape[0]))
            for j in range(i + 1, min(len(labels), corr.shape[0]))
        ),
        key=lambda t: -abs(t[2]),
    )[:10]
    return {
        "method": "Bayesian calibration: likelihood per row type (Gaussian with the study's SE; "
        "censored bounds; probit direction; logit-normal binomial counts; ordered-probit graded "
        "counts), a between-study discrepancy per output family (half-normal prior on tau), the "
        "studies' unreported settings as nuisance parameters (uniform over their ranges); "
        "history matching, then emcee (vectorised differential-evolution ensemble)"
        + (f"; {method}" if method else ""),
        "fingerprint": problem.fingerprint(),
        "parameter_set_hash": problem.base.hash,
        "model_parameter_hash": problem.base.model_hash,
        "rows": rows,
        "factors": factors,
        "groups": groups,
        "nuisances": nus,
        "discrepancy_prior_source": config.discrepancy.prior_source,
        "statistics": stats,
        "identifiability": ident,
        "largest_correlations": [{"a": a, "b": b, "r": _num(r)} for a, b, r in pairs],
        "diagnostics": diag,
        "history_matching": history or {},
        "screening": {
            **{
                k: screening[k]
                for k in ("version", "selected", "n_runs", "seconds")
                if screening and k in screening
            },
            # the stand-ins' spread added to each row's SE: the likelihood as fitted needs it
            # (loso.fitted_problem), whatever screening file is shipped later
            **(
                {"stand_in_sd": dict(screening["nuisances"]["stand_in_sd"])}
                if screening and "stand_in_sd" in screening.get("nuisances", {})
                else {}
            ),
        },
        "settings": config.model_dump(exclude={"priors", "validation"}),
    }


def problem_file_value(problem: Problem, member: str) -> Any:
    """The value the parameter files held for ``member`` when the calibration ran (recorded so
    the shipped samples apply to that set until ``--write`` replaces it)."""
    ps = load_parameters()
    if member not in ps.parameters:
        return None
    return ps.parameters[member].value


def write_posterior(summary: dict[str, Any], samples: np.ndarray, out: Path) -> dict[str, Path]:
    """Write ``posterior-<hash>.npz`` and ``posterior-<hash>.toml`` into ``out``; the summary gets
    its ``version``, ``samples`` and ``samples_sha256``. Returns the two paths."""
    arrays = {"x": np.ascontiguousarray(samples, dtype=float)}
    digest = samples_hash(arrays)
    version = f"posterior-{digest[:12]}"
    summary.update({"version": version, "samples": f"{version}.npz", "samples_sha256": digest})
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz = write_bytes_atomic(buf.getvalue(), out / f"{version}.npz")
    toml = out / f"{version}.toml"
    with atomic_path(toml) as tmp:
        tmp.write_text(_HEADER + dumps_toml(tomlable(summary)), encoding="utf-8")
    return {"samples": npz, "summary": toml}


_HEADER = (
    "# Posterior of the Bayesian calibration, written by `microneedling calibrate`\n"
    "# (microneedling.studies.credibility.posterior). The samples are in the .npz named below\n"
    "# (x: z of each factor, log tau of each group, u of each nuisance setting); their SHA-256 is\n"
    "# samples_sha256. 'statistics' is recomputed from the samples by the tests.\n"
)


def run_summary(run_dir: Path, field: str) -> Path:
    """The newest ``posterior-*.toml`` that :func:`write_posterior` wrote into ``run_dir`` (a
    calibration run directory); an :class:`InputError` naming ``field`` if it has none."""
    found = sorted(Path(run_dir).glob("posterior-*.toml"), key=lambda q: q.stat().st_mtime)
    if not found:
        raise InputError(field, str(run_dir), "a calibration run directory with a posterior-*.toml")
    return found[-1]


def refuse_refit(summary: dict[str, Any], where: str) -> None:
    """An :class:`InputError` if ``summary`` (a posterior's) left a study out: such a refit is for
    cross-validation (``calibrate --leave-out``) and never becomes the model's calibration."""
    left_out = summary.get("left_out")
    if left_out:
        raise InputError(
            "posterior",
            where,
            f"a calibration on every calibration study (this one left out {', '.join(left_out)}: "
            "a cross-validation refit, never shipped)",
        )


def ship(paths: dict[str, Path]) -> Path:
    """Copy a posterior (npz + toml) into ``data/calibration`` and make it ``current.toml``; a
    cross-validation refit is refused (:func:`refuse_refit`) before anything is written."""
    refuse_refit(read_toml(paths["summary"]), str(paths["summary"]))
    d = calibration_dir()
    for p in paths.values():
        with atomic_path(d / p.name) as tmp:
            shutil.copyfile(p, tmp)
    with atomic_path(d / CURRENT) as tmp:
        shutil.copyfile(paths["summary"], tmp)
    shipped_calibration.cache_clear()
    return d / CURRENT
