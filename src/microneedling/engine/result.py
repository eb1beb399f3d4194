"""Result of a simulation: a labelled xarray.Dataset inside, clinical end points outside.

Layout of :attr:`Result.dataset` (every variable has ``units`` and ``long_name`` attributes):

=====================================  ===========================================  =========
dims                                   variables                                    units
=====================================  ===========================================  =========
(patient, site, time)                  erythema, oedema                             1
                                       epidermal_thickness_change,                  %
                                       dermal_density_change
                                       dermal_thickness                             um
                                       elasticity_index                             1
                                       wrinkle_depth, pore_diameter                 um
                                       scar_depth, striae_width                     mm
                                       melanin_index                                1
(patient, site, layer, time)           collagen_change, collagen_I_change,          %
                                       collagen_III_change, elastin_change,
                                       new_elastin_change
                                       inflammation, fibroblasts                    1
(patient, site, session)               session_day                                  d
                                       needle_length                                mm
                                       puncture_density                             cm^-2
                                       penetration_depth                            um
                                       erythema_days, oedema_days                   d
                                       pih_risk                                     1
                                       reaches_capillaries                          1
                                       absorbed_amount, absorbed_intact             ug/cm^2
                                       enhancement_ratio                            1
(patient, site, session, layer)        injured_fraction                             1
                                       absorbed_by_layer                            ug/cm^2
=====================================  ===========================================  =========

Observables that do not apply to a site (``scar_depth`` without an acne-scar condition, ...) are NaN.
Layer-resolved collagen and elastin are NaN for the epidermis. Where the run had an uncertainty
ensemble, each observable ``X`` has ``X_low`` and ``X_high`` (10th and 90th percentiles over the
parameter draws; attrs ``interval``) beside the nominal value. Global attributes: ``disclaimer``,
``microneedling_version``, ``parameter_set_hash``, ``parameter_set_label``, ``seed``, ``course_name``,
``course_toml``, ``sources`` (JSON list of references), ``parameters_used`` (JSON list of names),
``n_draws``, ``created``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from microneedling.io import atomic_path
from microneedling.parameters.parameter_set import Reference

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

    from microneedling.parameters.parameter_set import Reference


@dataclass(frozen=True)
class Endpoint:
    """A clinical end point reported in tables: a dataset variable and how to summarise it."""

    variable: str
    label: str
    claim: str
    per: str  # "time" (read at chosen times) or "course" (summarised over sessions)
    reduce: str = ""  # for per == "course": "sum", "max" or "mean" over sessions


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("collagen_change", "Dermal collagen (I+III), papillary", "collagen", "time"),
    Endpoint("elastin_change", "Dermal elastin, papillary", "elastin", "time"),
    Endpoint("dermal_density_change", "Dermal density (ultrasound)", "collagen", "time"),
    Endpoint("dermal_thickness", "Dermal thickness", "texture", "time"),
    Endpoint("epidermal_thickness_change", "Epidermal thickness", "texture", "time"),
    Endpoint("elasticity_index", "Elasticity index (R2-like)", "firmness", "time"),
    Endpoint("wrinkle_depth", "Wrinkle depth", "wrinkles", "time"),
    Endpoint("scar_depth", "Atrophic scar depth", "acne scars", "time"),
    Endpoint("pore_diameter", "Pore diameter", "pores", "time"),
    Endpoint("striae_width", "Stretch-mark width", "stretch marks", "time"),
    Endpoint("melanin_index", "Melanin index", "pigmentation", "time"),
    Endpoint("erythema_days", "Visible redness, all sessions", "downtime", "course", "sum"),
    Endpoint("oedema_days", "Visible swelling, all sessions", "downtime", "course", "sum"),
    Endpoint("pih_risk", "Post-inflammatory hyperpigmentation risk", "risk", "course", "max"),
    Endpoint("absorbed_amount", "Topical absorbed per session", "absorption", "course", "mean"),
    Endpoint("enhancement_ratio", "Absorption vs intact skin", "absorption", "course", "mean"),
)


class Result:
    """Outcome of :func:`microneedling.simulate`.

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
            f"<Result {ds.attrs.get('course_name', '')!r}: patients={ds.sizes.get('patient', 0)}, "
            f"sites={list(ds['site'].values)}, time 0–{float(ds['time'].max()):g} d>"
        )

    @property
    def disclaimer(self) -> str:
        return str(self.dataset.attrs.get("disclaimer", ""))

    def sources(self) -> list[Reference]:
        """The references this run depended on (those of every parameter it looked up)."""

        return [Reference(**r) for r in json.loads(self.dataset.attrs.get("sources", "[]"))]

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
        import numpy as np
        import pandas as pd

        ds = self.dataset
        times = list(self.default_times() if times is None else times)
        t_axis = ds["time"].values
        rows: list[dict[str, Any]] = []
        for ep in ENDPOINTS:
            if ep.variable not in ds:
                continue
            da = ds[ep.variable]
            if "layer" in da.dims:
                da = da.sel(layer=layer)
            bounds = [
                ds[f"{ep.variable}_{b}"].sel(layer=layer)
                if f"{ep.variable}_{b}" in ds and "layer" in ds[f"{ep.variable}_{b}"].dims
                else ds.get(f"{ep.variable}_{b}")
                for b in ("low", "high")
            ]
            units = da.attrs.get("units", "")
            label = ep.label
            if ep.per == "time":
                for t in times:
                    idx = int(np.searchsorted(t_axis, t - 1e-9))
                    idx = min(idx, len(t_axis) - 1)
                    sel = {"time": idx}
                    self._rows(
                        rows, ep, label, da.isel(sel), bounds, sel, float(t_axis[idx]), units
                    )
            else:
                red = getattr(da, ep.reduce)
                val = red("session", skipna=True)
                b2 = [
                    getattr(b, ep.reduce)("session", skipna=True) if b is not None else None
                    for b in bounds
                ]
                self._rows(rows, ep, label, val, b2, None, float("nan"), units)
        df = pd.DataFrame(rows)
        return df.dropna(subset=["value"]).reset_index(drop=True)

    @staticmethod
    def _rows(
        rows: list[dict[str, Any]],
        ep: Endpoint,
        label: str,
        val: xr.DataArray,
        bounds: list[Any],
        sel: dict[str, int] | None,
        t: float,
        units: str,
    ) -> None:
        import numpy as np

        lows = bounds[0].isel(sel) if (bounds[0] is not None and sel) else bounds[0]
        highs = bounds[1].isel(sel) if (bounds[1] is not None and sel) else bounds[1]
        for p in val["patient"].values:
            for s in val["site"].values:
                v = float(val.sel(patient=p, site=s))
                lo = float(lows.sel(patient=p, site=s)) if lows is not None else np.nan
                hi = float(highs.sel(patient=p, site=s)) if highs is not None else np.nan
                rows.append(
                    {
                        "patient": str(p),
                        "site": str(s),
                        "claim": ep.claim,
                        "endpoint": label,
                        "variable": ep.variable,
                        "time_days": t,
                        "value": v,
                        "low": lo,
                        "high": hi,
                        "units": units,
                    }
                )

    # ------------------------------------------------------------------- output
    def to_netcdf(self, path: str | Path) -> Path:
        """Write the dataset to NetCDF-4 atomically (temporary file, then rename)."""

        path = Path(path)
        with atomic_path(path) as tmp:
            self.dataset.to_netcdf(tmp, engine="netcdf4")
        return path

    @classmethod
    def from_netcdf(cls, path: str | Path) -> Result:
        """Read a result written by :meth:`to_netcdf`."""
        import xarray as xr

        with xr.open_dataset(path, engine="netcdf4") as ds:
            return cls(ds.load())
