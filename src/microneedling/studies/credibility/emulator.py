"""Emulate, sample, correct: the calibration's posterior through an emulator of the model, made
exact by importance weights computed with the model itself.

An emcee ensemble run on the model costs walkers x steps model evaluations (56 x 1,200 = 67,200
parameter vectors at 0.2-0.4 s each on this project's reference machine: hours). The calibration
therefore follows the calibrate-emulate-sample pattern (Cleary et al. 2021, J. Comput. Phys.
424:109716) with an importance-sampling correction, so that no emulated number reaches the
posterior:

1. **Emulate.** Every parameter vector already run on the model (the history-matching waves, then
   the draws of earlier rounds) teaches an emulator the row predictions as a function of the model
   inputs (``z`` of the calibrated parameters and ``u`` of the nuisance settings; the discrepancy
   scales ``tau`` do not enter the model). The emulator is an average of small neural networks
   (scikit-learn ``MLPRegressor``) on standardised outputs, probabilities on the logit scale; its
   accuracy on held-out runs (R^2 and the error in units of each row's noise) is reported.
2. **Sample.** emcee runs on the emulated posterior (``steps`` steps of ``[sampler]`` walkers and
   moves): the same prior and likelihood
   (:class:`~microneedling.studies.credibility.likelihood.Likelihood`) with emulated predictions.
3. **Correct.** ``draws`` evenly thinned samples of that chain are run on the model. Their
   importance weights ``w = p(x) / q(x)`` (model posterior over emulated posterior, both
   unnormalised) are Pareto-smoothed (PSIS, Vehtari et al. 2024, JMLR 25(72)); the shape estimate
   ``k_hat`` (< 0.7: reliable) and the effective sample size ``1 / sum w^2`` say how good the
   emulated posterior was as a proposal. A draw the model cannot run gets weight 0.
4. **Refine.** The model runs of step 3 lie where the posterior is; they join the training set and
   steps 1-3 repeat for ``rounds`` rounds.

The samples shipped are ``keep`` draws of the last round resampled by their weights (systematic
resampling), each with its model predictions. With ``rounds = 0`` the pipeline runs emcee on the
model itself (:func:`~microneedling.studies.credibility.posterior.run_sampler`), the reference this
shortcut is tested against.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from microneedling.engine.executor import ChunkStore, map_chunks
from microneedling.errors import InputError
from microneedling.studies.credibility.calibrate import (
    CalibrationConfig,
    HistoryMatch,
    ModelEvaluationError,
    Problem,
    initial_walkers,
    weighted_median,
    with_patient_spread,
)
from microneedling.studies.credibility.likelihood import expit, logit
from microneedling.studies.credibility.posterior import diagnostics, run_sampler

__all__ = [
    "RELIABLE_K_HAT",
    "EmulatedPosterior",
    "Emulator",
    "ImportanceRound",
    "emulate_sample_correct",
    "fit_emulator",
    "importance_weights",
    "model_columns",
    "probability_rows",
    "row_noise",
    "systematic_resample",
]

_P_EPS = 1e-6

#: Pareto k_hat of a round's importance weights below which they are reliable (Vehtari et al.
#: 2024, *JMLR* 25:72); ``[emulator] max_rounds`` adds rounds until the last one is
RELIABLE_K_HAT = 0.7


def model_columns(problem: Problem) -> np.ndarray:
    """Indices of the coordinates of ``x`` that enter the model: ``z`` (P) and ``u`` (M)."""
    P, Q, D = problem.P, problem.Q, problem.ndim
    return np.concatenate([np.arange(P), np.arange(P + Q, D)]).astype(int)


def probability_rows(problem: Problem) -> np.ndarray:
    """Mask of the rows whose prediction is a probability (binomial rows: emulated as logits)."""
    return np.array([s.kind == "binomial" for s in problem.likelihood.specs], dtype=bool)


@dataclass
class Emulator:
    """Row predictions (W, R) of parameter vectors ``x`` (W, D), from an average of networks.

    ``columns`` picks the model inputs out of ``x``; outputs are standardised (``y_mean``,
    ``y_sd``) after the logit of the ``logit`` rows; rows constant in training (``y_sd`` = 0) are
    returned as that constant. ``holdout`` holds the accuracy on runs not used in training.
    """

    columns: np.ndarray
    logit: np.ndarray
    y_mean: np.ndarray
    y_sd: np.ndarray
    nets: list[Any]
    holdout: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0

    def transform(self, pred: np.ndarray) -> np.ndarray:
        """Predictions (N, R) in the emulator's output scale (logits for ``logit`` rows)."""
        y = np.array(pred, dtype=float, copy=True)
        y[:, self.logit] = logit(y[:, self.logit], _P_EPS)
        return y

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Emulated predictions (W, R) in likelihood units."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        inp = x[:, self.columns]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's feature-name notices
            s = np.mean([net.predict(inp).reshape(len(inp), -1) for net in self.nets], axis=0)
        y = self.y_mean[None, :] + self.y_sd[None, :] * s
        y[:, self.logit] = expit(y[:, self.logit])
        return y


