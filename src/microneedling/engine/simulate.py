"""One course, simulated and labelled: :func:`simulate` returns a :class:`~microneedling.engine.result.Result`.

With ``draws > 0`` the parameter-uncertainty ensemble (:func:`~microneedling.parameters.sampling.sample_parameter_sets`)
runs in the same batch, and each observable gets ``_low``/``_high`` (10th/90th percentiles) beside
its nominal value.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine.batch import simulate_batch
from microneedling.engine.prepare import Prepared, take_prepared
from microneedling.engine.result import Result
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from microneedling.vocabulary import LAYERS

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.model import Course

__all__ = ["simulate"]


# ---------------------------------------------------------------------------- simulate
def simulate(
    course: Course,
    parameters: ParameterSet | None = None,
    *,
    draws: int = 32,
    seed: int | None = None,
    rtol: float = 1e-6,
    parallel: bool = True,
) -> Result:
    """Simulate one course: every session's needles, injury and topical uptake, then healing over the
    horizon, then the clinical observables.

    Parameters
    ----------
    course:
        A validated course (``Course.from_toml``).
    parameters:
        Parameter set (default: the shipped set).
    draws:
        Size of the parameter-uncertainty ensemble (0: nominal only, no intervals).
    seed:
        Seed of the ensemble (default: ``course.seed``).
    rtol:
        Relative tolerance of the healing integrator.
    """

    ps = (parameters or load_parameters()).recording()
    seed = course.seed if seed is None else seed
    sets = [ps] + (sample_parameter_sets(ps, draws, seed) if draws > 0 else [])
    run = simulate_batch([course] * len(sets), sets, rtol=rtol, parallel=parallel)
    for s in sets[1:]:
        ps._used.update(s._used)  # draws look up the same names
    B = len(course.sites)
    t = run.t
    obs = [
        {k: v[d * B : (d + 1) * B] for k, v in run.observables.items()} for d in range(len(sets))
    ]
    per_session = [
        {k: v[d * B : (d + 1) * B] for k, v in run.per_session.items()} for d in range(len(sets))
    ]
    nominal = take_prepared(run.prepared, np.arange(B))  # observe: the nominal set's
    ds = _dataset(course, ps, nominal, t, obs, per_session, seed, len(sets) - 1)
    return Result(ds)


_ATTRS: dict[str, tuple[str, str]] = {
    "erythema": ("1", "Visible-redness signal (inflammation of the papillary plexus)"),
    "oedema": ("1", "Swelling signal"),
    "epidermal_thickness_change": ("%", "Epidermal thickness change vs baseline"),
    "dermal_density_change": ("%", "Ultrasound dermal density change vs baseline"),
    "dermal_thickness": ("um", "Dermal thickness"),
    "elasticity_index": ("1", "Gross elasticity index (cutometer R2-like, 0-1)"),
    "wrinkle_depth": ("um", "Wrinkle depth"),
    "scar_depth": ("mm", "Atrophic scar depth"),
    "pore_diameter": ("um", "Pore diameter"),
    "striae_width": ("mm", "Stretch-mark width"),
    "melanin_index": ("1", "Melanin index (Mexameter-like units)"),
    "collagen_change": ("%", "New dermal collagen (I+III), % of baseline collagen"),
    "collagen_I_change": ("%", "Collagen I change, % of baseline collagen I"),
    "collagen_III_change": ("%", "Collagen III change, % of baseline collagen III"),
    "elastin_change": ("%", "Net elastin change, % of baseline elastin"),
    "new_elastin_change": ("%", "New elastic fibre (tropoelastin), % of baseline elastin"),
    "inflammation": ("1", "Inflammation (neutrophils + M1; 1 = saturating response)"),
    "fibroblasts": ("1", "Fibroblast density relative to baseline"),
    "erythema_days": ("d", "Days of visible redness after the session"),
    "absorbed_amount": ("ug/cm^2", "Topical absorbed into the skin"),
    "enhancement_ratio": (
        "1",
        "Absorption with channels / intact skin (inf: no intact-skin path, e.g. hyaluronan)",
    ),
    "oedema_days": ("d", "Days of visible swelling after the session"),
    "pih_risk": ("1", "Probability of post-inflammatory hyperpigmentation after the session"),
}


def _dataset(
    course: Course,
    ps: ParameterSet,
    prep: Prepared,
    t: np.ndarray,
    obs: list[dict[str, np.ndarray]],
    per_session: list[dict[str, np.ndarray]],
    seed: int,
    n_draws: int,
) -> Any:
    import xarray as xr

    sites = [s.name for s in course.sites]
    B, K = prep.session_days.shape
    coords = {
        "patient": ["patient-0"],
        "site": sites,
        "layer": list(LAYERS),
        "time": ("time", t, {"units": "d", "long_name": "Time since the start of the course"}),
        "session": np.arange(K),
    }
    data: dict[str, Any] = {}

    def put(name: str, dims: tuple[str, ...], arrays: list[np.ndarray]) -> None:
        units, long_name = _ATTRS.get(name, ("1", name))
        nominal = arrays[0][None, ...]
        data[name] = (("patient", *dims), nominal, {"units": units, "long_name": long_name})
        if len(arrays) > 1:
            stack = np.stack(arrays[1:])
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi = np.nanpercentile(stack, [10.0, 90.0], axis=0)
            for tag, arr in (("low", lo), ("high", hi)):
                data[f"{name}_{tag}"] = (
                    ("patient", *dims),
                    arr[None, ...],
                    {
                        "units": units,
                        "long_name": f"{long_name} ({'10th' if tag == 'low' else '90th'} percentile)",
                        "interval": f"10th-90th percentile over {len(arrays) - 1} parameter draws",
                    },
                )

    for name in obs[0]:
        arrs = [o[name] for o in obs]
        if arrs[0].ndim == 3:  # (B, 2, T) layered: pad the epidermis with NaN
            arrs = [np.concatenate([np.full((B, 1, len(t)), np.nan), a], axis=1) for a in arrs]
            put(name, ("site", "layer", "time"), arrs)
        else:
            put(name, ("site", "time"), arrs)
    for name in per_session[0]:
        put(name, ("site", "session"), [p[name] for p in per_session])

    def fixed(
        name: str, arr: np.ndarray, dims: tuple[str, ...], units: str, long_name: str
    ) -> None:
        data[name] = (("patient", *dims), arr[None, ...], {"units": units, "long_name": long_name})

    sd = np.where(prep.session_mask, prep.session_days, np.nan)
    fixed("session_day", sd, ("site", "session"), "d", "Day of the session")
    fixed("needle_length", prep.needle_length_mm, ("site", "session"), "mm", "Needle length")
    fixed(
        "puncture_density",
        prep.puncture_density_cm2,
        ("site", "session"),
        "cm^-2",
        "Punctures per cm²",
    )
    fixed(
        "penetration_depth",
        prep.penetration_depth_um,
        ("site", "session"),
        "um",
        "Channel depth reached",
    )
    fixed(
        "reaches_capillaries",
        prep.reaches_capillaries,
        ("site", "session"),
        "1",
        "Channel reaches the papillary capillaries (pinpoint bleeding)",
    )
    fixed(
        "absorbed_intact",
        prep.absorbed_intact_ug_cm2,
        ("site", "session"),
        "ug/cm^2",
        "Same topical through intact skin",
    )
    fixed(
        "injured_fraction",
        prep.injured_fraction,
        ("site", "session", "layer"),
        "1",
        "Injured volume fraction",
    )
    fixed(
        "absorbed_by_layer",
        prep.absorbed_by_layer_ug_cm2,
        ("site", "session", "layer"),
        "ug/cm^2",
        "Topical absorbed per layer",
    )

    refs = ps.references(ps.used)
    attrs = {
        "title": f"microneedling simulation: {course.name}",
        "disclaimer": DISCLAIMER,
        "microneedling_version": __version__,
        "parameter_set_label": ps.label,
        "parameter_set_hash": ps.hash,
        "seed": int(seed),
        "n_draws": int(n_draws),
        "course_name": course.name,
        "course_toml": course.to_toml(),
        "warnings": json.dumps(list(course.warnings)),
        "sources": json.dumps(
            [{"key": r.key, "citation": r.citation, "url": r.url, "note": r.note} for r in refs]
        ),
        "parameters_used": json.dumps(ps.used),
        "parameters": json.dumps(
            [
                {
                    "name": n,
                    "value": ps.parameters[n].value,
                    "units": ps.parameters[n].units,
                    "kind": ps.parameters[n].kind,
                    "sources": list(ps.parameters[n].sources),
                }
                for n in ps.used
            ]
        ),
        "erythema_threshold": prep.observe.erythema_threshold,
        "oedema_threshold": prep.observe.oedema_threshold,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)
