"""``microneedling absorb`` and ``microneedling.studies.absorb``: the command writes every output, its
engine numbers are ``simulate``'s, the resolved cell conserves mass, and bad input is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from microneedling.about import DISCLAIMER
from microneedling.cli.app import app
from microneedling.course.model import Course
from microneedling.engine.prepare import prepare
from microneedling.engine.simulate import simulate
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.reports import absorb as absorb_report
from microneedling.studies import absorb
from tests.paths import EXAMPLES
from tests.reports.shell import check_charts, without_scripts

SERUM = EXAMPLES / "serum-absorption-study.toml"
MELASMA = EXAMPLES / "melasma-tranexamic-acid.toml"
NO_TOPICAL = EXAMPLES / "acne-scars-rolling-cheek.toml"
PNG = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args], prog_name="microneedling")


@pytest.fixture(scope="module")
def serum_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("absorb") / "serum"
    res = run("absorb", SERUM, "--out", out, "--draws", 4, "--quiet")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    return out


def test_command_writes_table_json_figures_and_report(serum_run: Path) -> None:
    names = {p.relative_to(serum_run).as_posix() for p in serum_run.rglob("*") if p.is_file()}
    assert names == {
        ".microneedling-run",
        "absorption.csv",
        "absorption.json",
        "report.html",
        "course.toml",
        "figures/map_cheek_s1.png",
        "figures/curves_cheek_s1.png",
    }
    for png in serum_run.glob("figures/*.png"):
        assert png.read_bytes()[:8] == PNG
    html = (serum_run / "report.html").read_text(encoding="utf-8")
    assert DISCLAIMER in html
    # self-contained: the charts are inlined Plotly figures (the PNGs are for print, not embedded)
    figures = check_charts(html)
    # amounts per session and per layer; for the one resolved case its maps, curves and layers
    assert set(figures) == {
        "chart-absorbed",
        "chart-absorbed-layers",
        "chart-curves-0",
        "chart-layers-0",
        "chart-map-0-0",
        "chart-map-0-1",
    }
    assert "<img" not in without_scripts(html)
    meta = json.loads((serum_run / "absorption.json").read_text(encoding="utf-8"))
    assert meta["disclaimer"] == DISCLAIMER and len(meta["sessions"]) == 1
    table = pd.read_csv(serum_run / "absorption.csv")
    row = table.iloc[0]
    # the resolved amounts add up: viable layers + SC + channel fluid = absorbed (zero-flux bottom)
    parts = row[
        [
            "resolved_sc_ug_cm2",
            "resolved_channel_ug_cm2",
            "resolved_viable_epidermis_ug_cm2",
            "resolved_papillary_dermis_ug_cm2",
            "resolved_reticular_dermis_ug_cm2",
        ]
    ].sum()
    assert parts == pytest.approx(row["resolved_absorbed_ug_cm2"], rel=1e-9)
    assert row["resolved_absorbed_ug_cm2"] + row["resolved_vehicle_left_ug_cm2"] == pytest.approx(
        row["dose_ug_cm2"], rel=1e-9
    )
    assert row["resolved_mass_balance_residual"] < 1e-10
    assert row["resolved_absorbed_ug_cm2"] > row["resolved_intact_ug_cm2"] > 0
    assert row["difference_pct"] == pytest.approx(
        100 * (row["channel_model_ug_cm2"] / row["resolved_absorbed_ug_cm2"] - 1), rel=1e-9
    )
    # like with like: the homogenised channel model within 5% of the resolved cell here
    # (docs/transport.md), while the engine's number adds the vehicle film, the follicles and the
    # share of channels filled (it is lower: a drying film, half the channels)
    assert abs(row["difference_pct"]) < 5.0
    assert row["absorbed_ug_cm2"] < row["channel_model_ug_cm2"]
    assert row["absorbed_ug_cm2_low"] <= row["absorbed_ug_cm2_high"] <= row["dose_ug_cm2"] + 1e-9


def test_engine_numbers_are_simulates(serum_run: Path) -> None:
    """Same course, same draws and seed: nominal and 10–90% interval equal ``simulate``'s."""
    table = pd.read_csv(serum_run / "absorption.csv")
    ds = simulate(Course.from_file(SERUM), draws=4).dataset
    for col, var in (
        ("absorbed_ug_cm2", "absorbed_amount"),
        ("enhancement_ratio", "enhancement_ratio"),
    ):
        for tag in ("", "_low", "_high"):
            sim = float(ds[var + tag].values.ravel()[0])
            assert table[col + tag].iloc[0] == pytest.approx(sim, rel=1e-12), (col, tag)


def test_every_session_of_a_course_no_resolved(tmp_path: Path) -> None:
    out = tmp_path / "melasma"
    res = run("absorb", MELASMA, "--out", out, "--no-resolved", "--draws", 0, "--quiet")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    table = pd.read_csv(out / "absorption.csv")
    assert len(table) == 12 and list(table["session"]) == list(range(1, 13))
    assert not any(c.startswith("resolved_") for c in table.columns)
    assert not (out / "figures").exists()
    ds = simulate(Course.from_file(MELASMA), draws=0).dataset
    np.testing.assert_allclose(
        table["absorbed_ug_cm2"], ds["absorbed_amount"].values.ravel()[:12], rtol=1e-12
    )
    assert DISCLAIMER in (out / "report.html").read_text(encoding="utf-8")


