"""Parameter uncertainty: draws from the calibration's posterior samples and from the prior intervals.

Every parameter with a plausible interval (``low``/``high`` in its file, read as 5th/95th
percentiles) is uncertain. The shipped calibration (``data/calibration/current.toml``, a copy of
``posterior-<hash>.toml``, with its samples in ``posterior-<hash>.npz``) holds posterior samples of
the parameters the calibration data inform; an ensemble draws those **jointly, as whole rows of the
samples**, and every other uncertain parameter independently from its prior (a split normal, in log
space when positive). The calibration study (:mod:`microneedling.studies.credibility.calibrate`)
writes the files; this module only reads them.

A posterior sample stores each calibrated parameter as the standard-normal score ``z`` of its
pre-calibration prior (recorded in the summary), so a sample is turned into values by the same
split normal the prior uses (:func:`split_normal_value`); members of a tie share one ``z``; keyed
parameters move all entries with one ``z``.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.errors import InputError, ParameterError
from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import ParameterSet, Value

__all__ = [
    "CURRENT",
    "Posterior",
    "calibration_dir",
    "draw_indices",
    "ensemble_sets",
    "load_calibration",
    "load_posterior",
    "posterior_hash",
    "posterior_members",
    "posterior_nominal",
    "posterior_statistics",
    "sample_parameter_sets",
    "samples_hash",
    "shipped_calibration",
    "shipped_posterior",
    "split_normal_value",
]

CURRENT = "current.toml"
Z95 = 1.6448536269514722  # 95th percentile of N(0, 1)


def calibration_dir() -> Path:
    """``src/microneedling/data/calibration`` (protocols, settings, shipped posterior)."""
    return data_path("calibration")


def load_calibration(path: Path | None = None) -> dict[str, Any]:
    """A stored posterior summary (default: the shipped ``current.toml``)."""
    return read_toml(path or calibration_dir() / CURRENT)


# ----------------------------------------------------------------------------- the posterior
def samples_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of sample arrays (names, dtypes, shapes and bytes, in name order): the content
    hash the posterior files are named by."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _value_at(prior: dict[str, Any], z: float) -> Any:
    v, lo, hi = prior["value"], prior["low"], prior["high"]
    if isinstance(v, dict):
        return {k: split_normal_value(v[k], lo[k], hi[k], z) for k in v}
    return split_normal_value(float(v), float(lo), float(hi), z)


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def posterior_statistics(
    x: np.ndarray,
    factors: list[dict[str, Any]],
    groups: list[str],
    nuisances: list[dict[str, Any]],
) -> dict[str, Any]:
    """Summary statistics of posterior samples ``x`` (N, P + Q + M), rounded as they are shipped:
    per calibrated factor the mean/SD of ``z`` (the SD is the posterior/prior SD ratio, prior SD 1)
    and the 5/50/95% values of each scalar member; per group the 5/50/95% of tau; per nuisance
    setting the 5/50/95% of its value; the correlation matrix of the coordinates."""
    from scipy.special import ndtr

    P, Q = len(factors), len(groups)
    out: dict[str, Any] = {
        "n_samples": int(x.shape[0]),
        "factors": [],
        "groups": [],
        "nuisances": [],
    }
    for j, f in enumerate(factors):
        z = x[:, j]
        q05, q50, q95 = np.percentile(z, [5, 50, 95])
        entry: dict[str, Any] = {
            "label": f["label"],
            "z_mean": _sig(float(np.mean(z))),
            "z_sd": _sig(float(np.std(z, ddof=1))) if len(z) > 1 else 0.0,
            "z_median": _sig(float(q50)),
            "members": [],
        }
        for prior in f["prior"]:
            if isinstance(prior["value"], dict):
                entry["members"].append({"member": prior["member"], "keyed": True})
                continue
            lo, med, hi = (_sig(float(_value_at(prior, float(q)))) for q in (q05, q50, q95))
            entry["members"].append(
                {"member": prior["member"], "median": med, "low": lo, "high": hi}
            )
        out["factors"].append(entry)
    for j, g in enumerate(groups):
        tau = np.exp(x[:, P + j])
        lo, med, hi = np.percentile(tau, [5, 50, 95])
        out["groups"].append(
            {"group": g, "tau_median": _sig(med), "tau_low": _sig(lo), "tau_high": _sig(hi)}
        )
    for j, nu in enumerate(nuisances):
        u = x[:, P + Q + j]
        q = ndtr(u)
        if nu["integer"]:
            lo_i, hi_i = math.ceil(nu["low"]), math.floor(nu["high"])
            v = np.minimum(lo_i + np.floor(q * (hi_i - lo_i + 1)), hi_i)
        else:
            v = nu["low"] + (nu["high"] - nu["low"]) * q
        lo, med, hi = np.percentile(v, [5, 50, 95])
        out["nuisances"].append(
            {"label": nu["label"], "median": _sig(med), "low": _sig(lo), "high": _sig(hi)}
        )
    if x.shape[0] > 1 and x.shape[1] > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.corrcoef(x.T)
        out["correlation"] = [[_sig(float(v), 4) if np.isfinite(v) else 0.0 for v in r] for r in c]
    return out


@dataclass(frozen=True)
class Posterior:
    """Shipped posterior samples with the description needed to use them.

    ``x`` (N, P + Q + M): the ``z`` of each calibrated factor, ``log tau`` of each discrepancy group
    and the normal score ``u`` of each nuisance setting. ``summary`` is the TOML summary.
    """

    version: str
    summary: dict[str, Any]
    x: np.ndarray

    @property
    def factors(self) -> list[dict[str, Any]]:
        return list(self.summary["factors"])

    @property
    def groups(self) -> list[str]:
        return [g["name"] for g in self.summary.get("groups", [])]

    @property
    def nuisances(self) -> list[dict[str, Any]]:
        return list(self.summary.get("nuisances", []))

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def members(self) -> list[str]:
        return [p["member"] for f in self.factors for p in f["prior"]]

    def values(self, i: int) -> dict[str, Any]:
        """Every calibrated member's value in sample ``i``."""
        out: dict[str, Any] = {}
        for j, f in enumerate(self.factors):
            for prior in f["prior"]:
                out[prior["member"]] = _value_at(prior, float(self.x[i, j]))
        return out

    @cached_property
    def _median_z(self) -> tuple[float, ...]:
        """Each factor's posterior median ``z`` (computed once: every simulate asks for them)."""
        return tuple(float(np.median(self.x[:, j])) for j in range(len(self.factors)))

    def nominal(self) -> dict[str, Any]:
        """Every calibrated member's value at its factor's posterior median ``z`` (a new dict each
        call)."""
        out: dict[str, Any] = {}
        for f, zm in zip(self.factors, self._median_z, strict=True):
            for prior in f["prior"]:
                out[prior["member"]] = _value_at(prior, zm)
        return out

    def tau(self) -> np.ndarray:
        """(N, Q) discrepancy scales per group."""
        P = len(self.factors)
        out: np.ndarray = np.exp(self.x[:, P : P + len(self.groups)])
        return out

    def tau_of(self, group: str) -> np.ndarray | None:
        """The samples of one group's tau, or ``None`` if the calibration had no such group."""
        g = self.groups
        return self.tau()[:, g.index(group)] if group in g else None

    def statistics(self) -> dict[str, Any]:
        """:func:`posterior_statistics` of the samples (what the summary ships)."""
        return posterior_statistics(
            self.x,
            self.factors,
            self.groups,
            self.nuisances,
        )


