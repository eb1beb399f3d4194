"""The statistical model of the calibration: likelihood per row type, between-study discrepancy,
measurement error, priors of the discrepancy scales, implausibility and predictive draws.

For row ``i`` of study ``s`` in discrepancy group ``q`` (an output family), with model prediction
``f_i`` (parameters and the study's nuisance settings already applied)::

    y_i = f_i + s_i * delta_sq + eps_i,   delta_sq ~ N(0, tau_q^2),   eps_i ~ N(0, se_i^2)

``se_i`` is the study's standard error of the reported mean (measurement error); ``delta_sq`` is a
between-study discrepancy (heterogeneity of studies plus model error), shared by the rows of one
study in one group that report the same read-out (``readout``: one measure at several times or in
several arms), so those rows are correlated and a within-study difference cancels it. Different
read-outs of one study (collagen and epidermal thickness; a grade and a score) get independent
discrepancies: the model's error differs between read-outs, and one shared ``delta`` forced them to
err in the same direction by the same relative amount (it made the 2026-12-05 calibration trade
Lotfi 2013's collagen row, 53% observed, for a common under-prediction of its epidermis and silver
stain rows, and Vietnam's Goodman-Baron grades for its Lipper-Perez score). A two-arm contrast row
(arm minus comparator) is a read-out of its own: sharing the levels' ``delta`` with the scale
``|y|`` of the contrast, a discrepancy could produce a contrast the model does not have and move the
levels to pay for it (the 2026-12-06 calibration halved Ogunjimi 2020's five closure lifetimes to
fit their black - white contrast).
``s_i`` is the row's discrepancy scale, fixed before the fit: ``|y_i|`` (tau is then a relative,
coefficient-of-variation-like discrepancy, as in Kennedy & O'Hagan's multiplicative form), or the
group's typical magnitude for rows whose value is a bound at 0.

Row types (:data:`KINDS`):

``gaussian``
    a reported mean with its SE. The rows of one (study, group, read-out) are jointly normal with covariance
    ``diag(se^2) + tau^2 s s^T``: exact marginal likelihood by the Sherman–Morrison formula.
``upper`` / ``lower``
    a reported bound (``y <= b`` or ``y >= b``): censored, ``log Phi((b - f) / sd)`` or
    ``log Phi((f - b) / sd)`` with ``sd^2 = se^2 + tau^2 s^2``. A direction-only row (a significant
    increase or decrease without its size) is a bound at 0: the probit likelihood of the sign.
``binomial``
    ``k`` of ``n`` patients (0 of n included); the model predicts the probability ``p``; the
    study's discrepancy acts on the logit scale, ``logit p_s = logit p + delta``, integrated by
    quadrature over the normal (logit-normal binomial; ``tau = 0`` is the plain binomial).
``ordinal``
    ``k`` of ``n`` patients whose graded change passes a threshold ``c`` (e.g. improved by at least
    one Goodman–Baron grade): patients' changes are ``N(f + s delta, sd_p^2)`` with the reported
    between-patient SD ``sd_p``; ``p = Phi((c - f - s delta) / sd_p)`` (``direction = "below"``) or
    its complement; then binomial, integrated over ``delta`` as above.

**Log scale.** A row whose number is a level that cannot be negative (a duration, a depth, a
density, an absolute score: ``log = True``) is compared on the log scale, where the multiplicative
discrepancy is exact and symmetric::

    ln y_i = ln f_i + delta_sq + eps_i,   eps_i ~ N(0, sigma_i^2),   sigma_i^2 = ln(1 + (se_i/y_i)^2)

(the log-normal with the reported mean and SE; discrepancy scale 1, so ``tau`` keeps its meaning of
a relative discrepancy). On the natural scale with ``s_i = |y_i|`` a model 3x above an observation
of 4.5 h was penalised like one 1.7x below it, and replicated observations of hours or days could be
negative. Bounds (``upper``/``lower`` at b > 0) are censored on the log scale too. A non-positive
prediction of a log row is floored at ``LOG_FLOOR`` x y (effectively ruled out, but finite).

Each group's ``tau`` has a half-normal prior (scale from ``data/calibration/calibrate.toml``); the
sampler works in ``log tau`` (the Jacobian is added by :func:`log_prior_log_tau`).

Everything is vectorised over walkers (the leading axis ``W``). Only numpy and ``scipy.special``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from microneedling.errors import InputError

__all__ = [
    "KINDS",
    "LOG_FLOOR",
    "QUAD_NODES",
    "Likelihood",
    "RowSpec",
    "binomial_logpmf",
    "expit",
    "gaussian_block_loglik",
    "independent_loglik",
    "log_grid",
    "log_prior_log_tau",
    "logit",
    "ordinal_probability",
    "profile_fit",
    "profile_interval",
]

KINDS: tuple[str, ...] = ("gaussian", "upper", "lower", "binomial", "ordinal")
#: a non-positive prediction of a log-scale row is read as this fraction of the observation
LOG_FLOOR = 1e-12
#: quadrature nodes for the integrals over a study's discrepancy (count rows)
QUAD_NODES = 1601
_P_CLIP = 1e-12


@dataclass(frozen=True)
class RowSpec:
    """One calibration row as the likelihood sees it (values in the units of the prediction).

    ``observed`` is the reported value (a bound for ``upper``/``lower``; ``k/n`` for count rows),
    ``se`` the measurement SE (for ``ordinal``: the between-patient SD ``sd_p``), ``scale`` the
    discrepancy scale ``s_i``; ``group`` indexes the discrepancy scales ``tau``.
    """

    key: str
    kind: str
    study: str
    group: int
    observed: float
    se: float
    scale: float
    n: int = 0
    k: int = 0
    threshold: float = math.nan
    direction: str = "below"
    #: the read-out (observable) of the row: rows of one study, group and read-out share the
    #: study's discrepancy (e.g. one measure at 1 and 3 months); empty = the row alone
    readout: str = ""
    #: compared on the log scale (a positive level: module docstring)
    log: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"{self.key}.kind", self.kind, "one of " + ", ".join(KINDS))
        if self.kind in ("binomial", "ordinal"):
            if not (self.n >= 1 and 0 <= self.k <= self.n):
                raise InputError(f"{self.key}.k", f"{self.k} of {self.n}", "0 <= k <= n, n >= 1")
        if self.kind == "ordinal":
            if not (self.se > 0 and math.isfinite(self.threshold)):
                raise InputError(
                    f"{self.key}.sd", self.se, "a between-patient SD > 0 and a finite threshold"
                )
            if self.direction not in ("below", "above"):
                raise InputError(f"{self.key}.direction", self.direction, "'below' or 'above'")
        elif self.kind != "binomial" and not (self.se > 0 and math.isfinite(self.se)):
            raise InputError(f"{self.key}.se", self.se, "a finite standard error > 0")
        if not (self.scale >= 0 and math.isfinite(self.scale)):
            raise InputError(f"{self.key}.scale", self.scale, "a finite scale >= 0")
        if self.log and not (
            self.kind in ("gaussian", "upper", "lower")
            and self.observed > 0
            and math.isfinite(self.observed)
        ):
            raise InputError(
                f"{self.key}.log",
                f"{self.kind} row observed {self.observed}",
                "a log-scale row is a gaussian or bound row with a positive observation",
            )

    # the row on the scale its errors are normal on: (y, se, discrepancy scale)
    @property
    def normal_scale(self) -> tuple[float, float, float]:
        """(observation, SE, discrepancy scale) on the scale where the row's errors are normal:
        the natural scale, or for a log row (ln y, sqrt(ln(1 + (se/y)^2)), 1)."""
        if not self.log:
            return self.observed, self.se, self.scale
        return math.log(self.observed), math.sqrt(math.log1p((self.se / self.observed) ** 2)), 1.0

    def to_normal_scale(self, f: np.ndarray) -> np.ndarray:
        """Predictions on the row's normal scale (log rows: ln f, non-positive f floored)."""
        f = np.asarray(f, dtype=float)
        if not self.log:
            return f
        with np.errstate(invalid="ignore"):
            floored = np.where(f > 0, f, LOG_FLOOR * self.observed)
        out: np.ndarray = np.log(np.where(np.isnan(f), np.nan, floored))
        return out