def _usable(pred: np.ndarray) -> np.ndarray:
    """Runs whose predictions are all finite (a run the model could not do teaches nothing)."""
    out: np.ndarray = np.all(np.isfinite(pred), axis=1)
    return out


def fit_emulator(
    x: np.ndarray,
    pred: np.ndarray,
    columns: np.ndarray,
    logit: np.ndarray,
    noise: np.ndarray,
    *,
    hidden: tuple[int, ...] = (128, 128),
    members: int = 3,
    holdout: float = 0.15,
    max_iter: int = 1500,
    seed: int = 0,
) -> Emulator:
    """Train an :class:`Emulator` on model runs ``x`` (N, D) with predictions ``pred`` (N, R).

    ``noise`` (R,) is each row's likelihood scale (SE, or the discrepancy scale) in prediction
    units: the held-out error is also reported in these units (an emulator error well below 1 is
    negligible for the likelihood). A fraction ``holdout`` of the runs is kept out of training.
    """
    from sklearn.neural_network import MLPRegressor

    x = np.atleast_2d(np.asarray(x, dtype=float))
    pred = np.atleast_2d(np.asarray(pred, dtype=float))
    ok = _usable(pred)
    x, pred = x[ok], pred[ok]
    if len(x) < 20:
        raise ModelEvaluationError(
            f"the emulator needs at least 20 runs with finite predictions; there are {len(x)}"
        )
    emu = Emulator(
        columns=np.asarray(columns, dtype=int),
        logit=np.asarray(logit, dtype=bool),
        y_mean=np.zeros(pred.shape[1]),
        y_sd=np.ones(pred.shape[1]),
        nets=[],
    )
    y = emu.transform(pred)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_out = round(holdout * len(x)) if holdout > 0 else 0
    test, train = order[:n_out], order[n_out:]
    emu.y_mean = y[train].mean(axis=0)
    sd = y[train].std(axis=0)
    emu.y_sd = np.where(sd > 1e-12 * np.maximum(np.abs(emu.y_mean), 1.0), sd, 0.0)
    scale = np.where(emu.y_sd > 0, emu.y_sd, 1.0)
    target = (y[train] - emu.y_mean[None, :]) / scale[None, :]
    inp = x[train][:, emu.columns]
    for m in range(members):
        net = MLPRegressor(
            hidden_layer_sizes=hidden,
            activation="tanh",
            alpha=1e-4,
            learning_rate_init=1e-3,
            max_iter=max_iter,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=40,
            random_state=seed + 1 + m,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: reported below
            net.fit(inp, target)
        emu.nets.append(net)
    emu.n_train = len(train)
    if n_out:
        emu.holdout = _holdout_scores(emu, x[test], pred[test], y[test], noise)
    return emu


def _holdout_scores(
    emu: Emulator, x: np.ndarray, pred: np.ndarray, y: np.ndarray, noise: np.ndarray
) -> dict[str, Any]:
    """R^2 per row in the emulator's scale and the RMS error in units of each row's noise."""
    got = emu.predict(x)
    yt = emu.transform(got)
    ss_res = np.sum((yt - y) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, -np.inf, 1.0))
        rms_noise = np.sqrt(np.mean((got - pred) ** 2, axis=0)) / np.asarray(noise, dtype=float)
    worst = int(np.nanargmax(rms_noise)) if np.any(np.isfinite(rms_noise)) else 0
    return {
        "runs": len(x),
        "rows_error_above_noise": int(np.sum(rms_noise > 1.0)),
        "worst_row": worst,
        "r2": r2,
        "rmse_over_noise": rms_noise,
        "r2_median": float(np.median(r2)),
        "r2_min": float(np.min(r2)),
        "rmse_over_noise_median": float(np.nanmedian(rms_noise)),
        "rmse_over_noise_max": float(np.nanmax(rms_noise)),
    }