def load_posterior(path: Path | None = None, summary: dict[str, Any] | None = None) -> Posterior:
    """The posterior of a summary file (default: the shipped ``current.toml``) with its samples;
    the samples' content hash must match the one recorded (a :class:`ParameterError` otherwise).
    ``summary``: the file's contents when the caller has read it already (parsing the shipped
    summary takes ~15 ms)."""
    p = path or calibration_dir() / CURRENT
    if summary is None:
        summary = read_toml(p)
    if "samples" not in summary:
        raise ParameterError(f"{p}: not a posterior summary (no 'samples' file named)")
    npz = p.parent / summary["samples"]
    with np.load(npz, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    digest = samples_hash(arrays)
    if digest != summary.get("samples_sha256"):
        raise ParameterError(
            f"{npz}: content hash {digest[:12]} differs from the summary's "
            f"{str(summary.get('samples_sha256'))[:12]}"
        )
    return Posterior(version=str(summary["version"]), summary=summary, x=arrays["x"])


@lru_cache(maxsize=1)
def shipped_calibration() -> Posterior | None:
    """The shipped posterior, read once; ``None`` if there is none. A writer of the calibration
    files calls ``shipped_calibration.cache_clear()``."""
    p = calibration_dir() / CURRENT
    if not p.exists():
        return None  # no calibration shipped
    summary = read_toml(p)
    if "samples" not in summary:
        return None  # a file of the old least-squares format
    if summary.get("left_out"):
        raise ParameterError(
            f"{p}: a cross-validation refit (left out {', '.join(summary['left_out'])}), not a "
            "calibration of every study: ship a full `microneedling calibrate` run instead"
        )
    return load_posterior(p, summary)


def posterior_hash() -> str:
    """The content hash of the shipped posterior's samples (``samples_sha256`` of its summary),
    ``""`` when none is shipped: what a result drawn from the posterior records and a resume
    fingerprint compares (another posterior gives other numbers)."""
    post = shipped_calibration()
    return "" if post is None else str(post.summary.get("samples_sha256", ""))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and set(a) == set(b)
            and all(_same(a[k], b[k]) for k in a)
        )
    return isinstance(a, float | int) and math.isclose(float(a), float(b), rel_tol=1e-5)


