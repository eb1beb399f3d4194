"""Shared fixtures: a small synthetic, layout-correct Result and a tiny parameter set.

The synthetic Result follows the Dataset layout documented in ``microneedling.engine.result`` (1
patient, 2 sites, 3 layers, 201 time points, 3 sessions, ``_low``/``_high`` bands and the global attributes)
with simple closed-form curves, so report and CLI output code can be tested without the physics.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import microneedling
from microneedling.engine.result import Result
from microneedling.parameters.parameter_set import ParameterSet, load_parameters


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal gives it, however the suite was started: a shell that starts a command
    in the background (``.ci/run &``, some CI runners) starts it with SIGINT ignored, which Python
    keeps, so the interrupt tests would see no KeyboardInterrupt (in the process or in the
    subprocesses they start, which inherit the disposition)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


SITES = ("cheek", "forehead")
LAYERS = ("epidermis", "papillary_dermis", "reticular_dermis")
SESSION_DAYS = (0.0, 28.0, 56.0)
HORIZON_DAYS = 180.0
N_TIME = 201
#: Contains HTML-special characters on purpose (the report must escape it).
COURSE_NAME = 'Rolling scars <cheek> & "forehead"'
ERYTHEMA_THRESHOLD = 0.2
OEDEMA_THRESHOLD = 0.15
WARNINGS = ["cheek: needle length 1.5 mm is at the upper end of published practice"]


def _course_toml() -> str:
    """A valid course matching the synthetic Result: a pen on cheek and forehead, one session per
    site on each of SESSION_DAYS, 1.5 mm on the cheek (the warning above) and 0.5 mm on the
    forehead."""
    sessions = "".join(
        f"""
[[sessions]]
day = {d:g}
site = "{site}"
needle_length_mm = {1.5 if site == "cheek" else 0.5}
passes = 4
pen_speed_cm_s = 2.0
"""
        for d in SESSION_DAYS
        for site in SITES
    )
    sites = "".join(f'\n[[sites]]\nname = "{s}"\narea_cm2 = 40.0\n' for s in SITES)
    return f"""\
name = {json.dumps(COURSE_NAME)}
horizon_days = {HORIZON_DAYS:g}

[patient]
age_years = 34
sex = "female"
fitzpatrick = "III"
{sites}
[device]
type = "pen"
needle_count = 12
needle_diameter_mm = 0.25
tip_radius_um = 5.0
tip = "cone"
max_needle_length_mm = 2.5
frequency_hz = 100.0
cartridge_width_mm = 9.0
{sessions}"""


COURSE_TOML = _course_toml()
"""The synthetic Result's ``course_toml`` attribute: a valid course file."""

PARAMETER_FILES = {
    "needles.toml": """\
[insertion_efficiency]
value = 0.5
units = "1"
domain = "unit_interval"
low = 0.2
high = 0.77
source = ["zztest_alpha2001", "zztest_beta2010"]
kind = "derived"
note = "channel depth / needle length"

[drum_needles]
value = 192.0
units = "1"
domain = "integer>=1"
source = "zztest_beta2010"
kind = "literature"
""",
    "healing.toml": """\
[mu_I]
value = 1.2
units = "1/d"
domain = "positive"
low = 0.8
high = 2.0
source = "zztest_alpha2001"
kind = "estimate"
note = "inflammation decay"

[unused_rate]
value = 3.0
units = "1/d"
domain = "nonnegative"
source = "zztest_gamma2020"
kind = "estimate"
""",
    "skin.toml": """\
[dermis_thickness]
value = {cheek = 1500.0, forehead = 1200.0}
units = "um"
domain = "positive"
low = {cheek = 1300.0, forehead = 1000.0}
high = {cheek = 1800.0, forehead = 1400.0}
source = "zztest_gamma2020"
kind = "literature"
""",
    "references/zztest.toml": """\
[zztest_alpha2001]
citation = "Alpha A (2001). A synthetic reference for tests <1>. J Test 1:1-2."
url = "https://doi.org/10.5555/alpha"

[zztest_beta2010]
citation = "Beta B (2010). Another synthetic reference. J Test 2:3-4."

[zztest_gamma2020]
citation = "Gamma G (2020). Third synthetic reference. J Test 3:5-6."
url = "https://doi.org/10.5555/gamma"
""",
}

#: Parameters the synthetic run "looked up" (``healing.unused_rate`` is deliberately not used).
USED_PARAMETERS = [
    "healing.mu_I",
    "needles.drum_needles",
    "needles.insertion_efficiency",
    "skin.dermis_thickness",
]


def write_parameter_dir(root: Path) -> Path:
    """Write the tiny test parameter set under ``root`` and return its directory."""
    for rel, text in PARAMETER_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