class EmulatedPosterior:
    """The calibration posterior with emulated predictions: what emcee samples in step 2.

    Same coordinates, prior and likelihood as ``problem``; ``log_prob_blobs`` returns rows
    ``[log posterior, predictions..., log-likelihood per study...]`` like
    :meth:`Problem.log_prob_blobs`, so :func:`run_sampler` runs it unchanged.
    """

    def __init__(self, problem: Problem, emulator: Emulator, tag: str) -> None:
        self.problem = problem
        self.emulator = emulator
        self.tag = tag
        self.n_evaluations = 0

    @property
    def ndim(self) -> int:
        return self.problem.ndim

    @property
    def labels(self) -> list[str]:
        return self.problem.labels

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.problem
        x = np.atleast_2d(np.asarray(x, dtype=float))
        lp = p.log_prior(x)
        pred = self.emulator.predict(x)
        self.n_evaluations += len(x)
        _, lt, _ = p.split(x)
        by = p.likelihood.by_study(pred, np.exp(lt))
        total = lp + np.sum(by, axis=1)
        total = np.where(np.isnan(total), -np.inf, total)
        return total, pred, by

    def log_prob_blobs(self, x: np.ndarray) -> np.ndarray:
        lp, pred, by = self.evaluate(x)
        return np.column_stack([lp, pred, by])

    def fingerprint(self) -> str:
        return f"emulated-{self.problem.fingerprint()}-{self.tag}"


def importance_weights(log_target: np.ndarray, log_proposal: np.ndarray) -> dict[str, Any]:
    """Pareto-smoothed normalised importance weights of draws from ``log_proposal`` for
    ``log_target`` (both unnormalised log densities, (N,)); non-finite target: weight 0.

    Returns ``weights`` (N,) summing to 1, ``k_hat`` (the generalised-Pareto shape of the largest
    weights; < 0.7 reliable, Vehtari et al. 2024), ``ess`` = 1 / sum w^2 and ``usable`` (draws
    with a finite target)."""
    lt = np.asarray(log_target, dtype=float)
    lq = np.asarray(log_proposal, dtype=float)
    ok = np.isfinite(lt) & np.isfinite(lq)
    w = np.zeros(len(lt))
    k_hat = math.inf
    if np.any(ok):
        raw = lt[ok] - lq[ok]
        raw = raw - np.max(raw)
        if np.sum(ok) >= 5:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # arviz warns on a large k itself
                lw, k = az.psislw(raw)
            k_hat = float(k)
        else:
            lw = raw - np.log(np.sum(np.exp(raw)))
        w[ok] = np.exp(np.asarray(lw) - np.max(lw))
        w /= np.sum(w)
    ess = float(1.0 / np.sum(w**2)) if np.any(w > 0) else 0.0
    return {"weights": w, "k_hat": k_hat, "ess": ess, "usable": int(np.sum(ok))}


