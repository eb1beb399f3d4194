"""The physics parameter files (skin, needles, transport), their references and molecules.toml.

Each file must load on its own, cite only keys of our own reference files, every unit must parse and convert
to the unit the code asks for, every value must lie in its plausible interval, and the builders
the physics uses must read every parameter.
"""

from __future__ import annotations

import math
import shutil
import tomllib
from pathlib import Path

import pytest

from microneedling.parameters.molecules import load_molecules
from microneedling.parameters.parameter_set import ParameterSet, load_parameters, load_references
from microneedling.physics import needles as nd
from microneedling.physics import transport as tr
from microneedling.units import conversion_factor, parse_unit
from tests.paths import DATA

GROUPS = ("skin", "needles", "transport")

# the SI unit each parameter is read in by the physics code
SI_UNITS = {
    "skin.sc_thickness": "m",
    "skin.viable_epidermis_thickness": "m",
    "skin.dermis_thickness_female": "m",
    "skin.dermis_thickness_male": "m",
    "skin.epidermis_male_factor": "1",
    "skin.papillary_fraction": "1",
    "skin.reference_age": "yr",
    "skin.epidermal_thinning_male": "1",
    "skin.epidermal_thinning_female": "1",
    "skin.dermal_thinning": "1",
    "needles.channel_radius_ratio": "1",
    "needles.puncture_deflection": "m",
    "needles.tip_radius_ref": "m",
    "needles.tip_exponent": "1",
    "needles.critical_speed": "m/s",
    "needles.insertion_factor": "1",
    "needles.roller_speed": "m/s",
    "needles.stamp_speed": "m/s",
    "needles.pen_stroke_offset": "m",
    "needles.hand_force": "kg*m/s^2",
    "needles.roller_contact_fraction": "1",
    "needles.puncture_force": "kg*m/s^2",
    "needles.shaft_resistance": "kg/s^2",
    "needles.cone_length": "m",
    "needles.depth_smoothness": "1",
    "needles.capillary_loop_fraction": "1",
    "needles.damage_zone_factor": "1",
    "needles.roller_sweep_fraction": "1",
    "needles.mf8_needles": "1",
    "needles.mf8_drum_diameter": "m",
    "needles.mf8_drum_width": "m",
    "needles.mf8_needle_diameter": "m",
    "needles.mf8_needle_length": "m",
    "needles.pen_needles": "1",
    "needles.pen_stroke_frequency": "Hz",
    "transport.potts_guy_intercept": "1",
    "transport.potts_guy_logkow_slope": "1",
    "transport.potts_guy_mw_slope": "1",
    "transport.dermwin_intercept": "1",
    "transport.dermwin_logkow_slope": "1",
    "transport.dermwin_mw_slope": "1",
    "transport.intact_mw_limit": "g/mol",
    "transport.k_close_open": "1/s",
    "transport.k_close_occluded": "1/s",
    "transport.clearance_rate": "1/s",
    "transport.tissue_partition": "1",
    "transport.dve_intercept": "1",
    "transport.dve_mw_exponent": "1",
    "transport.water_viscosity": "kg/m/s",
    "transport.enhancement_floor_fraction": "1",
    "transport.polar_pathway_coefficient": "m/s",
    "transport.polar_pore_radius": "m",
    "transport.ion_pair_drop": "1",
    "transport.skin_surface_ph": "1",
    "transport.closure_size_exponent": "1",
    "transport.closure_reference_radius": "m",
    "transport.follicular_kp_ref": "m/s",
    "transport.follicular_reference_diffusivity": "m^2/s",
    "transport.follicular_site_factor": "1",
    "transport.channel_fill_fraction": "1",
    "transport.channel_fill_fraction_before": "1",
    "transport.water_evaporation": "kg/m^2/s",
    "transport.volatile_fraction": "1",
    "transport.dry_deposit_availability": "1",
    "transport.superficial_sc": "m",
    "transport.superficial_sc_time": "s",
    "transport.sc_partition_lipid_coefficient": "1",
    "transport.sc_partition_lipid_exponent": "1",
    "transport.sc_partition_protein_coefficient": "1",
    "transport.sc_partition_protein_exponent": "1",
    "transport.sc_partition_water": "1",
}


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parameter directory holding only our three parameter and reference files."""
    d = tmp_path_factory.mktemp("physics_params")
    (d / "references").mkdir()
    for g in GROUPS:
        shutil.copy(DATA / "parameters" / f"{g}.toml", d / f"{g}.toml")
        shutil.copy(DATA / "references" / f"{g}.toml", d / "references" / f"{g}.toml")
    return d


@pytest.fixture(scope="module")
def ps(own_dir: Path) -> ParameterSet:
    return load_parameters(own_dir)


@pytest.fixture(scope="module")
def own_refs() -> dict[str, object]:
    return dict(load_references([DATA / "references" / f"{g}.toml" for g in GROUPS]))


def test_every_parameter_is_known_and_read_in_si(ps: ParameterSet) -> None:
    names = [n for g in GROUPS for n in ps.names(g)]
    assert sorted(names) == sorted(SI_UNITS)
    for name, si in SI_UNITS.items():
        p = ps.parameter(name)
        parse_unit(p.units)
        conversion_factor(p.units, si)  # raises on a dimension mismatch
        keys = list(p.value) if isinstance(p.value, dict) else [None]
        for k in keys:
            v = p.as_units(si, key=k)
            lo, hi = p.bounds_as(si, key=k)
            assert math.isfinite(v)
            assert lo <= v <= hi, f"{name}[{k}] = {v} outside [{lo}, {hi}]"


def test_sources_resolve_in_our_own_bibliography(
    ps: ParameterSet, own_refs: dict[str, object]
) -> None:
    for g in GROUPS:
        for name in ps.names(g):
            p = ps.parameter(name)
            assert p.sources, name
            for s in p.sources:
                assert s in own_refs, f"{name}: source {s!r} not in our reference files"
            assert p.note.strip(), f"{name}: every parameter needs a note"
            if p.kind == "estimate":
                assert len(p.note) > 40, f"{name}: an estimate must say why"


def test_reference_files_well_formed() -> None:
    seen: dict[str, str] = {}
    for g in GROUPS:
        with open(DATA / "references" / f"{g}.toml", "rb") as fh:
            raw = tomllib.load(fh)
        for key, entry in raw.items():
            assert entry.get("citation"), key
            if key in seen:
                assert seen[key] == entry["citation"], f"{key}: differing citations"
            seen[key] = entry["citation"]
    # our bibliography is consistent with every other reference file of the package
    load_references()


def test_site_tables_cover_every_site(ps: ParameterSet) -> None:
    for name in ps.names("skin"):
        p = ps.parameter(name)
        if isinstance(p.value, dict):
            assert set(p.value) == set(nd.SITES), name
            assert isinstance(p.low, dict) and isinstance(p.high, dict), name


def test_builders_read_every_parameter(ps: ParameterSet) -> None:
    view = ps.recording()
    nd.SkinParameters.from_parameters(view)
    nd.NeedleParameters.from_parameters(view)
    nd.DeviceGeometry.mf8(view)
    view.value("needles.mf8_needle_length", "m")
    view.value("needles.pen_needles", "1")
    view.value("needles.pen_stroke_frequency", "Hz")
    tr.TransportParameters.from_parameters(view)
    view.table("transport.follicular_site_factor", "1")  # per site, read by the engine glue
    view.value("transport.channel_fill_fraction_before", "1")  # engine glue: product applied first
    assert sorted(view.used) == sorted(SI_UNITS)


def test_key_published_numbers(ps: ParameterSet) -> None:
    # numbers copied from the research notes, pinned so an edit has to be deliberate
    assert ps.value("needles.mf8_needles", "1") == 192
    assert ps.value("needles.mf8_drum_diameter", "cm") == pytest.approx(2.0)
    # Kalluri 2011: rat insertion factor 152.5/(770 - 128) with the roller's puncture dimple
    assert ps.value("needles.insertion_factor", "1", key="rat") == pytest.approx(
        152.5 / (770 - 128), abs=0.005
    )
    assert ps.value("needles.tip_radius_ref", "um") == 4.0  # Kalluri 2011 SEM
    assert ps.value("skin.sc_thickness", "um", key="cheek") == pytest.approx(16.8)
    assert ps.value("skin.dermis_thickness_male", "mm", key="forehead") == pytest.approx(1.17)
    assert ps.value("skin.epidermal_thinning_male", "%") == pytest.approx(7.2)
    assert ps.value("transport.potts_guy_intercept", "1") == -6.3
    assert ps.parameter("transport.clearance_rate").bounds_as("1/s") == (
        pytest.approx(0.9e-4),
        pytest.approx(14e-4),
    )
    # humans recover barrier within 2 h without occlusion (Gupta 2011): t1/2 <= 2 h
    assert math.log(2) / ps.value("transport.k_close_open", "1/h") <= 2.0
    assert ps.value("transport.k_close_occluded", "1/h") < ps.value("transport.k_close_open", "1/h")


def test_molecules_file_units_and_intervals(own_refs: dict[str, object]) -> None:
    with open(DATA / "molecules.toml", "rb") as fh:
        raw = tomllib.load(fh)
    si = {"mw": "g/mol", "log_kow": "1", "d_aq": "m^2/s", "charge": "1", "radius": "m"}
    mols = load_molecules(references=own_refs.keys())
    assert set(mols) == {k for k in raw if not k.startswith("_")}
    for key, table in raw.items():
        if key.startswith("_"):
            continue
        for prop, unit in si.items():
            if prop not in table:
                assert prop == "radius", f"{key}: missing {prop}"
                continue
            e = table[prop]
            f = conversion_factor(e["units"], unit)
            v = e["value"] * f
            srcs = [e["source"]] if isinstance(e["source"], str) else e["source"]
            assert all(s in own_refs for s in srcs), (key, prop)
            assert e.get("note", "").strip(), (key, prop)
            assert e["kind"] in ("literature", "derived", "estimate", "calibrated")
            if math.isnan(v):
                assert prop == "log_kow", (key, prop)
                continue
            lo = e.get("low", e["value"]) * f
            hi = e.get("high", e["value"]) * f
            assert lo <= v <= hi, (key, prop, lo, v, hi)