# ------------------------------------------------------------------------------ building blocks
def gaussian_block_loglik(
    resid: np.ndarray, se: np.ndarray, scale: np.ndarray, tau: np.ndarray
) -> np.ndarray:
    """Log density of residuals ``resid`` (W, n) ~ N(0, diag(se^2) + tau^2 s s^T), per walker.

    Sherman–Morrison: with ``u = tau s`` and ``D = diag(se^2)``,
    ``r^T S^-1 r = sum r^2/se^2 - (sum r u/se^2)^2 / (1 + sum u^2/se^2)`` and
    ``log det S = sum log se^2 + log(1 + sum u^2/se^2)``.
    """
    r = np.asarray(resid, dtype=float)
    d = np.asarray(se, dtype=float) ** 2
    t = np.asarray(tau, dtype=float)[:, None]
    u = t * np.asarray(scale, dtype=float)[None, :]
    a = 1.0 + np.sum(u * u / d, axis=1)
    b = np.sum(r * u / d, axis=1)
    quad = np.sum(r * r / d, axis=1) - b * b / a
    logdet = np.sum(np.log(d)) + np.log(a)
    n = r.shape[1]
    out: np.ndarray = -0.5 * (n * math.log(2.0 * math.pi) + logdet + quad)
    return out


def independent_loglik(
    observed: ArrayLike, se: ArrayLike, bound: Sequence[str | None], predictions: ArrayLike
) -> np.ndarray:
    """Log-likelihood (G,) of rows measured independently, at each of G parameter values.

    ``predictions`` (G, n) are the model's values of n rows; row j is a Gaussian measurement of
    ``observed[j]`` with standard error ``se[j]`` (``bound[j]`` None), or a censored one: the
    reported value is an upper bound on the truth (``"upper"``: log Φ((y − f)/se)) or a lower one
    (``"lower"``: log Φ((f − y)/se)).
    """
    from scipy.special import log_ndtr

    y = np.asarray(observed, dtype=float)
    s = np.asarray(se, dtype=float)
    f = np.asarray(predictions, dtype=float)
    if f.ndim != 2 or f.shape[1] != y.shape[0] or len(bound) != y.shape[0]:
        raise ValueError(f"predictions: shape {f.shape}; allowed: (G, {y.shape[0]})")
    z = (f - y) / s
    terms = np.empty_like(z)
    for j, b in enumerate(bound):
        if b is None:
            terms[:, j] = -0.5 * (z[:, j] ** 2 + math.log(2.0 * math.pi * s[j] ** 2))
        elif b == "upper":
            terms[:, j] = log_ndtr(-z[:, j])
        elif b == "lower":
            terms[:, j] = log_ndtr(z[:, j])
        else:
            raise ValueError(f"bound[{j}]: {b!r}; allowed: None, 'upper' or 'lower'")
    out: np.ndarray = terms.sum(axis=1)
    return out