def systematic_resample(weights: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices (n,) drawn with probabilities ``weights`` by systematic resampling (one uniform
    offset; each index appears floor or ceil of n w_i times)."""
    w = np.asarray(weights, dtype=float)
    if not (np.all(w >= 0) and np.sum(w) > 0):
        raise ValueError("weights must be non-negative with a positive sum")
    c = np.cumsum(w / np.sum(w))
    c[-1] = 1.0
    u = (np.random.default_rng(seed).random() + np.arange(n)) / n
    out: np.ndarray = np.searchsorted(c, u, side="right").astype(int)
    return np.minimum(out, len(w) - 1)


def _eval_chunk(item: tuple[Problem, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    problem, x = item
    return problem.evaluate(x)


def _count(r: tuple[np.ndarray, ...]) -> float:
    return float(len(r[0]))


def _after_head(store: ChunkStore | None) -> Callable[[int, Any], None] | None:
    """``on_result`` saving model-run chunk ``i`` as ``i + 1`` (chunk 0 holds the round's draws)."""
    if store is None:
        return None

    def save(i: int, value: Any) -> None:
        store.save(i + 1, value)

    return save


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=float).tobytes()).hexdigest()[:12]


@dataclass
class ImportanceRound:
    """One emulate-sample-correct round: the emulated chain's draws, their model evaluation and
    importance weights."""

    round: int
    x: np.ndarray  # (N, D) draws of the emulated posterior
    log_emulated: np.ndarray  # (N,)
    log_model: np.ndarray  # (N,)
    predictions: np.ndarray  # (N, R) model predictions
    by_study: np.ndarray  # (N, S)
    weights: np.ndarray  # (N,) normalised PSIS weights
    k_hat: float
    ess: float
    emulator: dict[str, Any]
    chain: dict[str, Any]
    seconds: float
    #: the graded counts' between-patient (sd, offset) this round's likelihood used, when it was
    #: re-computed (every round after the first, with ``respread``)
    spread: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        n = len(self.x)
        return {
            "round": self.round,
            "training_runs": self.emulator.get("training_runs", 0),
            "emulator_r2_median": self.emulator.get("r2_median", math.nan),
            "emulator_r2_min": self.emulator.get("r2_min", math.nan),
            "emulator_error_over_noise_median": self.emulator.get(
                "rmse_over_noise_median", math.nan
            ),
            "emulator_error_over_noise_max": self.emulator.get("rmse_over_noise_max", math.nan),
            "emulator_worst_row": self.emulator.get("worst_row_key", ""),
            "emulator_rows_error_above_noise": self.emulator.get("rows_error_above_noise", 0),
            "emulated_chain": {
                k: self.chain.get(k)
                for k in ("walkers", "steps", "acceptance_mean", "r_hat_max", "ess_bulk_min")
            },
            "draws": n,
            "model_failures": int(np.sum(~np.isfinite(self.log_model))),
            "k_hat": self.k_hat,
            "ess": self.ess,
            "ess_fraction": self.ess / max(n, 1),
            "seconds": round(self.seconds, 1),
            **({"patient_spread": self.spread} if self.spread else {}),
        }


def row_noise(problem: Problem) -> np.ndarray:
    """Each row's likelihood scale in prediction units (for the emulator's error report)."""
    out = []
    for s in problem.likelihood.specs:
        if s.kind == "binomial":
            p = min(max(s.k / s.n, 0.05), 0.95)
            out.append(math.sqrt(p * (1 - p) / s.n))
        else:
            out.append(max(s.se, 1e-12))
    return np.asarray(out)