def shipped_posterior(ps: ParameterSet) -> Posterior | None:
    """The shipped posterior if ``ps`` is a set it applies to, else ``None``.

    It applies when every calibrated member exists in ``ps`` with the posterior's nominal value
    (the value ``calibrate --write-values`` puts in the file), or with the value the parameter
    file held when the calibration ran (its prior mode) and ``ps`` is the parameter set the
    calibration was fitted to (its recorded ``parameter_set_hash``: a posterior of other files,
    e.g. of an earlier model, is not a posterior of this one; the acceptance limits, which no
    equation reads, do not count). An edited value means the user
    asked for that value: the set's intervals are then sampled independently.
    """
    post = shipped_calibration()
    if post is None:
        return None
    nominal = post.nominal()
    written = all(
        p["member"] in ps.parameters
        and _same(ps.parameters[p["member"]].value, nominal[p["member"]])
        for f in post.factors
        for p in f["prior"]
    )
    if not written and not _fitted_to(ps, post):
        # fitted to other parameter files (another model or other priors): its samples are not a
        # posterior of this set (the values `calibrate --write-values` wrote are accepted)
        return None
    for f in post.factors:
        for prior in f["prior"]:
            name = prior["member"]
            if name not in ps.parameters:
                return None
            v = ps.parameters[name].value
            accepted = [prior["value"], nominal[name]]
            if "file_value" in prior:
                accepted.append(prior["file_value"])
            if not any(_same(v, a) for a in accepted):
                return None
    return post


def _fitted_to(ps: ParameterSet, post: Posterior) -> bool:
    """Whether ``post`` was fitted to ``ps``'s model: its recorded ``model_parameter_hash`` is
    one of :func:`_fitted_hashes` (model hashes, blind to the acceptance limits no equation reads:
    :data:`~microneedling.parameters.parameter_set.ACCEPTANCE_LIMITS`); a posterior written before
    that field existed is compared by its ``parameter_set_hash`` (every parameter)."""
    recorded = post.summary.get("model_parameter_hash")
    if recorded:
        return recorded in _fitted_hashes(ps, post, model=True)
    return post.summary.get("parameter_set_hash") in _fitted_hashes(ps, post, model=False)


def _fitted_hashes(ps: ParameterSet, post: Posterior, *, model: bool) -> set[str]:
    """The hashes a posterior fitted to ``ps`` may record: the set itself, and the set with every
    calibrated member at its prior mode (the base the calibration evaluates its factors around and
    records; it differs from the files wherever a member's file value is not its prior mode, e.g.
    after ``--write-values``). ``model``: :attr:`ParameterSet.model_hash` instead of ``hash``."""
    at_prior = {
        p["member"]: p["value"]
        for f in post.factors
        for p in f["prior"]
        if p["member"] in ps.parameters
    }
    key = (ps.hash, json.dumps(at_prior, sort_keys=True))
    if key not in _AT_PRIOR_HASH:
        try:
            base = ps.with_values(at_prior)
            _AT_PRIOR_HASH[key] = (base.hash, base.model_hash)
        except (InputError, ParameterError):  # a prior outside today's domain: another set
            _AT_PRIOR_HASH[key] = ("", "")
    own = ps.model_hash if model else ps.hash
    return {own, _AT_PRIOR_HASH[key][int(model)]} - {""}