def binomial_logpmf(k: int, n: int, p: np.ndarray) -> np.ndarray:
    """``log C(n, k) p^k (1 - p)^(n - k)``, exact at p = 0 and 1 (``0 log 0 = 0``)."""
    from scipy.special import gammaln, xlog1py, xlogy

    p = np.asarray(p, dtype=float)
    c = gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
    out: np.ndarray = c + xlogy(k, p) + xlog1py(n - k, -p)
    return out


def ordinal_probability(
    mean: np.ndarray, threshold: float, sd: float, direction: str = "below"
) -> np.ndarray:
    """Fraction of patients whose change ``~ N(mean, sd^2)`` is ``<= threshold`` (``below``) or
    ``>= threshold`` (``above``): the ordered-probit map from a model mean to a graded count."""
    from scipy.special import ndtr

    z = (threshold - np.asarray(mean, dtype=float)) / sd
    out: np.ndarray = ndtr(z) if direction == "below" else ndtr(-z)
    return out


def _gh() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[g(Z)], Z ~ N(0, 1): the trapezoid rule on ``QUAD_NODES`` equally
    spaced points of [-10, 10] with the normal density (spectrally accurate for these smooth,
    fast-decaying integrands, and robust where Gauss–Hermite is not: a count likelihood that is
    narrow in z when tau is large)."""
    x = np.linspace(-10.0, 10.0, QUAD_NODES)
    w = np.exp(-0.5 * x * x)
    w[[0, -1]] *= 0.5
    return x, w / w.sum()


def profile_interval(
    grid: np.ndarray, loglik: np.ndarray, name: str, level: float = 0.95
) -> tuple[int, float, float]:
    """Maximum and profile-likelihood interval of a one-parameter log-likelihood on a grid.

    Returns the index of the maximum and the smallest and largest grid values whose log-likelihood
    lies within ``chi2_1(level) / 2`` of it (1.92 at 95%). Raises ``ValueError`` naming ``name``
    when the interval reaches an end of the grid (the grid does not bracket it).
    """
    from scipy.stats import chi2

    g = np.asarray(grid, dtype=float)
    ll = np.asarray(loglik, dtype=float)
    i = int(np.nanargmax(ll))
    keep = ll >= ll[i] - chi2.ppf(level, 1) / 2.0
    if keep[0] or keep[-1]:
        raise ValueError(
            f"the {100 * level:g}% profile interval of {name} reaches the end of the grid "
            f"({g[0]:.3g}-{g[-1]:.3g}): widen the grid"
        )
    inside = g[keep]
    return i, float(inside.min()), float(inside.max())


def log_grid(low: float, high: float, points_per_e: int) -> np.ndarray:
    """Log-spaced grid from ``low`` to ``high`` with ``points_per_e`` points per factor e (at
    least 2 points), for a one-parameter profile fit of a positive parameter."""
    if not 0.0 < low < high:
        raise ValueError(f"low, high: {low}, {high}; allowed: 0 < low < high")
    n = max(2, math.ceil(math.log(high / low) * points_per_e) + 1)
    out: np.ndarray = np.exp(np.linspace(math.log(low), math.log(high), n))
    return out


def profile_fit(
    observed: ArrayLike,
    se: ArrayLike,
    bound: Sequence[str | None],
    grid: ArrayLike,
    predictions: ArrayLike,
    name: str,
    level: float,
) -> tuple[int, float, float, np.ndarray]:
    """A one-parameter fit on a grid of rows measured independently: the index of the maximum,
    the ``level`` profile-likelihood interval (:func:`profile_interval`) and the log-likelihood
    at every grid value (:func:`independent_loglik`). ``predictions`` is (len(grid), rows);
    ``ValueError`` on another shape or when the interval reaches an end of the grid."""
    g = np.asarray(grid, dtype=float)
    pred = np.asarray(predictions, dtype=float)
    n = len(bound)
    if pred.shape != (len(g), n):
        raise ValueError(f"predictions: shape {pred.shape}; allowed: {(len(g), n)}")
    ll = independent_loglik(observed, se, bound, pred)
    i, low, high = profile_interval(g, ll, name, level)
    return i, low, high, ll


def logit(p: np.ndarray, eps: float = _P_CLIP) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [eps, 1 - eps]."""
    q = np.clip(p, eps, 1.0 - eps)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


