"""Result of a simulation: a labelled xarray.Dataset inside, clinical end points outside.

The variables of :attr:`Result.dataset` are the rows of
:data:`microneedling.engine.variables.VARIABLES` (each with ``units`` and ``long_name``
attributes), with dims by kind:

=====================  =============================================================
kind                   dims
=====================  =============================================================
time                   (patient, site, time); layered: (patient, site, layer, time)
session                (patient, site, session)
setting                (patient, site, session); layered: (patient, site, session, layer)
=====================  =============================================================

Observables that do not apply to a site (``scar_depth`` without an acne-scar condition, ...) are NaN.
Layer-resolved collagen and elastin are NaN for the epidermis. Where the run had an uncertainty
ensemble, each observable ``X`` has ``X_low`` and ``X_high`` (10th and 90th percentiles over the
parameter draws; attrs ``interval``) beside the nominal value. Global attributes: ``disclaimer``,
``microneedling_version``, ``parameter_set_hash``, ``parameter_set_label``, ``seed``, ``course_name``,
``course_toml``, ``warnings`` (JSON list), ``sources`` (JSON list of references),
``parameters_used`` (JSON list of names), ``parameters`` (JSON records), ``n_draws``, ``created``;
read them through the typed properties of :class:`Result` rather than parsing them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.course.model import Course
from microneedling.engine.quiet_xarray import quiet_duck_array_probes
from microneedling.engine.variables import Variable, endpoint_variables
from microneedling.io import write_netcdf_atomic
from microneedling.parameters.parameter_set import Reference

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

__all__ = ["ParameterRecord", "Result", "labelled_dataset"]


def _is_float_array(x: object) -> bool:
    return type(x) is np.ndarray and x.dtype == np.float64


def labelled_dataset(
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]],
    coords: dict[str, tuple[Any, dict[str, Any]]],
    attrs: dict[str, Any],
    *,
    direct: bool = True,
) -> xr.Dataset:
    """The Dataset of ``data_vars`` (``{name: (dims, array, attrs)}``, in order) on the dimension
    coordinates ``coords`` (``{dim: (values, attrs)}``, each indexed by pandas), with ``attrs``.

    ``xr.Dataset(data_vars=..., coords=...)`` merges and aligns its arguments variable by
    variable (0.9 ms for a nominal course's 41 variables, 1.6 ms for an ensemble's 105). Here
    every variable is built once, each coordinate gets its default pandas
    index the way xarray makes it, and the Dataset is assembled without the merge
    (``Dataset._construct_direct``, xarray's own constructor for arguments known to be
    consistent; dims are still computed and checked against each other). ``direct=False``, or
    an xarray without that constructor, takes the public constructor: the two give identical
    datasets and NetCDF files (tested), data variables first, then coordinates.

    xarray's duck-array probes are answered without importing Dask and pint
    (:mod:`microneedling.engine.quiet_xarray`): the arrays here are NumPy's.
    """
    import xarray as xr

    quiet_duck_array_probes()

    construct = getattr(xr.Dataset, "_construct_direct", None)
    if not direct or construct is None:
        return xr.Dataset(
            data_vars=data_vars,
            coords={name: (name, values, a) for name, (values, a) in coords.items()},
            attrs=attrs,
        )
    variables = {
        # float arrays need none of the conversions of the Variable constructor (fastpath skips
        # them: ~1 us instead of ~15 us per variable); anything else takes the full path
        name: xr.Variable(dims, arr, a, fastpath=_is_float_array(arr))
        for name, (dims, arr, a) in data_vars.items()
    }
    indexes = {}
    for name, (values, a) in coords.items():
        index, index_vars = _coordinate(name, values, a)
        indexes[name] = index
        variables.update(index_vars)
    ds: xr.Dataset = construct(variables, set(coords), None, dict(attrs), indexes)
    return ds


_SHORT_COORDINATES: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
"""Default index and index variable of coordinates (patient, site, layer, session, time), by
name, dtype, values and attrs: a few entries per process (at most 256 kept)."""


def _coordinate(name: str, values: Any, attrs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The default (pandas) index of dimension coordinate ``name`` and its index variables, as
    ``xr.Dataset`` makes them. Coordinates are made once per distinct value (~40 us for a short
    one, ~0.4 ms for a course's few hundred output times) and handed out as shallow copies (own
    attrs; the index and its values are immutable). Numbers are compared bit for bit, strings
    up to 64 of them; a kept coordinate holds its own read-only copy of the values."""
    import xarray as xr
    from xarray.indexes import PandasIndex

    arr = np.asarray(values)
    key: tuple[Any, ...] | None = None
    content: Any = None
    if arr.ndim == 1 and arr.dtype.kind in "iufb" and arr.size <= 1_000_000:
        content = (arr.shape, arr.tobytes())
    elif arr.ndim == 1 and arr.size <= 64 and arr.dtype.kind == "U":
        content = tuple(arr.tolist())
    if content is not None:
        key = (name, arr.dtype.str, content, tuple(sorted(attrs.items())))
        try:
            hit = _SHORT_COORDINATES.get(key)
        except TypeError:  # an unhashable attribute value: not cached
            key, hit = None, None
        if hit is not None:
            return hit[0], {k: v.copy(deep=False) for k, v in hit[1].items()}
    if key is not None and arr.dtype.kind in "iufb":  # kept: not a view of the caller's array
        values = arr.copy()
        values.setflags(write=False)
    var = {name: xr.Variable(name, values, attrs)}
    index = PandasIndex.from_variables(var, options={})
    index_vars = index.create_variables(var)
    if key is not None:
        if len(_SHORT_COORDINATES) >= 256:
            _SHORT_COORDINATES.clear()
        _SHORT_COORDINATES[key] = (index, index_vars)
        return index, {k: v.copy(deep=False) for k, v in index_vars.items()}
    return index, index_vars