_AT_PRIOR_HASH: dict[tuple[str, str], tuple[str, str]] = {}
"""Hash and model hash of a set with given members at given values, by (set hash, values): a few entries per
process (one per parameter set and posterior), so a simulate does not rebuild the set each time."""


def posterior_members(post: Posterior) -> dict[str, dict[str, Any]]:
    """Each calibrated scalar member's posterior median and 5-95% interval (file units), from the
    summary's statistics; keyed members are left out (their samples are whole tables)."""
    out: dict[str, dict[str, Any]] = {}
    for f in post.summary.get("statistics", {}).get("factors", []):
        for m in f.get("members", []):
            if not m.get("keyed") and {"median", "low", "high"} <= set(m):
                out[m["member"]] = {"median": m["median"], "low": m["low"], "high": m["high"]}
    return out


def posterior_nominal(ps: ParameterSet) -> ParameterSet:
    """The nominal set of an ensemble drawn by :func:`sample_parameter_sets`: ``ps`` with every
    calibrated member at the shipped posterior's median (:meth:`Posterior.nominal`, inside the
    member's physical domain) when the posterior applies to ``ps`` (:func:`shipped_posterior`);
    ``ps`` itself otherwise. The nominal value is then the centre of the same posterior its draws
    sample, not the prior's mode (with a posterior away from the prior, the prior's nominal could
    fall outside its own 10-90% band)."""
    post = shipped_posterior(ps)
    if post is None:
        return ps
    values: dict[str, Any] = {}
    for n, v in post.nominal().items():
        if n not in ps.parameters:
            continue
        dom = ps.parameters[n].domain
        values[n] = {k: dom.clip(x) for k, x in v.items()} if isinstance(v, dict) else dom.clip(v)
    return ps.with_values(values, label=f"{ps.label}+posterior")


# ----------------------------------------------------------------------- uncertainty
def draw_indices(n_samples: int, draws: int, seed: int) -> np.ndarray:
    """Which posterior samples an ensemble of ``draws`` uses (with replacement, seeded; the first
    k indices are the same for any ``draws >= k``)."""
    ss = np.random.SeedSequence([int(seed) % 2**63, zlib.crc32(b"posterior-samples")])
    out: np.ndarray = np.random.default_rng(ss).integers(0, n_samples, size=draws)
    return out


def sample_parameter_sets(
    ps: ParameterSet, draws: int, seed: int, *, posterior: bool = True
) -> list[ParameterSet]:
    """``draws`` parameter sets: the calibrated parameters as whole posterior samples, every other
    uncertain parameter from its plausible interval.

    Calibrated parameters (those of the shipped posterior, when :func:`shipped_posterior` accepts
    ``ps``) take the values of posterior sample ``draw_indices(...)[d]``, jointly (correlations,
    ties and keyed entries as sampled). The others: ``low``/``high`` read as 5th/95th percentiles
    of a split normal — in log space when both are positive; keyed parameters with one common z per
    parameter.

    Each prior parameter has its own random stream, seeded by ``(seed, crc32(name))``: a
    parameter's draws do not change when other parameters are added to or removed from the set, and
    the first k draws are the same for any ``draws >= k``. ``posterior=False`` samples every
    parameter from its prior interval (the ensemble without the calibration, for comparison).

    A value past its parameter's physical bound (a split-normal tail) stops at it
    (:meth:`~microneedling.parameters.parameter_set.Domain.clip`). The draws are computed column by
    column (one parameter entry over all draws, each value by :func:`split_normal_value`'s
    arithmetic) and the sets built by :func:`ensemble_sets`, which validates them all at once:
    the same sets, bit for bit, as ``ps.with_values(values_d, label=f"{ps.label}#draw{d}")`` of
    each draw's values (tested), without re-validating ~170 values per draw one by one.
    """
    names = [n for n in ps.names() if ps.parameters[n].low is not None]
    z = np.empty((draws, len(names)))
    for j, n in enumerate(names):
        ss = np.random.SeedSequence([int(seed) % 2**63, zlib.crc32(n.encode())])
        z[:, j] = np.random.default_rng(ss).standard_normal(draws)
    post = shipped_posterior(ps) if draws > 0 and posterior else None
    calibrated = set(post.members) if post is not None else set()
    # every sampled entry, (name, key or None) -> its values over the draws; a keyed parameter's
    # keys in the order its value lists them
    columns: dict[str, dict[str | None, np.ndarray]] = {}
    for j, n in enumerate(names):
        if n not in calibrated:
            p = ps.parameters[n]
            columns[n] = _columns_at(p.value, p.low, p.high, z[:, j])
    if post is not None:
        zs = post.x[draw_indices(post.n_samples, draws, seed)]  # (draws, P + Q + M)
        for j, f in enumerate(post.factors):
            for prior in f["prior"]:
                if prior["member"] in ps.parameters:
                    columns[prior["member"]] = _columns_at(
                        prior["value"], prior["low"], prior["high"], zs[:, j]
                    )
    entries = [(n, k) for n, by_key in columns.items() for k in by_key]
    x = np.empty((draws, len(entries)))
    for e, (n, k) in enumerate(entries):
        x[:, e] = columns[n][k]
    x = _clip_to_domains(ps, entries, x)  # a split-normal tail past a physical bound stops at it
    return ensemble_sets(ps, entries, x, [f"{ps.label}#draw{d}" for d in range(draws)])