def expit(x: np.ndarray) -> np.ndarray:
    """The inverse of :func:`logit` (tanh form: no overflow)."""
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def log_prior_log_tau(log_tau: np.ndarray, prior_scale: np.ndarray) -> np.ndarray:
    """Log density of ``log tau`` when ``tau ~ HalfNormal(prior_scale)`` (per walker, summed over
    groups): ``log(2/(sigma sqrt(2 pi))) - tau^2/(2 sigma^2) + log tau`` (the last term is the
    Jacobian of ``tau = exp(log tau)``)."""
    lt = np.asarray(log_tau, dtype=float)
    sig = np.asarray(prior_scale, dtype=float)
    tau = np.exp(lt)
    terms = math.log(2.0) - np.log(sig * math.sqrt(2.0 * math.pi)) - tau**2 / (2 * sig**2) + lt
    out: np.ndarray = np.sum(terms, axis=-1)
    return out


# ---------------------------------------------------------------------------------- the model
class Likelihood:
    """The calibration rows' joint log-likelihood given predictions and discrepancy scales.

    ``specs`` in row order (the columns of the prediction array); ``n_groups`` discrepancy groups.
    """

    def __init__(self, specs: Sequence[RowSpec], n_groups: int) -> None:
        self.specs = tuple(specs)
        self.n_groups = int(n_groups)
        for s in self.specs:
            if not 0 <= s.group < self.n_groups:
                raise InputError(f"{s.key}.group", s.group, f"0 .. {self.n_groups - 1}")
        self.studies: tuple[str, ...] = tuple(dict.fromkeys(s.study for s in self.specs))
        blocks: dict[tuple[str, int, str], list[int]] = {}
        for i, s in enumerate(self.specs):
            if s.kind == "gaussian":
                blocks.setdefault((s.study, s.group, s.readout or s.key), []).append(i)
        self._blocks = [(st, g, np.array(ix)) for (st, g, _), ix in blocks.items()]
        self._gh = _gh()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.specs)

    def _row_tau(self, tau: np.ndarray, i: int) -> np.ndarray:
        return np.asarray(tau[:, self.specs[i].group], dtype=float)

    def by_study(self, pred: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Log-likelihood per study (W, S), studies in :attr:`studies` order. Gaussian rows are
        exact multivariate blocks within a study; other rows are independent given tau.
        A non-finite prediction gives ``-inf`` for its study."""
        from scipy.special import log_ndtr, logsumexp

        pred = np.atleast_2d(np.asarray(pred, dtype=float))
        tau = np.atleast_2d(np.asarray(tau, dtype=float))
        W = pred.shape[0]
        if tau.shape != (W, self.n_groups):
            raise InputError("tau", f"shape {tau.shape}", f"shape ({W}, {self.n_groups})")
        out = np.zeros((W, len(self.studies)))
        col = {s: j for j, s in enumerate(self.studies)}
        for study, g, ix in self._blocks:
            norm = np.array([self.specs[i].normal_scale for i in ix])
            y, se, sc = norm[:, 0], norm[:, 1], norm[:, 2]
            f = np.column_stack([self.specs[i].to_normal_scale(pred[:, i]) for i in ix])
            with np.errstate(invalid="ignore"):
                ll = gaussian_block_loglik(y[None, :] - f, se, sc, tau[:, g])
            # a log row's density in y: the Jacobian 1/y of the log
            ll = ll - sum(y[j] for j, i in enumerate(ix) if self.specs[i].log)
            ll = np.where(np.all(np.isfinite(f), axis=1), ll, -np.inf)
            out[:, col[study]] += ll
        x, w = self._gh
        logw = np.log(w)
        for i, s in enumerate(self.specs):
            if s.kind == "gaussian":
                continue
            f = pred[:, i]
            t = self._row_tau(tau, i)
            if s.kind in ("upper", "lower"):
                yb, seb, scb = s.normal_scale
                fn = s.to_normal_scale(f)
                sd = np.sqrt(seb**2 + (t * scb) ** 2)
                z = (yb - fn) / sd if s.kind == "upper" else (fn - yb) / sd
                with np.errstate(invalid="ignore"):
                    ll = log_ndtr(z)
            elif s.kind == "binomial":
                lp = logit(f)[:, None] + t[:, None] * x[None, :]
                ll = logsumexp(binomial_logpmf(s.k, s.n, expit(lp)) + logw[None, :], axis=1)
            else:  # ordinal
                mean = f[:, None] + (t * s.scale)[:, None] * x[None, :]
                p = ordinal_probability(mean, s.threshold, s.se, s.direction)
                ll = logsumexp(binomial_logpmf(s.k, s.n, p) + logw[None, :], axis=1)
            ok = np.isfinite(f) if s.kind != "binomial" else np.isfinite(f) & (f >= 0) & (f <= 1)
            out[:, col[s.study]] += np.where(ok, np.nan_to_num(ll, nan=-np.inf), -np.inf)
        return out

    def __call__(self, pred: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Total log-likelihood per walker (W,)."""
        out: np.ndarray = np.sum(self.by_study(pred, tau), axis=1)
        return out

    # ------------------------------------------------------------------------- implausibility
    def implausibility(self, pred: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """History-matching implausibility (W, R): the distance of the observation from the model
        in standard deviations of everything that separates them (measurement, discrepancy).

        Gaussian rows ``|y - f| / sqrt(se^2 + tau^2 s^2)`` (log rows on the log scale); bounds the
        one-sided excess (0 when the bound holds); count rows the normal score of the two-sided
        mid-p value of the observed count under the logit-normal binomial (0 at the median).
        """
        from scipy.special import ndtri

        pred = np.atleast_2d(np.asarray(pred, dtype=float))
        tau = np.atleast_2d(np.asarray(tau, dtype=float))
        out = np.empty(pred.shape)
        for i, s in enumerate(self.specs):
            f = pred[:, i]
            t = self._row_tau(tau, i)
            if s.kind in ("gaussian", "upper", "lower"):
                y, se, sc = s.normal_scale
                sd = np.sqrt(se**2 + (t * sc) ** 2)
                e = (s.to_normal_scale(f) - y) / sd
                if s.kind == "upper":
                    e = np.maximum(e, 0.0)
                elif s.kind == "lower":
                    e = np.minimum(e, 0.0)
                out[:, i] = np.abs(e)
            else:
                below, at = self._count_tails(s, f, t)
                mid = below + 0.5 * at
                out[:, i] = np.abs(ndtri(np.clip(np.minimum(mid, 1.0 - mid), 1e-300, 0.5)))
            out[~np.isfinite(f), i] = np.inf
        return out

    def _count_tails(
        self, s: RowSpec, f: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(K < k), P(K = k)) under the count row's predictive, per walker."""
        from scipy.special import bdtr

        x, w = self._gh
        if s.kind == "binomial":
            p = expit(logit(f)[:, None] + t[:, None] * x[None, :])
        else:
            mean = f[:, None] + (t * s.scale)[:, None] * x[None, :]
            p = ordinal_probability(mean, s.threshold, s.se, s.direction)
        below = bdtr(s.k - 1, s.n, p) if s.k > 0 else np.zeros_like(p)
        at = np.exp(binomial_logpmf(s.k, s.n, p))
        return below @ w, at @ w

    # ---------------------------------------------------------------------------- predictive
    def predictive(
        self, i: int, f: np.ndarray, tau: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Replicated observations of row ``i`` (D,) given predictions ``f`` (D,) and the row's
        group's tau (D,): a new study mean (continuous rows) or a new count ``k`` (count rows)."""
        s = self.specs[i]
        f = np.asarray(f, dtype=float)
        t = np.asarray(tau, dtype=float)
        z = rng.standard_normal(f.shape)
        if s.kind in ("gaussian", "upper", "lower"):
            _, se, sc = s.normal_scale
            out: np.ndarray = s.to_normal_scale(f) + t * sc * z + se * rng.standard_normal(f.shape)
            return np.exp(out) if s.log else out
        if s.kind == "binomial":
            p = expit(logit(f) + t * z)
        else:
            p = ordinal_probability(f + t * s.scale * z, s.threshold, s.se, s.direction)
        counts: np.ndarray = rng.binomial(s.n, np.clip(np.nan_to_num(p), 0.0, 1.0)).astype(float)
        return counts

    def pit(self, i: int, f: np.ndarray, tau: np.ndarray) -> float:
        """Probability integral transform of the observation of row ``i`` under the predictive
        mixture over draws ``f`` (D,) with discrepancy ``tau`` (D,): ``P(Y <= y)`` for continuous
        rows (a bound row's value is its bound), the mid-p ``P(K < k) + P(K = k)/2`` for counts."""
        from scipy.special import ndtr

        s = self.specs[i]
        f = np.asarray(f, dtype=float)
        t = np.asarray(tau, dtype=float)
        ok = np.isfinite(f)
        if not np.any(ok):
            return math.nan
        f, t = f[ok], t[ok]
        if s.kind in ("gaussian", "upper", "lower"):
            y, se, sc = s.normal_scale
            sd = np.sqrt(se**2 + (t * sc) ** 2)
            return float(np.mean(ndtr((y - s.to_normal_scale(f)) / sd)))
        below, at = self._count_tails(s, f, t)
        return float(np.mean(below + 0.5 * at))

    def describe(self) -> list[dict[str, Any]]:
        """Plain data of every row spec (for the summary files)."""
        return [
            {
                "key": s.key,
                "kind": s.kind,
                "study": s.study,
                "group": s.group,
                "observed": s.observed,
                "se": s.se,
                "scale": s.scale,
                "readout": s.readout,
                "log": s.log,
                **({"n": s.n, "k": s.k} if s.kind in ("binomial", "ordinal") else {}),
                **(
                    {"threshold": s.threshold, "direction": s.direction}
                    if s.kind == "ordinal"
                    else {}
                ),
            }
            for s in self.specs
        ]