@dataclass(frozen=True)
class ParameterRecord:
    """A parameter as a run used it: value (a number, or a table keyed e.g. by site), units,
    plausible interval, kind and source keys, recorded in the run's attributes."""

    name: str
    value: Any
    units: str
    low: Any = None
    high: Any = None
    kind: str = ""
    sources: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParameterRecord:
        """From one entry of the run's ``parameters`` attribute."""
        srcs = d.get("sources", d.get("source", ()))
        return cls(
            name=str(d.get("name", "?")),
            value=d.get("value"),
            units=str(d.get("units", "")),
            low=d.get("low"),
            high=d.get("high"),
            kind=str(d.get("kind", "")),
            sources=(srcs,) if isinstance(srcs, str) else tuple(str(s) for s in srcs),
        )


def _grid(da: xr.DataArray, *rest: str) -> np.ndarray:
    """The values of ``da`` (dims patient, site, then ``rest``) in that order of axes."""
    return np.asarray(da.transpose("patient", "site", *rest).values)


def _json(raw: Any, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(str(raw))
    except ValueError:
        return default


class Result:
    """Outcome of :func:`microneedling.simulate`: the labelled arrays, and typed access to what the
    run recorded about itself (course, warnings, parameters and sources, seed, version).

    Parameters
    ----------
    dataset:
        The labelled arrays (see the module docstring for the layout).
    """

    def __init__(self, dataset: xr.Dataset) -> None:
        self.dataset = dataset

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> xr.DataArray:
        return self.dataset[name]

    def __repr__(self) -> str:
        ds = self.dataset
        return (
            f"<Result {self.course_name!r}: patients={ds.sizes.get('patient', 0)}, "
            f"sites={self.sites}, time 0–{float(ds['time'].max()):g} d>"
        )

    @property
    def disclaimer(self) -> str:
        """The disclaimer the run carries (a model estimate, never a diagnosis)."""
        return str(self.dataset.attrs.get("disclaimer", ""))

    @property
    def course_name(self) -> str:
        """The course's name."""
        return str(self.dataset.attrs.get("course_name", ""))

    @property
    def course_toml(self) -> str:
        """The validated course as TOML text (empty if the run did not record it)."""
        return str(self.dataset.attrs.get("course_toml", "") or "")

    @property
    def course(self) -> Course | None:
        """The validated course this run simulated (``None`` if not recorded)."""
        text = self.course_toml
        return Course.from_toml_text(text, source="result.course_toml") if text else None

    @property
    def sites(self) -> list[str]:
        """The treated sites, in course order."""
        return [str(s) for s in self.dataset["site"].values]

    @property
    def warnings(self) -> list[str]:
        """Why the course is outside published practice (one line each; empty if none)."""
        raw = self.dataset.attrs.get("warnings")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return []
        parsed = _json(raw, None)
        if parsed is None:
            return [str(raw)]
        items = parsed if isinstance(parsed, list) else [parsed]
        return [
            "; ".join(f"{k}: {v}" for k, v in w.items()) if isinstance(w, dict) else str(w)
            for w in items
        ]

    @property
    def parameters_used(self) -> list[ParameterRecord]:
        """Every parameter the run looked up, with value, units, interval, kind and sources (names
        only, with empty records, for runs that recorded just the names)."""
        records = _json(self.dataset.attrs.get("parameters"), None)
        if isinstance(records, list) and records and isinstance(records[0], dict):
            return [ParameterRecord.from_dict(r) for r in records if isinstance(r, dict)]
        names = _json(self.dataset.attrs.get("parameters_used"), [])
        return [ParameterRecord(name=str(n), value=None, units="") for n in names]

    @property
    def parameter_names(self) -> list[str]:
        """Names of the parameters the run looked up."""
        return [r.name for r in self.parameters_used]

    @property
    def records_parameters(self) -> bool:
        """The run recorded each parameter's value and sources (not only the names)."""
        return "parameters" in self.dataset.attrs

    @property
    def parameter_set_label(self) -> str:
        """Label of the parameter set (``default`` for the shipped one)."""
        return str(self.dataset.attrs.get("parameter_set_label", ""))

    @property
    def parameter_set_hash(self) -> str:
        """Content hash of the parameter set the run used."""
        return str(self.dataset.attrs.get("parameter_set_hash", ""))

    @property
    def seed(self) -> int | None:
        """Seed of the uncertainty ensemble."""
        s = self.dataset.attrs.get("seed")
        return None if s is None else int(s)

    @property
    def n_draws(self) -> int:
        """Size of the uncertainty ensemble (0: nominal only)."""
        return int(self.dataset.attrs.get("n_draws", 0))

    @property
    def version(self) -> str:
        """The package version that made the run."""
        return str(self.dataset.attrs.get("microneedling_version", ""))

    def threshold(self, variable: str) -> float | None:
        """Visibility threshold of ``erythema`` or ``oedema`` recorded by the run."""
        raw = self.dataset.attrs.get(f"{variable}_threshold")
        if raw is None and variable in self.dataset:
            da = self.dataset[variable]
            raw = da.attrs.get("threshold", da.attrs.get(f"{variable}_threshold"))
        try:
            return None if raw is None else float(raw)
        except (TypeError, ValueError):
            return None

    def sources(self) -> list[Reference]:
        """The references this run depended on (those of every parameter it looked up)."""
        return [Reference(**r) for r in _json(self.dataset.attrs.get("sources"), [])]

    # --------------------------------------------------------------- end points
    def default_times(self) -> list[float]:
        """End-point read-out times: 1 and 3 months after the last session, and the horizon."""
        ds = self.dataset
        last = float(ds["session_day"].max(skipna=True))
        horizon = float(ds["time"].max())
        times = [t for t in (last + 30.0, last + 90.0) if t < horizon] + [horizon]
        return times

    def endpoints(
        self, times: Sequence[float] | None = None, layer: str = "papillary_dermis"
    ) -> pd.DataFrame:
        """Table of clinical end points, one row per (patient, site, end point, time).

        Columns: patient, site, claim, endpoint, variable, time_days, value, low, high, units.
        ``low``/``high`` are the ensemble interval when the run had one, else NaN. Time-resolved
        end points are read at ``times`` (days, nearest output time at or after each); course
        end points (downtime, risk, absorption) are summarised over sessions with ``time_days``
        NaN. Rows whose value is NaN (not applicable to the site) are dropped.
        """
        import pandas as pd

        ds = self.dataset
        times = list(self.default_times() if times is None else times)
        t_axis = ds["time"].values
        rows: list[dict[str, Any]] = []
        for ep in endpoint_variables():
            if ep.name not in ds:
                continue
            da = ds[ep.name]
            if "layer" in da.dims:
                da = da.sel(layer=layer)
            bounds = []
            for b in ("low", "high"):
                name = f"{ep.name}_{b}"
                bound = ds[name] if name in ds else None
                if bound is not None and "layer" in bound.dims:
                    bound = bound.sel(layer=layer)
                bounds.append(bound)
            units = da.attrs.get("units", "")
            label = ep.label
            patients = [str(p) for p in da["patient"].values]
            sites = [str(s) for s in da["site"].values]
            if ep.kind == "time":
                # (patient, site, time) arrays read once, then one column per read-out time
                values = _grid(da, "time")
                grids = [None if b is None else _grid(b, "time") for b in bounds]
                for t in times:
                    idx = int(np.searchsorted(t_axis, t - 1e-9))
                    idx = min(idx, len(t_axis) - 1)
                    self._rows(
                        rows,
                        ep,
                        label,
                        patients,
                        sites,
                        values[..., idx],
                        [None if g is None else g[..., idx] for g in grids],
                        float(t_axis[idx]),
                        units,
                    )
            else:
                red = getattr(da, ep.reduce)
                val = red("session", skipna=True)
                b2 = [
                    getattr(b, ep.reduce)("session", skipna=True) if b is not None else None
                    for b in bounds
                ]
                self._rows(
                    rows,
                    ep,
                    label,
                    patients,
                    sites,
                    _grid(val),
                    [None if b is None else _grid(b) for b in b2],
                    float("nan"),
                    units,
                )
        df = pd.DataFrame(rows)
        return df.dropna(subset=["value"]).reset_index(drop=True)

    @staticmethod
    def _rows(
        rows: list[dict[str, Any]],
        ep: Variable,
        label: str,
        patients: list[str],
        sites: list[str],
        values: np.ndarray,
        bounds: list[np.ndarray | None],
        t: float,
        units: str,
    ) -> None:
        """One row per (patient, site) of the (patient, site) arrays ``values`` and ``bounds``."""
        lows, highs = bounds
        for i, p in enumerate(patients):
            for j, s in enumerate(sites):
                rows.append(
                    {
                        "patient": p,
                        "site": s,
                        "claim": ep.claim,
                        "endpoint": label,
                        "variable": ep.name,
                        "time_days": t,
                        "value": float(values[i, j]),
                        "low": float(lows[i, j]) if lows is not None else np.nan,
                        "high": float(highs[i, j]) if highs is not None else np.nan,
                        "units": units,
                    }
                )

    # ------------------------------------------------------------------- output
    def to_netcdf(self, path: str | Path) -> Path:
        """Write the dataset to NetCDF-4 atomically (temporary file, then rename)."""

        return write_netcdf_atomic(self.dataset, path)

    @classmethod
    def from_netcdf(cls, path: str | Path) -> Result:
        """Read a result written by :meth:`to_netcdf`."""
        import xarray as xr

        with xr.open_dataset(path, engine="netcdf4") as ds:
            return cls(ds.load())