def test_session_geometry_is_the_engines() -> None:
    course = Course.from_file(MELASMA)
    ps = load_parameters()
    prep = prepare(course, ps)
    cases = absorb.topical_sessions(course, ps)
    assert len(cases) == 12
    for c in cases:
        assert c.channel_depth_um == pytest.approx(prep.penetration_depth_um[c.b, c.k], rel=1e-12)
        assert c.puncture_density_cm2 == pytest.approx(
            prep.puncture_density_cm2[c.b, c.k], rel=1e-12
        )
    # identical weekly sessions share one resolved solve
    assert len({c.resolved_key for c in cases}) == 1


def test_resolved_closure_and_intact_bounds() -> None:
    """Closure: the channel is shut by the end of a long contact; the cell with the channel
    delivers more than intact skin at every time; map and curves are written as PNG."""
    course = Course.from_file(SERUM)
    ps = load_parameters()
    (case,) = absorb.topical_sessions(course, ps)
    rv = absorb.resolve(case, ps, n_out=12)
    w, it = rv.with_channel, rv.intact
    assert np.all(w.absorbed > it.absorbed) and np.all(np.diff(w.absorbed) > 0)
    np.testing.assert_allclose(w.absorbed + w.vehicle, rv.dose, rtol=1e-10)
    assert w.mass_balance_residual < 1e-10 and it.mass_balance_residual < 1e-10
    # the interval-mean staircase integrates S = exp(-k t) exactly up to the cut-off
    starts, levels = absorb._closure(rv.k_close, 6 * 3600.0)
    ends = np.append(starts[1:], 6 * 3600.0)
    exact = (1 - np.exp(-rv.k_close * 6 * 3600.0)) / rv.k_close
    assert np.sum(levels * (ends - starts)) == pytest.approx(exact, rel=2 * absorb.CLOSURE_FLOOR)


def test_figures_are_png(tmp_path: Path) -> None:
    course = Course.from_file(MELASMA)
    ps = load_parameters()
    rv = absorb.resolve(absorb.topical_sessions(course, ps)[0], ps, n_out=6, grid=(12, 24))
    for fn in (absorb_report.plot_map, absorb_report.plot_curves):
        p = fn(rv, tmp_path / f"{fn.__name__}.png")
        assert p.read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


# ----------------------------------------------------------------------------- refusals
def test_course_without_topical_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "none"
    res = run("absorb", NO_TOPICAL, "--out", out)
    assert res.exit_code == 2
    assert "sessions[].topical" in res.output  # type: ignore[attr-defined]
    assert "no absorption to report" in res.output  # type: ignore[attr-defined]
    assert not out.exists()
    with pytest.raises(InputError, match=r"sessions\[\]\.topical"):
        absorb.topical_sessions(Course.from_file(NO_TOPICAL), load_parameters())


def test_bad_course_and_existing_output_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        SERUM.read_text(encoding="utf-8").replace(
            "concentration_mg_ml = 50.0", "concentration_mg_ml = -5.0"
        ),
        encoding="utf-8",
    )
    res = run("absorb", bad, "--out", tmp_path / "x")
    assert res.exit_code == 2
    assert "concentration_mg_ml" in res.output  # type: ignore[attr-defined]
    assert not (tmp_path / "x").exists()
    res = run("absorb", tmp_path / "missing.toml", "--out", tmp_path / "y")
    assert res.exit_code == 2
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine", encoding="utf-8")
    res = run("absorb", SERUM, "--out", taken, "--overwrite", "--no-resolved", "--draws", 0)
    assert res.exit_code == 1
    assert (taken / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_in_vitro_topical_resolves_the_franz_cell() -> None:
    """topical.in_vitro: the resolved cell is the diffusion cell (no clearance, the receptor a
    perfect sink below the skin, occluded closure); what leaves the skin reaches the receptor, and
    a deeper channel (a shorter path to the receptor) passes more to it (a 200 µL/cm² donor for
    2 h, not depleted)."""
    ps = load_parameters()
    data = Course.from_file(SERUM).to_dict()
    data["sessions"][0]["topical"].update(in_vitro=True, volume_ul_cm2=200.0, contact_hours=2.0)
    course = Course.from_dict(data, source="test")
    (case,) = absorb.topical_sessions(course, ps)
    assert case.in_vitro
    rv = absorb.resolve(case, ps, n_out=6, grid=(12, 24))
    assert rv.cell.bottom == "sink" and max(rv.cell.layer_clearance) == 0.0
    (vivo,) = absorb.topical_sessions(Course.from_file(SERUM), ps)
    assert rv.k_close < 0.1 * absorb.resolve(vivo, ps, n_out=6, grid=(12, 24)).k_close
    w = rv.with_channel
    assert np.all(w.passed_bottom >= 0.0) and w.passed_bottom[-1] > 0.0
    assert w.mass_balance_residual < 1e-10
    deep = absorb.resolve(
        dataclasses.replace(case, channel_depth_um=2.0 * case.channel_depth_um),
        ps, n_out=6, grid=(12, 24),
    )  # fmt: skip
    assert deep.with_channel.passed_bottom[-1] > 1.03 * w.passed_bottom[-1]  # +8% at 2x depth