def _columns_at(v: Any, lo: Any, hi: Any, z: np.ndarray) -> dict[str | None, np.ndarray]:
    """:func:`_value_at` over a column of scores ``z``: each entry's values, ``{None: column}`` of
    a scalar parameter, ``{key: column}`` of a keyed one (in the order of ``v``'s keys)."""
    if isinstance(v, dict):
        return {k: _split_normal_column(v[k], lo[k], hi[k], z) for k in v}
    return {None: _split_normal_column(float(v), float(lo), float(hi), z)}


def _split_normal_column(v: float, lo: float, hi: float, z: np.ndarray) -> np.ndarray:
    """``[split_normal_value(v, lo, hi, t) for t in z]``, the same numbers bit for bit: the scales
    computed once, the exponential of the log-space branch by :func:`math.exp` value by value
    (NumPy's vectorised ``exp`` may differ from the C library's in the last bit)."""
    q = Z95
    if lo > 0 and v > 0 and hi > 0:
        s_lo, s_hi = math.log(v / lo) / q, math.log(hi / v) / q
        exp = math.exp
        return np.array([v * exp(t * (s_lo if t < 0 else s_hi)) for t in z.tolist()], dtype=float)
    s_lo, s_hi = (v - lo) / q, (hi - v) / q
    out: np.ndarray = v + z * np.where(z < 0, s_lo, s_hi)  # IEEE products and sums: exact
    return out.astype(float, copy=False)


def _domain_bounds(
    ps: ParameterSet, entries: Sequence[tuple[str, str | None]]
) -> tuple[np.ndarray, ...]:
    """Per entry: its parameter's domain as arrays (low, high, low open, high open, integer)."""
    doms = [ps.parameters[n].domain for n, _ in entries]
    return (
        np.array([d.low for d in doms], dtype=float),
        np.array([d.high for d in doms], dtype=float),
        np.array([d.low_open for d in doms], dtype=bool),
        np.array([d.high_open for d in doms], dtype=bool),
        np.array([d.integer for d in doms], dtype=bool),
    )


def _inside(
    ps: ParameterSet, entries: Sequence[tuple[str, str | None]], x: np.ndarray
) -> np.ndarray:
    """(draws, E) whether each value lies in its parameter's domain: :meth:`Domain.contains` of
    every value at once (finite; an integer where the domain asks for one; above the lower and
    below the upper bound, open or closed)."""
    low, high, low_open, high_open, integer = _domain_bounds(ps, entries)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x)
        whole = ~integer | (np.floor(x) == x)
        above = np.where(low_open, x > low, x >= low)
        below = np.where(high_open, x < high, x <= high)
    ok: np.ndarray = finite & whole & above & below
    return ok


