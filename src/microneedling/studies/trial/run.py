"""In-silico trials: a virtual population, two or more protocols (arms), end points, statistics.

A trial is a TOML file (examples in ``examples/trials/``)::

    [trial]
    name = "Roller 1.5 mm vs pen 1.0 mm for acne scars"
    design = "parallel"            # or "split-face": the same patients get both arms, one per side
    n_per_arm = 500
    seed = 7
    population = "acne-scar-adults"          # a preset, a population TOML (path from this file),
                                             # or an inline table in the population format
    control = "roller"                       # arm the others are compared with (default: the first)
    time_points = [90, 180, 365]             # end points without @ are read at each of these days
    endpoints = [
      { name = "scar_depth:reduction", responder_above = 25.0 },   # responders: >= 25 % reduction
      "collagen_change",
      "erythema_days",
    ]

    [[arms]]
    name = "roller"
    course = "../acne-scars-rolling-cheek.toml"   # a course file: its patient is replaced

    [[arms]]
    name = "pen"
    [arms.protocol]                               # or inline: a course without a patient
    ...

Each virtual patient gets the arm's course with their own age, sex, Fitzpatrick type, conditions
(from the population, replacing the course's) and healing factors; patients are simulated in chunks,
each chunk one :func:`~microneedling.simulation.simulate_batch` call (no per-patient solver call),
on the executor of :mod:`microneedling.executor`. Only per-patient end points and per-arm streaming
summaries of trajectories (count, mean, variance per time, merged with Chan's formula) leave a chunk,
so memory does not grow with the number of patients beyond the end-point table itself.

End points use :mod:`microneedling.endpoints`. If a patient's course has several sites, the
patient's end point is the mean over the sites.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.course.model import Course, dumps_toml
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import EndpointSpec, endpoint_values, parse_endpoint
from microneedling.engine.executor import ChunkStore, map_chunks, validate_executor
from microneedling.errors import CourseValidationError, InputError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.trial.population import Population, load_population, sample_patients

__all__ = [
    "DESIGNS",
    "Arm",
    "ChunkResult",
    "ChunkTask",
    "EndpointDef",
    "TrialResult",
    "TrialSpec",
    "arm_summary",
    "compare_arms",
    "plan_chunks",
    "run_chunk",
    "run_trial",
]

DESIGNS = ("parallel", "split-face")
DEFAULT_CHUNK = 256
_MAX_N = 10_000_000


# ------------------------------------------------------------------------------------ spec
@dataclass(frozen=True)
class EndpointDef:
    """An end point and, optionally, its responder rule (``value >= above`` or ``value <= below``)."""

    spec: EndpointSpec
    above: float | None = None
    below: float | None = None

    @property
    def name(self) -> str:
        return self.spec.text

    def responders(self, x: np.ndarray) -> np.ndarray:
        """Boolean responders (False where the value is NaN)."""
        if self.above is not None:
            return np.asarray(x >= self.above)
        if self.below is not None:
            return np.asarray(x <= self.below)
        return np.zeros(x.shape, dtype=bool)

    @property
    def rule(self) -> str:
        if self.above is not None:
            return f">= {self.above:g} {self.spec.units}"
        if self.below is not None:
            return f"<= {self.below:g} {self.spec.units}"
        return ""


@dataclass(frozen=True)
class Arm:
    """A protocol: a course template (a course table without ``patient``)."""

    name: str
    template: Mapping[str, Any]

    @property
    def horizon_days(self) -> float:
        return float(self.template["horizon_days"])

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(str(s["name"]) for s in self.template.get("sites", []))


@dataclass(frozen=True)
class TrialSpec:
    """A validated trial (see the module docstring)."""

    name: str
    design: str
    n_per_arm: int
    seed: int
    population: Population
    arms: tuple[Arm, ...]
    endpoints: tuple[EndpointDef, ...]
    control: int = 0
    chunk_size: int = DEFAULT_CHUNK
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def paired(self) -> bool:
        return self.design == "split-face"

    @classmethod
    def from_toml(cls, path: str | Path) -> TrialSpec:
        """Read and validate a trial file; errors name the field (``trial.n_per_arm``, ...)."""
        p = Path(path)
        if not p.is_file():
            raise InputError("trial spec", str(path), "an existing TOML file")
        try:
            d = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError("trial spec", str(path), f"valid TOML ({exc})") from None
        return cls.from_dict(d, base=p.parent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base: Path | None = None) -> TrialSpec:
        """Validate a parsed trial table (paths relative to ``base``)."""
        base = base or Path.cwd()
        if not isinstance(d, Mapping):
            raise InputError("<trial spec>", d, "a table with [trial] and [[arms]]")
        for k in d:
            if k not in ("trial", "arms"):
                raise InputError(k, d[k], "top-level tables [trial] and [[arms]]")
        t = d.get("trial")
        if not isinstance(t, Mapping):
            raise InputError("trial", t, "a [trial] table")
        known = {
            "name",
            "description",
            "design",
            "n_per_arm",
            "seed",
            "population",
            "control",
            "time_points",
            "endpoints",
            "chunk_size",
        }
        for k in t:
            if k not in known:
                raise InputError(f"trial.{k}", t[k], f"keys among {sorted(known)}")
        name = t.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InputError("trial.name", name, "non-empty text")
        design = t.get("design", "parallel")
        if design not in DESIGNS:
            raise InputError("trial.design", design, f"one of {list(DESIGNS)}")
        n = _int(t.get("n_per_arm"), "trial.n_per_arm", 2, _MAX_N)
        seed = _int(t.get("seed", 0), "trial.seed", 0, 2**63 - 1)
        chunk = _int(t.get("chunk_size", DEFAULT_CHUNK), "trial.chunk_size", 1, 1_000_000)
        if "population" not in t:
            raise InputError("trial.population", None, "a population preset name or TOML file")
        try:
            if isinstance(t["population"], Mapping):  # inline population table
                pop = Population.from_dict(t["population"])
            else:
                pop = load_population(str(t["population"]), base=base)
        except InputError as exc:
            raise InputError(f"trial.{exc.field}", exc.value, exc.allowed) from None
        endpoints = _endpoints(t.get("endpoints"), t.get("time_points"))
        arms_raw = d.get("arms")
        if not isinstance(arms_raw, list) or len(arms_raw) < 2:
            raise InputError("arms", arms_raw, "two or more [[arms]] tables")
        arms = tuple(_arm(a, i, base, pop) for i, a in enumerate(arms_raw))
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise InputError("arms[].name", names, "distinct arm names")
        if design == "split-face":
            if len(arms) != 2:
                raise InputError("arms", f"{len(arms)} arms", "exactly 2 arms (one per side)")
            if arms[0].sites != arms[1].sites:
                raise InputError(
                    "arms[1].sites",
                    list(arms[1].sites),
                    f"the same site(s) as arms[0] ({list(arms[0].sites)}): one per side",
                )
        control = t.get("control", names[0])
        if control not in names:
            raise InputError("trial.control", control, f"an arm name among {names}")
        return cls(
            name=name.strip(),
            design=str(design),
            n_per_arm=n,
            seed=seed,
            population=pop,
            arms=arms,
            endpoints=endpoints,
            control=names.index(control),
            chunk_size=chunk,
            raw={"trial": dict(t), "arms": [dict(a.template) for a in arms], "names": names},
        )

    def fingerprint(self, chunk_size: int) -> str:
        """Hash of everything that determines the chunks' numbers (for resume)."""

        blob = json.dumps(
            {
                "trial": {
                    **{k: v for k, v in self.raw.get("trial", {}).items() if k != "population"},
                    "n_per_arm": self.n_per_arm,
                },
                "seed": self.seed,
                "design": self.design,
                "arms": [[a.name, dict(a.template)] for a in self.arms],
                "endpoints": [[e.name, e.above, e.below] for e in self.endpoints],
                "control": self.control,
                "population": self.population.raw,
                "chunk_size": chunk_size,
                "version": __version__,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_toml(self) -> str:
        """The validated trial with arms inlined (patient-free course templates)."""

        t = {**self.raw.get("trial", {}), "n_per_arm": self.n_per_arm, "seed": self.seed}
        t["population"] = dict(self.population.raw)  # inlined: the copy is self-contained
        arms = [{"name": a.name, "protocol": dict(a.template)} for a in self.arms]
        return dumps_toml({"trial": t, "arms": arms})


def _int(v: Any, fieldname: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(fieldname, v, f"an integer from {lo} to {hi}")
    return int(v)


def _endpoints(raw: Any, time_points: Any) -> tuple[EndpointDef, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError("trial.endpoints", raw, "a non-empty list of end points")
    tps: list[float] = []
    if time_points is not None:
        if not isinstance(time_points, list) or not time_points:
            raise InputError("trial.time_points", time_points, "a non-empty list of days")
        for j, x in enumerate(time_points):
            if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= 3650:
                raise InputError(f"trial.time_points[{j}]", x, "a day from 0 to 3650")
            tps.append(float(x))
    out: list[EndpointDef] = []
    for j, e in enumerate(raw):
        f = f"trial.endpoints[{j}]"
        above = below = None
        if isinstance(e, Mapping):
            for k in e:
                if k not in ("name", "responder_above", "responder_below"):
                    raise InputError(f"{f}.{k}", e[k], "name, responder_above or responder_below")
            if "responder_above" in e and "responder_below" in e:
                raise InputError(f, dict(e), "one of responder_above / responder_below")
            for k in ("responder_above", "responder_below"):
                if k in e:
                    v = e[k]
                    if (
                        isinstance(v, bool)
                        or not isinstance(v, int | float)
                        or not math.isfinite(v)
                    ):
                        raise InputError(f"{f}.{k}", v, "a finite number (end point units)")
            above = float(e["responder_above"]) if "responder_above" in e else None
            below = float(e["responder_below"]) if "responder_below" in e else None
            text = e.get("name")
            f_name = f"{f}.name"
        else:
            text, f_name = e, f
        if not isinstance(text, str):
            raise InputError(f_name, text, "an end point such as 'scar_depth:reduction@365'")
        spec = parse_endpoint(text, field=f_name)
        if tps and not spec.per_session and "@" not in text:
            specs = [parse_endpoint(f"{text}@{d:g}", field=f_name) for d in tps]
        else:
            specs = [spec]
        out.extend(EndpointDef(s, above, below) for s in specs)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise InputError("trial.endpoints", names, "distinct end points")
    return tuple(out)


def _arm(a: Any, i: int, base: Path, pop: Population) -> Arm:
    f = f"arms[{i}]"
    if not isinstance(a, Mapping):
        raise InputError(f, a, "a table with name and course (a file) or protocol (inline)")
    for k in a:
        if k not in ("name", "course", "protocol"):
            raise InputError(f"{f}.{k}", a[k], "name, course or protocol")
    name = a.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{f}.name", name, "non-empty text")
    if ("course" in a) == ("protocol" in a):
        raise InputError(f, sorted(a), "exactly one of course (a file) or protocol (inline)")
    if "course" in a:
        p = base / str(a["course"])
        if not p.is_file():
            raise InputError(f"{f}.course", str(a["course"]), "an existing course file")
        try:
            tmpl = dict(tomllib.loads(p.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{f}.course", str(a["course"]), f"valid TOML ({exc})") from None
    else:
        tmpl = a["protocol"]
        if not isinstance(tmpl, Mapping):
            raise InputError(f"{f}.protocol", tmpl, "a course table without a patient")
        tmpl = dict(tmpl)
        if "patient" in tmpl:
            raise InputError(
                f"{f}.protocol.patient",
                tmpl["patient"],
                "no patient (the population supplies them)",
            )
    tmpl.pop("patient", None)
    arm = Arm(name.strip(), tmpl)
    # validate the protocol with the population's first patient: refusals name the arm's field
    b = sample_patients(pop, 0, 1, seed=0)
    try:
        _course(arm, b, 0, pop)
    except CourseValidationError as exc:
        raise InputError(
            f"{f}.{'course' if 'course' in a else 'protocol'}", name, exc.one_line()
        ) from None
    return arm


def _course(arm: Arm, batch: Any, i: int, pop: Population) -> Any:

    d = dict(arm.template)
    d["patient"] = batch.patient_of(i)
    if pop.conditions:
        conds = batch.conditions_of(i)
        d["sites"] = [{**dict(s), "conditions": conds} for s in d.get("sites", [])]
    return Course.from_dict(d, source=f"arm {arm.name}")


# ---------------------------------------------------------------------------------- chunks
@dataclass(frozen=True)
class ChunkTask:
    """Patients ``start..stop-1`` of stream ``stream``, under the arms ``arms``."""

    spec: TrialSpec
    arms: tuple[int, ...]
    stream: int
    start: int
    stop: int
    parallel: bool = True


@dataclass
class ChunkResult:
    """What leaves a chunk: end points, covariates, trajectory moments, rejections."""

    arms: tuple[int, ...]
    start: int
    stop: int
    values: np.ndarray  # (len(arms), n, E)
    covariates: dict[str, np.ndarray]  # (n,)
    moments: dict[int, dict[str, np.ndarray]]  # arm -> var -> (3, T): count, mean, M2
    rejected: dict[str, int]
    n_steps: float


def plan_chunks(spec: TrialSpec, chunk_size: int, parallel: bool = True) -> list[ChunkTask]:
    """The chunks of a trial: per arm (parallel design) or per patient range (split-face)."""
    out = []
    groups = [((0, 1), 0)] if spec.paired else [((a,), a) for a in range(len(spec.arms))]
    for arms, stream in groups:
        for s in range(0, spec.n_per_arm, chunk_size):
            out.append(
                ChunkTask(spec, arms, stream, s, min(s + chunk_size, spec.n_per_arm), parallel)
            )
    return out


def trajectory_variables(spec: TrialSpec) -> list[tuple[str, str, str]]:
    """``(label, variable, layer)`` of the time-resolved end points (one band each)."""
    seen: dict[str, tuple[str, str, str]] = {}
    for e in spec.endpoints:
        s = e.spec
        if s.per_session:
            continue
        label = s.variable + (f".{s.layer}" if s.layer != "papillary" else "")
        seen.setdefault(label, (label, s.variable, s.layer))
    return list(seen.values())


def arm_grid(arm: Arm) -> np.ndarray:
    """Weekly trajectory-summary grid of an arm (days), ending at its horizon."""
    h = arm.horizon_days
    return np.unique(np.concatenate([np.arange(0.0, h, 7.0), [h]]))


def _interp_rows(t: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    g = np.clip(grid, t[0], t[-1])
    i1 = np.clip(np.searchsorted(t, g, side="left"), 1, len(t) - 1)
    i0 = i1 - 1
    w = (g - t[i0]) / (t[i1] - t[i0])
    return np.asarray(x[:, i0] * (1.0 - w) + x[:, i1] * w)


def _moments(x: np.ndarray) -> np.ndarray:
    """(3, T): count, mean, M2 (sum of squared deviations) of the finite values per column."""
    ok = np.isfinite(x)
    n = ok.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        m2 = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0)
    return np.stack([n, mean, m2])


def merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two (3, T) moment arrays (Chan, Golub & LeVeque's pairwise update)."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(nb > 0, mb, 0.0) - np.where(na > 0, ma, 0.0)
        mean = np.where(
            n > 0,
            (np.where(na > 0, na * ma, 0.0) + np.where(nb > 0, nb * mb, 0.0)) / np.maximum(n, 1),
            np.nan,
        )
        m2 = sa + sb + np.where((na > 0) & (nb > 0), d * d * na * nb / np.maximum(n, 1), 0.0)
    return np.stack([n, mean, m2])


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Simulate one chunk of patients under its arm(s) in ONE batched solve; return summaries."""

    spec = task.spec
    pop = spec.population
    batch = sample_patients(pop, task.start, task.stop, seed=spec.seed, stream=task.stream)
    n = len(batch)
    courses = [_course(spec.arms[a], batch, i, pop) for a in task.arms for i in range(n)]
    factors = {k: np.tile(v, len(task.arms)) for k, v in batch.factors.items()}
    run = simulate_batch(
        courses, load_parameters(), healing_factors=factors or None, parallel=task.parallel
    )
    E = len(spec.endpoints)
    A = len(task.arms)
    n_courses = A * n
    counts = np.bincount(run.course_index, minlength=n_courses).astype(float)

    def per_course(v: np.ndarray) -> np.ndarray:
        ok = np.isfinite(v)
        s = np.bincount(run.course_index, weights=np.where(ok, v, 0.0), minlength=n_courses)
        k = np.bincount(run.course_index, weights=ok.astype(float), minlength=n_courses)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(k > 0, s / k, np.nan)

    values = np.empty((A, n, E))
    for j, e in enumerate(spec.endpoints):
        values[:, :, j] = per_course(endpoint_values(run, e.spec)).reshape(A, n)
    moments: dict[int, dict[str, np.ndarray]] = {}
    for ai, a in enumerate(task.arms):
        rows = np.flatnonzero((run.course_index >= ai * n) & (run.course_index < (ai + 1) * n))
        grid = arm_grid(spec.arms[a])
        moments[a] = {}
        for label, var, layer in trajectory_variables(spec):
            x = run.observables[var][rows]
            if x.ndim == 3:
                x = x[:, 0 if layer == "papillary" else 1, :]
            moments[a][label] = _moments(_interp_rows(run.t, x, grid))
    cov: dict[str, np.ndarray] = {
        "age": np.rint(batch.age_years),
        "sex_male": (batch.sex == "male").astype(float),
        "fitzpatrick": batch.fitzpatrick.astype(float),
    }
    for ctype, flds in batch.conditions:
        for k, arr in flds.items():
            if arr.dtype.kind in "fiu":
                cov[f"{ctype}.{k}"] = arr.astype(float)
            else:
                cov[f"{ctype}.{k}"] = arr.astype(str)
    for k, arr in batch.factors.items():
        cov[f"factor.{k}"] = arr
    return ChunkResult(
        arms=task.arms,
        start=task.start,
        stop=task.stop,
        values=values,
        covariates=cov,
        moments=moments,
        rejected={k: int(v.sum()) for k, v in batch.rejected.items()},
        n_steps=float(np.mean(run.n_steps)) if counts.size else 0.0,
    )


# ------------------------------------------------------------------------------ statistics
def _t_ci(x: np.ndarray) -> tuple[float, float, float, float, int]:
    """mean, sd, 95% CI (Student t) of the finite values; n."""
    from scipy import stats

    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n == 1:
        return m, math.nan, math.nan, math.nan, 1
    sd = float(x.std(ddof=1))
    h = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return m, sd, m - h, m + h, n


def _wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    z = 1.959963984540054
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def arm_summary(x: np.ndarray, e: EndpointDef) -> dict[str, float]:
    """Per-arm statistics of one end point's values ``x`` (n,)."""
    m, sd, lo, hi, n = _t_ci(x)
    fin = x[np.isfinite(x)]
    row: dict[str, float] = {
        "n": float(n),
        "mean": m,
        "sd": sd,
        "ci95_low": lo,
        "ci95_high": hi,
        "median": float(np.median(fin)) if n else math.nan,
        "p10": float(np.percentile(fin, 10)) if n else math.nan,
        "p90": float(np.percentile(fin, 90)) if n else math.nan,
    }
    if e.above is not None or e.below is not None:
        k = int(e.responders(fin).sum())
        row["responder_rate"] = k / n if n else math.nan
        row["responder_ci95_low"], row["responder_ci95_high"] = _wilson(k, n)
    return row


def compare_arms(x: np.ndarray, y: np.ndarray, paired: bool) -> dict[str, float]:
    """Arm ``x`` vs control ``y``: difference of means with 95% CI, Cohen's d, Hedges' g, tests.

    Parallel: Welch's t test and the Mann-Whitney U test. Paired (split-face): the paired t test
    and the Wilcoxon signed-rank test on the per-patient differences; d uses the pooled SD of the two
    arms (comparable with parallel designs), d_z = mean difference / SD of differences is added.
    """
    from scipy import stats

    out: dict[str, float] = {}
    if paired:
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
    else:
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    nx, ny = x.size, y.size
    out["n_arm"], out["n_control"] = float(nx), float(ny)
    if nx < 2 or ny < 2:
        return out
    diff = float(x.mean() - y.mean())
    sx, sy = float(x.var(ddof=1)), float(y.var(ddof=1))
    sp = math.sqrt(((nx - 1) * sx + (ny - 1) * sy) / (nx + ny - 2))
    out["difference"] = diff
    with np.errstate(all="ignore"):
        d = diff / sp if sp > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    J = 1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)
    out["cohens_d"] = d
    out["hedges_g"] = d * J
    if paired:
        dd = x - y
        sdd = float(dd.std(ddof=1))
        h = float(stats.t.ppf(0.975, nx - 1)) * sdd / math.sqrt(nx)
        out["ci95_low"], out["ci95_high"] = diff - h, diff + h
        out["cohens_dz"] = diff / sdd if sdd > 0 else math.nan
        if sdd > 0:
            out["t_stat"], out["p_t"] = (float(v) for v in stats.ttest_rel(x, y))
        if np.any(dd != 0):
            out["w_stat"], out["p_rank"] = (float(v) for v in stats.wilcoxon(x, y))
    else:
        se = math.sqrt(sx / nx + sy / ny)
        if se > 0:
            dof = se**4 / ((sx / nx) ** 2 / (nx - 1) + (sy / ny) ** 2 / (ny - 1))
            h = float(stats.t.ppf(0.975, dof)) * se
            out["ci95_low"], out["ci95_high"] = diff - h, diff + h
            out["t_stat"], out["p_t"] = (float(v) for v in stats.ttest_ind(x, y, equal_var=False))
        out["u_stat"], out["p_rank"] = (
            float(v) for v in stats.mannwhitneyu(x, y, alternative="two-sided")
        )
    return out


# ------------------------------------------------------------------------------ the trial
@dataclass
class TrialResult:
    """A finished trial: per-patient end points, covariates, trajectory bands and statistics."""

    spec: TrialSpec
    values: np.ndarray  # (A, n, E)
    covariates: dict[str, np.ndarray]  # name -> (A, n)
    grids: dict[int, np.ndarray]
    moments: dict[int, dict[str, np.ndarray]]  # arm -> label -> (3, T)
    rejection: dict[str, float]
    summary: Any  # pandas DataFrame
    comparisons: Any  # pandas DataFrame
    n_steps: float
    wall_s: float = 0.0  # run_trial before writing outputs (s)
    map_s: float = 0.0  # of which on the executor, cluster start included (s)
    workers: int = 0

    def dataset(self) -> Any:
        """xarray Dataset: end points (arm, patient, endpoint) with units, covariates, bands."""
        import xarray as xr

        spec = self.spec
        arms = [a.name for a in spec.arms]
        eps = [e.name for e in spec.endpoints]
        data: dict[str, Any] = {
            "value": (
                ("arm", "patient", "endpoint"),
                self.values,
                {"long_name": "End point value per virtual patient (units: endpoint_units)"},
            ),
            "endpoint_units": (("endpoint",), np.array([e.spec.units for e in spec.endpoints])),
            "responder_rule": (("endpoint",), np.array([e.rule for e in spec.endpoints])),
        }
        for k, v in self.covariates.items():
            data[f"covariate_{k}"] = (("arm", "patient"), v)
        for a, mom in self.moments.items():
            for label, m in mom.items():
                tdim = f"time_{a}"
                n, mean, m2 = m
                with np.errstate(invalid="ignore", divide="ignore"):
                    sd = np.sqrt(m2 / np.maximum(n - 1, 1))
                data[f"band_{a}_{label}_mean"] = ((tdim,), mean, {"arm": arms[a]})
                data[f"band_{a}_{label}_sd"] = ((tdim,), sd, {"arm": arms[a]})
                data[f"band_{a}_{label}_n"] = ((tdim,), n, {"arm": arms[a]})
        coords: dict[str, Any] = {
            "arm": arms,
            "patient": np.arange(spec.n_per_arm),
            "endpoint": eps,
        }
        for a, g in self.grids.items():
            coords[f"time_{a}"] = (f"time_{a}", g, {"units": "d", "arm": arms[a]})
        attrs = {
            "title": f"microneedling in-silico trial: {spec.name}",
            "disclaimer": DISCLAIMER,
            "microneedling_version": __version__,
            "design": spec.design,
            "seed": spec.seed,
            "n_per_arm": spec.n_per_arm,
            "population": spec.population.name,
            "control_arm": arms[spec.control],
            "rejection_rates": json.dumps(self.rejection),
            "trial_toml": spec.to_toml(),
            "patient_note": (
                "split-face: patient i is the same person in both arms"
                if spec.paired
                else "parallel: patient i of one arm is unrelated to patient i of another"
            ),
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _tables(spec: TrialSpec, values: np.ndarray) -> tuple[Any, Any]:
    import pandas as pd

    rows, comps = [], []
    for j, e in enumerate(spec.endpoints):
        for a, arm in enumerate(spec.arms):
            rows.append(
                {
                    "endpoint": e.name,
                    "units": e.spec.units,
                    "arm": arm.name,
                    "responder_rule": e.rule,
                    **arm_summary(values[a, :, j], e),
                }
            )
        c = spec.control
        for a, arm in enumerate(spec.arms):
            if a == c:
                continue
            comps.append(
                {
                    "endpoint": e.name,
                    "units": e.spec.units,
                    "arm": arm.name,
                    "control": spec.arms[c].name,
                    "design": spec.design,
                    "tests": "paired t; Wilcoxon" if spec.paired else "Welch t; Mann-Whitney U",
                    **compare_arms(values[a, :, j], values[c, :, j], spec.paired),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(comps)


def run_trial(
    spec: TrialSpec,
    *,
    resume_dir: str | Path | None = None,
    workers: int = 0,
    scheduler: str | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> TrialResult:
    """Run a trial on the executor and return its data (writing the outputs is
    :func:`microneedling.reports.trial.write_trial`'s job).

    With ``resume_dir``, finished chunks are kept there as they arrive (atomically, with the
    spec's fingerprint), so a rerun of an interrupted trial computes only the missing chunks.
    """
    import time

    validate_executor(workers, scheduler)
    chunk = spec.chunk_size if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= 1_000_000:
        raise InputError("chunk_size", chunk, "an integer from 1 to 1000000")
    in_process = workers == 0 and scheduler is None
    tasks = plan_chunks(spec, chunk, parallel=in_process)
    A, n, E = len(spec.arms), spec.n_per_arm, len(spec.endpoints)
    t0 = time.perf_counter()
    store: ChunkStore | None = None
    mem: dict[int, ChunkResult] = {}
    if resume_dir is not None:
        store = ChunkStore(Path(resume_dir), spec.fingerprint(chunk))

    def keep(i: int, r: ChunkResult) -> None:
        if store is not None:
            store.save(i, r)
        else:
            mem[i] = r

    t_map = time.perf_counter()
    map_chunks(
        run_chunk,
        tasks,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        label=f"{spec.name[:40]}",
        skip=store.done() if store is not None else (),
        on_result=keep,
        rate=lambda r: (r.stop - r.start) * len(r.arms),
        rate_unit="patients",
        keep=False,
    )
    t_map = time.perf_counter() - t_map
    # stream the chunks back in (bounded memory: only end points and moments accumulate)
    values = np.full((A, n, E), np.nan)
    cov: dict[str, np.ndarray] = {}
    moments: dict[int, dict[str, np.ndarray]] = {}
    rejected: dict[str, int] = {}
    steps = 0.0
    for i in range(len(tasks)):
        r = store.load(i) if store is not None else mem.pop(i)
        sl = slice(r.start, r.stop)
        for ai, a in enumerate(r.arms):
            values[a, sl] = r.values[ai]
            for k, v in r.covariates.items():
                if k not in cov:
                    cov[k] = (
                        np.full((A, n), np.nan)
                        if v.dtype.kind == "f"
                        else np.full((A, n), "", dtype=object)
                    )
                cov[k][a, sl] = v
            for label, m in r.moments[a].items():
                cur = moments.setdefault(a, {}).get(label)
                moments[a][label] = m if cur is None else merge_moments(cur, m)
        for k, v in r.rejected.items():
            rejected[k] = rejected.get(k, 0) + v
        steps += r.n_steps * (r.stop - r.start)
    for k in cov:
        if cov[k].dtype == object:
            cov[k] = cov[k].astype(str)
    draws = n * (1 if spec.paired else A)
    rates = {k: v / (v + draws) for k, v in rejected.items()}
    summary, comps = _tables(spec, values)
    res = TrialResult(
        spec=spec,
        values=values,
        covariates=cov,
        grids={a: arm_grid(spec.arms[a]) for a in range(A)},
        moments=moments,
        rejection=rates,
        summary=summary,
        comparisons=comps,
        n_steps=steps / (n * (1 if spec.paired else A)),
        wall_s=time.perf_counter() - t0,
        map_s=t_map,
        workers=workers,
    )
    return res