def _after(t: np.ndarray, d: float) -> np.ndarray:
    """Days since session day ``d`` (NaN before it)."""
    return np.where(t >= d, t - d, np.nan)


def _pulses(t: np.ndarray, amp: float, rise: float, decay: float) -> np.ndarray:
    """Sum over sessions of amp·(1 − e^{−s/rise})·e^{−s/decay}, s = days since the session."""
    out = np.zeros_like(t)
    for d in SESSION_DAYS:
        s = _after(t, d)
        out += np.nan_to_num(amp * (1.0 - np.exp(-s / rise)) * np.exp(-s / decay))
    return out


def _spikes(t: np.ndarray, amp: float, decay: float) -> np.ndarray:
    out = np.zeros_like(t)
    for d in SESSION_DAYS:
        out += np.nan_to_num(amp * np.exp(-_after(t, d) / decay))
    return out


def build_synthetic_dataset(ps: ParameterSet) -> xr.Dataset:
    """The synthetic Dataset; ``ps`` supplies the provenance attributes."""
    t = np.linspace(0.0, HORIZON_DAYS, N_TIME)
    nS, nL, nK = len(SITES), len(LAYERS), len(SESSION_DAYS)
    site_scale = np.array([1.0, 0.6])  # cheek responds more than forehead

    def pst(per_site: list[np.ndarray]) -> np.ndarray:  # (patient, site, time)
        return np.stack(per_site)[None, :, :]

    collagen = _pulses(t, 8.0, 12.0, 250.0)
    elastin = _pulses(t, 4.0, 20.0, 300.0)
    layered_amp = np.array([np.nan, 1.0, 0.5])  # epidermis NaN, papillary, reticular

    def psl(base: np.ndarray) -> np.ndarray:  # (patient, site, layer, time)
        return (site_scale[:, None, None] * layered_amp[None, :, None] * base[None, None, :])[None]

    coll_p = [s * collagen for s in site_scale]
    time_vars: dict[str, tuple[np.ndarray, str, str]] = {
        "erythema": (pst([s * _spikes(t, 0.8, 1.0) for s in site_scale]), "1", "Erythema score"),
        "oedema": (pst([s * _spikes(t, 0.5, 0.7) for s in site_scale]), "1", "Oedema score"),
        "epidermal_thickness_change": (
            pst([0.5 * c for c in coll_p]),
            "%",
            "Epidermal thickness change",
        ),
        "dermal_density_change": (pst([0.8 * c for c in coll_p]), "%", "Dermal density change"),
        "dermal_thickness": (pst([1500.0 + 5.0 * c for c in coll_p]), "um", "Dermal thickness"),
        "elasticity_index": (pst([0.6 + 0.004 * c for c in coll_p]), "1", "Elasticity index"),
        "wrinkle_depth": (pst([120.0 - 2.0 * c for c in coll_p]), "um", "Wrinkle depth"),
        "pore_diameter": (
            pst([150.0 - c for c in coll_p[:1]] + [np.full_like(t, np.nan)]),
            "um",
            "Pore diameter",
        ),
        "scar_depth": (
            pst([0.5 - 0.01 * coll_p[0], np.full_like(t, np.nan)]),
            "mm",
            "Atrophic scar depth",
        ),
        "striae_width": (pst([np.full_like(t, np.nan)] * nS), "mm", "Stretch-mark width"),
        "melanin_index": (pst([0.3 + 0.001 * c for c in coll_p]), "1", "Melanin index"),
    }
    layer_vars = {
        "collagen_change": (psl(collagen), "%", "Collagen I+III change"),
        "collagen_I_change": (psl(0.7 * collagen), "%", "Collagen I change"),
        "collagen_III_change": (psl(1.6 * collagen), "%", "Collagen III change"),
        "elastin_change": (psl(elastin), "%", "Elastin change"),
        "new_elastin_change": (psl(0.5 * elastin), "%", "New elastin change"),
        "inflammation": (psl(_spikes(t, 1.0, 1.5)), "1", "Inflammation"),
        "fibroblasts": (psl(_pulses(t, 1.0, 3.0, 14.0)), "1", "Fibroblast activity"),
    }
    one = np.ones((1, nS, nK))
    per_site = site_scale[None, :, None]
    session_vars = {
        "session_day": (one * np.array(SESSION_DAYS)[None, None, :], "d", "Session day"),
        "needle_length": (one * np.array([1.5, 0.5])[None, :, None], "mm", "Needle length"),
        "puncture_density": (one * 250.0, "cm^-2", "Puncture density"),
        "penetration_depth": (
            one * np.array([600.0, 250.0])[None, :, None],
            "um",
            "Penetration depth",
        ),
        "erythema_days": (one * 2.0 * per_site, "d", "Visible redness"),
        "oedema_days": (one * 1.0 * per_site, "d", "Visible swelling"),
        "downtime_days": (one * 2.5 * per_site, "d", "Downtime (any visible sign)"),
        "pih_risk": (one * 0.05 * per_site, "1", "PIH risk"),
        "reaches_capillaries": (
            one * np.array([1.0, 0.0])[None, :, None],
            "1",
            "Reaches capillaries",
        ),
        "absorbed_amount": (
            one * np.array([12.0, 5.0])[None, :, None] * np.array([1.0, 0.9, 0.8]),
            "ug/cm^2",
            "Topical absorbed",
        ),
        "absorbed_intact": (one * 0.5, "ug/cm^2", "Absorbed through intact skin"),
    }
    session_vars["enhancement_ratio"] = (
        session_vars["absorbed_amount"][0] / 0.5,
        "1",
        "Absorption enhancement ratio",
    )
    inj = np.array([0.05, 0.02, 0.005])
    session_layer_vars = {
        "injured_fraction": (
            np.ones((1, nS, nK, nL)) * inj * site_scale[None, :, None, None],
            "1",
            "Injured volume fraction",
        ),
        "absorbed_by_layer": (
            session_vars["absorbed_amount"][0][..., None] * np.array([0.2, 0.5, 0.3]),
            "ug/cm^2",
            "Absorbed by layer",
        ),
    }
    banded = {
        *time_vars,
        *layer_vars,
        "erythema_days",
        "oedema_days",
        "downtime_days",
        "pih_risk",
        "absorbed_amount",
        "enhancement_ratio",
        "penetration_depth",
    }

    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {}
    groups = (
        (("patient", "site", "time"), time_vars),
        (("patient", "site", "layer", "time"), layer_vars),
        (("patient", "site", "session"), session_vars),
        (("patient", "site", "session", "layer"), session_layer_vars),
    )
    for dims, group in groups:
        for name, (arr, units, long_name) in group.items():
            data_vars[name] = (dims, arr, {"units": units, "long_name": long_name})
            if name in banded:
                lo, hi = np.minimum(0.7 * arr, 1.3 * arr), np.maximum(0.7 * arr, 1.3 * arr)
                for tag, a, q in (("low", lo, "10th"), ("high", hi, "90th")):
                    data_vars[f"{name}_{tag}"] = (
                        dims,
                        a,
                        {
                            "units": units,
                            "long_name": f"{long_name} ({q} percentile)",
                            "interval": "10th-90th percentile over parameter draws",
                        },
                    )
    used = sorted(USED_PARAMETERS)
    refs = ps.references(used)
    attrs = {
        "disclaimer": microneedling.DISCLAIMER,
        "microneedling_version": microneedling.__version__,
        "parameter_set_hash": ps.hash,
        "parameter_set_label": ps.label,
        "seed": 12345,
        "course_name": COURSE_NAME,
        "course_toml": COURSE_TOML,
        "sources": json.dumps(
            [{"key": r.key, "citation": r.citation, "url": r.url, "note": r.note} for r in refs]
        ),
        "parameters_used": json.dumps(used),
        "n_draws": 32,
        "created": "2025-01-01T00:00:00+00:00",
        "erythema_threshold": ERYTHEMA_THRESHOLD,
        "oedema_threshold": OEDEMA_THRESHOLD,
        "warnings": json.dumps(WARNINGS),
    }
    coords = {
        "patient": ("patient", np.array(["p1"], dtype=object)),
        "site": ("site", np.array(SITES, dtype=object)),
        "layer": ("layer", np.array(LAYERS, dtype=object)),
        "time": ("time", t, {"units": "d", "long_name": "Time since first session"}),
        "session": ("session", np.arange(1, nK + 1)),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


@pytest.fixture(scope="session")
def param_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny parameter directory (three groups, three synthetic references)."""
    return write_parameter_dir(tmp_path_factory.mktemp("params"))


@pytest.fixture(scope="session")
def param_set(param_dir: Path) -> ParameterSet:
    return load_parameters(param_dir)


@pytest.fixture
def synthetic_result(param_set: ParameterSet) -> Result:
    """A fresh synthetic Result (tests may modify it)."""
    return Result(build_synthetic_dataset(param_set))


@pytest.fixture
def run_dir(tmp_path: Path, synthetic_result: Result) -> Path:
    """A run directory holding only ``result.nc`` of the synthetic Result."""
    d = tmp_path / "run"
    d.mkdir()
    synthetic_result.to_netcdf(d / "result.nc")
    return d