def emulate_sample_correct(
    problem: Problem,
    hm: HistoryMatch,
    config: CalibrationConfig,
    store_dir: Path | None = None,
    *,
    steps: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    respread: Callable[[np.ndarray], Mapping[str, tuple[float, float]]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Steps 1-4 of the module doc, from the history-matching runs ``hm``.

    ``respread``: the between-patient spread of the graded counts at a parameter point ``z``
    (:func:`~.calibrate.spread_at`). Given, every round after the first re-computes it at the
    previous round's importance-weighted posterior median and replaces the problem's likelihood
    with it (:func:`~.calibrate.with_patient_spread`): a cohort's spread depends on where the
    parameters are (Alster & Li's striae cohort: SD 9.4 points at the prior mode, 14.6 at the
    posterior median of 2026-12-07), so the last round's posterior uses the spread of the one
    before, not the prior mode's. The round's spread is in its diagnostics and in its store's fingerprint.

    ``[emulator] rounds`` rounds run; with ``max_rounds``, more follow (up to that many) while the
    last round's importance weights are unreliable (k_hat > :data:`RELIABLE_K_HAT`): each round's
    emulator trains on every model run so far, so a round that missed the posterior's mass
    teaches the next where it is.

    Returns the resampled posterior draws (keep, D), their blobs (keep, R + S: model predictions
    and log-likelihood per study, like a chain's) and the diagnostics (per round, the emulated
    chain's R-hat/ESS, the importance ``k_hat``/ESS). Each round's draws and their model runs are
    kept in ``store_dir`` (resume: a stored round is loaded, not re-drawn).
    """
    ec, sc = config.emulator, config.sampler
    if ec.rounds < 1:
        raise InputError("[emulator] rounds", ec.rounds, ">= 1 (0 means emcee on the model)")
    walkers = sc.walkers or max(2 * problem.ndim + 2, sc.min_walkers)
    walkers += walkers % 2
    cols = model_columns(problem)
    logit = probability_rows(problem)
    noise = row_noise(problem)
    train_x = [hm.x]
    train_pred = [hm.predictions]
    rounds: list[ImportanceRound] = []
    # the rounds build on the history match: its settings are part of their fingerprint
    fp = f"esc-{problem.fingerprint()}-{config.fingerprint('history_matching', 'emulator', 'sampler')}"
    last_round = max(ec.rounds, ec.max_rounds if ec.max_rounds is not None else ec.rounds)
    for r in range(1, last_round + 1):
        if r > ec.rounds and rounds[-1].k_hat <= RELIABLE_K_HAT:
            break  # the rounds asked for are done and the last one's weights are reliable
        t0 = time.perf_counter()
        spread: dict[str, list[float]] = {}
        if respread is not None and rounds:
            prev = rounds[-1]
            if np.any(prev.weights > 0):
                centre = weighted_median(prev.x[:, : problem.P], prev.weights)
                got = respread(centre)
                problem.likelihood = with_patient_spread(problem, got)
                spread = {k: [float(v[0]), float(v[1])] for k, v in sorted(got.items())}
                if log and spread:
                    log(
                        f"round {r}: graded counts' spread at round {prev.round}'s median: "
                        + "; ".join(
                            f"{k} sd {v[0]:.3g}, offset {v[1]:.3g}" for k, v in spread.items()
                        )
                    )
        tag = f"{fp}-{r}" + (f"-{_digest(np.array(list(spread.values())))}" if spread else "")
        store = ChunkStore(store_dir / f"round-{r}", tag) if store_dir else None
        head = store.load(0) if store is not None and 0 in store.done() else None
        if head is None:
            x_all, p_all = np.concatenate(train_x), np.concatenate(train_pred)
            emu = fit_emulator(
                x_all,
                p_all,
                cols,
                logit,
                noise,
                hidden=tuple(ec.hidden),
                members=ec.members,
                holdout=ec.holdout,
                seed=ec.seed + r,
            )
            emu_info = {
                "training_runs": emu.n_train,
                **{k: v for k, v in emu.holdout.items() if not isinstance(v, np.ndarray)},
            }
            if "worst_row" in emu_info:
                emu_info["worst_row_key"] = problem.likelihood.keys[emu_info.pop("worst_row")]
            post = EmulatedPosterior(problem, emu, f"{r}-{_digest(x_all)}")
            init = _initial(rounds, hm, problem, post, walkers, ec.seed + r)
            chain = run_sampler(
                post, init, config, None, steps=steps or ec.steps, progress=progress
            )
            chain_info = diagnostics(post, chain)
            chain.keep = ec.draws
            x = chain.samples
            head = {
                "x": x,
                "log_emulated": chain.sample_log_prob,
                "emulator": emu_info,
                "chain": chain_info,
            }
            if store is not None:
                store.save(0, head)
        x = head["x"]
        chunk = config.screening.chunk
        items = [(problem, x[i : i + chunk]) for i in range(0, len(x), chunk)]
        done = {i - 1 for i in store.done() if i >= 1} if store is not None else set()
        results = map_chunks(
            _eval_chunk,
            items,
            progress=progress,
            label=f"model runs of round {r}",
            skip=done,
            on_result=_after_head(store),
            rate=_count,
            rate_unit="draws",
        )
        for i in done:
            assert store is not None
            results[i] = store.load(i + 1)
        parts = [v for v in results if v is not None]
        lp = np.concatenate([v[0] for v in parts])
        pred = np.concatenate([v[1] for v in parts])
        by = np.concatenate([v[2] for v in parts])
        iw = importance_weights(lp, head["log_emulated"])
        rnd = ImportanceRound(
            round=r,
            x=x,
            log_emulated=head["log_emulated"],
            log_model=lp,
            predictions=pred,
            by_study=by,
            weights=iw["weights"],
            k_hat=iw["k_hat"],
            ess=iw["ess"],
            emulator=head["emulator"],
            chain=head["chain"],
            seconds=time.perf_counter() - t0,
            spread=spread,
        )
        rounds.append(rnd)
        train_x.append(x)
        train_pred.append(pred)
        if log:
            s = rnd.summary()
            log(
                f"round {r}: emulator on {s['training_runs']} runs (held-out R^2 median "
                f"{s['emulator_r2_median']:.3f}; error/noise median "
                f"{s['emulator_error_over_noise_median']:.2f}, above 1 on "
                f"{s['emulator_rows_error_above_noise']} rows, worst "
                f"{s['emulator_error_over_noise_max']:.2f} ({s['emulator_worst_row']})); "
                f"{s['draws']} draws run on "
                f"the model: k_hat {s['k_hat']:.2f}, ESS {s['ess']:.0f}"
            )
    last = rounds[-1]
    if not np.any(last.weights > 0):
        raise ModelEvaluationError("no draw of the last round could be run on the model")
    pick = systematic_resample(last.weights, sc.keep, sc.seed)
    blobs = np.column_stack([last.predictions, last.by_study])[pick]
    importance = {
        "rounds": [r.summary() for r in rounds],
        "k_hat": last.k_hat,
        "ess": last.ess,
        "distinct_samples": len(np.unique(pick)),
        "evaluations": int(len(hm.x) + sum(len(r.x) for r in rounds)),
        "note": "k_hat < 0.7: the importance weights are reliable (Vehtari et al. 2024); the "
        "effective sample size of the shipped samples is the last round's ESS, not their number.",
    }
    diag = {**last.chain, "importance": importance}
    diag["note"] = (
        "Sampler diagnostics of the last round's emcee run on the emulated posterior "
        f"({diag.get('evaluations', 0)} emulator calls); 'importance' holds the correction by "
        "the model. " + str(last.chain.get("note", ""))
    )
    return last.x[pick], blobs, diag


def _initial(
    rounds: list[ImportanceRound],
    hm: HistoryMatch,
    problem: Problem,
    post: EmulatedPosterior,
    walkers: int,
    seed: int,
) -> np.ndarray:
    """Walkers of a round's emulated chain: the previous round's draws resampled by weight
    (distinct where possible), or in round 1 the history match's non-implausible points; only
    starts with a finite emulated posterior."""
    rng = np.random.default_rng(seed)
    if rounds and np.sum(rounds[-1].weights > 0) >= walkers:
        prev = rounds[-1]
        idx = rng.choice(len(prev.x), size=walkers, replace=False, p=prev.weights)
        x = prev.x[idx].copy()
    else:
        x = initial_walkers(hm, problem, walkers, seed)
    lp = post.evaluate(x)[0]
    bad = ~np.isfinite(lp)
    if np.any(bad):
        pool = hm.x[np.isfinite(hm.log_posterior)]
        lp_pool = post.evaluate(pool)[0]
        good = pool[np.isfinite(lp_pool)]
        if len(good) < int(np.sum(bad)):
            raise ModelEvaluationError("too few starting points with a finite emulated posterior")
        x[bad] = good[rng.choice(len(good), size=int(np.sum(bad)), replace=False)]
    return x