def _clip_to_domains(
    ps: ParameterSet, entries: Sequence[tuple[str, str | None]], x: np.ndarray
) -> np.ndarray:
    """``x`` with every value outside its parameter's domain moved into it by
    :meth:`Domain.clip` (value by value: few are outside; NaN raises as ``clip`` does)."""
    rows, cols = np.nonzero(~_inside(ps, entries, x))
    if rows.size == 0:
        return x
    x = x.copy()
    for i, e in zip(rows.tolist(), cols.tolist(), strict=True):
        x[i, e] = ps.parameters[entries[e][0]].domain.clip(float(x[i, e]))
    return x


def ensemble_sets(
    ps: ParameterSet,
    entries: Sequence[tuple[str, str | None]],
    x: np.ndarray,
    labels: Sequence[str],
) -> list[ParameterSet]:
    """One set per row of ``x``: ``ps`` with the values of ``entries`` replaced, validated once for
    the whole ensemble, then built without per-value checks
    (:meth:`~microneedling.parameters.parameter_set.ParameterSet.with_validated_values`).

    Parameters
    ----------
    ps:
        The base set.
    entries:
        (E,) the parameter entries drawn: ``(name, None)`` for a scalar parameter, ``(name, key)``
        for each key of a keyed one (every key, in the order its values are to be listed).
    x:
        (draws, E) float values in each parameter's file units.
    labels:
        (draws,) the sets' labels.

    Row ``d`` gives the set ``ps.with_values(values_d, labels[d])`` would (tested), and the same
    refusals: an unknown name is a :class:`ParameterError`; a scalar/keyed mismatch a
    :class:`ParameterError`, other keys an :class:`InputError`, as ``with_values`` words them; a
    value that is not finite or is outside its domain the :class:`InputError` ``with_values``
    raises for it (the first such value, draw by draw).
    """
    x = np.asarray(x)
    if x.dtype != np.float64 or x.ndim != 2 or x.shape != (len(labels), len(entries)):
        raise InputError(
            "x", f"{x.dtype} array of shape {x.shape}", f"float64, ({len(labels)}, {len(entries)})"
        )
    keys: dict[str, list[str | None]] = {}
    for n, k in entries:
        keys.setdefault(n, []).append(k)
    for n, ks in keys.items():
        old = ps.parameters.get(n) or ps.parameter(n)  # (raises if unknown)
        if isinstance(old.value, dict) != (ks[0] is not None):
            raise ParameterError(f"{n}: new value must have the shape of the old one")
        if isinstance(old.value, dict) and (
            None in ks or len(set(ks)) != len(ks) or set(ks) != set(old.value)
        ):
            raise InputError(n, sorted(map(str, ks)), f"the keys {sorted(old.value)}")
        if not isinstance(old.value, dict) and len(ks) != 1:
            raise InputError(n, f"{len(ks)} entries", "one value (a scalar parameter)")
    bad = np.argwhere(~_inside(ps, entries, x))
    if bad.size:
        d, e = (int(i) for i in bad[0])  # the first, draw by draw
        n, k = entries[e]
        ps.parameters[n].check_value(float(x[d, e]), f"{n}.{k}" if k is not None else n)
    scalar = [(e, n) for e, (n, k) in enumerate(entries) if k is None]
    keyed: dict[str, list[tuple[int, str]]] = {}
    for e, (n, k) in enumerate(entries):
        if k is not None:
            keyed.setdefault(n, []).append((e, k))
    out = []
    for row, label in zip(x.tolist(), labels, strict=True):  # Python floats, the same bits
        values: dict[str, Value] = {n: row[e] for e, n in scalar}
        for n, by_key in keyed.items():
            values[n] = {k: row[e] for e, k in by_key}
        out.append(ps.with_validated_values(values, label))
    return out


def split_normal_value(v: float, lo: float, hi: float, z: float) -> float:
    """The value at standard-normal score ``z`` of a split normal with mode ``v`` whose 5th and
    95th percentiles are ``lo`` and ``hi`` (in log space when all three are positive)."""
    q = Z95
    if lo > 0 and v > 0 and hi > 0:
        s = math.log(v / lo) / q if z < 0 else math.log(hi / v) / q
        return v * math.exp(z * s)
    s = (v - lo) / q if z < 0 else (hi - v) / q
    return v + z * s
