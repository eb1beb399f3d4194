"""The ``microneedling`` command line, through typer's CliRunner.

Most tests replace the engine's ``simulate`` by a stub returning the synthetic Result of
conftest.py, so the CLI's own behaviour (exit codes, atomic output, tables) is tested without the
physics; ``test_simulate_end_to_end`` runs the real model on a shipped example.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import microneedling
from microneedling.cli.app import app
from microneedling.engine.result import Result
from microneedling.io import RUN_MARKER, read_marker
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from tests.conftest import COURSE_NAME, SITES, USED_PARAMETERS, WARNINGS, build_synthetic_dataset
from tests.paths import REPO as ROOT

EXAMPLE = ROOT / "examples" / "acne-scars-rolling-cheek.toml"
HAVE_COURSE = importlib.util.find_spec("microneedling.course") is not None
needs_course = pytest.mark.skipif(
    not (HAVE_COURSE and EXAMPLE.is_file()), reason="course.py or the shipped example missing"
)

runner = CliRunner(env={"COLUMNS": "160"})  # tables at a fixed width, in any terminal


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], prog_name="microneedling")


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# ----------------------------------------------------------------------------- basics
def test_help_lists_commands() -> None:
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("simulate", "sources", "parameters"):
        assert cmd in res.stdout
    res = invoke("simulate", "--help")
    assert res.exit_code == 0
    for opt in ("--out", "--overwrite", "--draws", "--no-figures", "--quiet"):
        assert opt in res.stdout


def test_import_and_help_stay_light() -> None:
    """`import microneedling.cli.app` and `--help` must not pull in the numeric stack."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import microneedling.cli.app as c\n"
        "r = CliRunner().invoke(c.app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = {'numpy', 'xarray', 'pandas', 'matplotlib', 'scipy', 'numba', 'netCDF4'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_version() -> None:
    res = invoke("--version")
    assert res.exit_code == 0
    assert res.stdout.strip() == f"microneedling {microneedling.__version__}"


# ----------------------------------------------------------------------------- simulate: refusals
@needs_course
def test_bad_course_exit_2_one_line_names_field_and_writes_nothing(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace('name = "cheek"', 'name = "elbow"', 1)
    assert "elbow" in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    res = invoke("simulate", bad, "--out", out)
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert "sites[0].name" in lines[0] and "elbow" in lines[0]
    assert "Traceback" not in res.output
    assert res.stdout == ""
    assert not out.exists()
    assert _siblings(tmp_path) == ["bad.toml"]  # no temporary directory left either


def test_missing_course_file_exit_2(tmp_path: Path) -> None:
    res = invoke("simulate", tmp_path / "nope.toml", "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: course file not found"
    assert not (tmp_path / "run").exists()


def test_existing_out_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.nc").write_text("earlier run")
    res = invoke("simulate", tmp_path / "whatever.toml", "--out", out)
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        f"error: {out} already exists; use --overwrite to replace it"
    ]
    assert (out / "result.nc").read_text() == "earlier run"


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    res = invoke("simulate", tmp_path / "whatever.toml", "--out", out, "--overwrite")
    assert res.exit_code == 1
    assert "it is not empty and has no .microneedling-run marker" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert _siblings(out) == ["thesis.docx"]


# ----------------------------------------------------------------------------- simulate: with a stub
@pytest.fixture
def stub_simulate(monkeypatch: pytest.MonkeyPatch, param_set: ParameterSet) -> list[dict[str, Any]]:
    """Replace the engine's simulate, as the CLI calls it, by a stub returning the synthetic Result."""
    calls: list[dict[str, Any]] = []

    def simulate(course: Any, parameters: Any = None, *, draws: int = 32) -> Result:
        calls.append({"course": course, "parameters": parameters, "draws": draws})
        return Result(build_synthetic_dataset(param_set))

    monkeypatch.setattr("microneedling.engine.simulate.simulate", simulate)
    return calls


@needs_course
def test_simulate_writes_complete_run_dir(
    tmp_path: Path, stub_simulate: list[dict[str, Any]]
) -> None:
    from microneedling.course.model import Course

    out = tmp_path / "run"
    res = invoke("simulate", EXAMPLE, "--out", out, "--draws", "7")
    assert res.exit_code == 0, res.output
    assert stub_simulate[0]["draws"] == 7
    assert isinstance(stub_simulate[0]["course"], Course)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        [
            "result.nc",
            "endpoints.csv",
            "report.html",
            "course.toml",
            "figures/collagen_elastin.png",
            "figures/claims.png",
            "figures/downtime.png",
            "figures/absorption.png",
            RUN_MARKER,
        ]
    )
    assert read_marker(out) == "simulate"
    assert _siblings(tmp_path) == ["run"]
    # the validated input, re-loadable
    course = Course.from_file(EXAMPLE)
    assert (out / "course.toml").read_text(encoding="utf-8") == course.to_toml()
    # result.nc round-trips; endpoints.csv is result.endpoints()
    back = Result.from_netcdf(out / "result.nc")
    assert back.dataset.attrs["course_name"] == COURSE_NAME
    df = pd.read_csv(out / "endpoints.csv")
    expected = back.endpoints()
    assert len(df) == len(expected)
    assert list(df.columns) == list(expected.columns)
    # stdout: a table per site with value [interval], the disclaimer, the run time
    for site in SITES:
        assert site in res.stdout
    cheek = expected[(expected.site == "cheek") & (expected.variable == "collagen_change")].iloc[0]
    from microneedling.reports.format import format_interval, format_number

    assert f"{format_number(cheek.value)} [{format_interval(cheek.low, cheek.high)}]" in res.stdout
    assert microneedling.DISCLAIMER in res.stdout.replace("\n", " ")
    assert f"Wrote 8 files to {out} in " in res.stdout.replace("\n", " ")
    # the run's warnings go to stderr
    assert f"warning: {WARNINGS[0]}" in res.stderr


@needs_course
def test_simulate_no_figures_and_quiet(tmp_path: Path, stub_simulate: list[dict[str, Any]]) -> None:
    out = tmp_path / "run"
    res = invoke("simulate", EXAMPLE, "--out", out, "--no-figures", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert stub_simulate[0]["draws"] == 32  # not given: simulate's own default
    assert sorted(p.name for p in out.iterdir()) == [
        RUN_MARKER,
        "course.toml",
        "endpoints.csv",
        "report.html",
        "result.nc",
    ]
    assert "<img" not in (out / "report.html").read_text(encoding="utf-8")  # no PNG embedded


@needs_course
def test_simulate_overwrite_replaces_earlier_run(
    tmp_path: Path, stub_simulate: list[dict[str, Any]]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.nc").write_text("earlier")
    (out / "stale.txt").write_text("from an older version")
    (out / RUN_MARKER).write_text('kind = "simulate"\n')
    res = invoke("simulate", EXAMPLE, "--out", out, "--overwrite", "--no-figures", "-q")
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists()
    xr.open_dataset(out / "result.nc").close()
    assert _siblings(tmp_path) == ["run"]


@needs_course
@pytest.mark.parametrize("exc", [KeyboardInterrupt, microneedling.errors.ParameterError("boom")])
def test_simulate_interrupted_while_writing_leaves_nothing(
    tmp_path: Path,
    stub_simulate: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException | type[BaseException],
) -> None:
    import microneedling.reports.run as report

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(report, "write_figures", broken)
    out = tmp_path / "run"
    res = invoke("simulate", EXAMPLE, "--out", out)
    assert res.exit_code == (130 if exc is KeyboardInterrupt else 1)
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: ")
    assert not out.exists()
    assert _siblings(tmp_path) == []


# ----------------------------------------------------------------------------- sources
def _numbered(stdout: str) -> dict[str, int]:
    """{reference key: number of parameters citing it} from the `sources` listing."""
    import re

    keys = re.findall(r"^\s*(\d+)\. \[(\w+)\]", stdout, re.M)
    counts = [int(n) for n in re.findall(r"cited by (\d+) parameter", stdout)]
    assert [int(n) for n, _ in keys] == list(range(1, len(keys) + 1))  # numbered 1..n
    assert len(counts) == len(keys)
    return dict(zip([k for _, k in keys], counts, strict=True))


def test_sources_of_run_dir(run_dir: Path, param_dir: Path) -> None:
    res = invoke("sources", run_dir, "--parameter-set", param_dir)
    assert res.exit_code == 0, res.output
    # healing.unused_rate (gamma) was not used by the run, so gamma counts 1, not 2
    assert _numbered(res.stdout) == {
        "zztest_alpha2001": 2,
        "zztest_beta2010": 2,
        "zztest_gamma2020": 1,
    }
    assert "https://doi.org/10.5555/alpha" in res.stdout
    assert f"behind {len(USED_PARAMETERS)} parameter(s)" in res.stdout
    assert "note:" not in res.stdout  # same parameter set as the run
    assert microneedling.DISCLAIMER in res.stdout
    assert "healing.mu_I" not in res.stdout.split("cited by")[0]  # no table without --parameters


def test_sources_with_parameters_table(run_dir: Path, param_dir: Path) -> None:
    res = invoke("sources", run_dir / "result.nc", "--parameter-set", param_dir, "--parameters")
    assert res.exit_code == 0, res.output
    table = res.stdout[res.stdout.index("Parameters used") :]
    for name in USED_PARAMETERS:
        assert name in table
    assert "healing.unused_rate" not in table
    mu = next(line for line in table.splitlines() if "healing.mu_I" in line)
    assert mu.split()[1:5] == ["1.20", "/d", "0.800–2.00", "estimate"]
    assert "zztest_alpha2001" in mu


def test_sources_uses_the_runs_own_parameter_record(
    tmp_path: Path, synthetic_result: Result
) -> None:
    records = [
        {
            "name": "a.x",
            "value": 1.0,
            "units": "1",
            "kind": "literature",
            "sources": ["zztest_alpha2001", "zztest_gamma2020"],
        },
        {
            "name": "a.y",
            "value": 2.0,
            "units": "m",
            "kind": "estimate",
            "sources": ["zztest_gamma2020"],
        },
    ]
    synthetic_result.dataset.attrs["parameters"] = json.dumps(records)
    run = tmp_path / "run"
    run.mkdir()
    synthetic_result.to_netcdf(run / "result.nc")
    res = invoke("sources", run, "--parameters")
    assert res.exit_code == 0, res.output
    counts = _numbered(res.stdout)
    # beta is in the run's reference list, but no parameter of the record cites it
    assert counts == {"zztest_alpha2001": 1, "zztest_beta2010": 0, "zztest_gamma2020": 2}
    assert "note:" not in res.stdout  # the run describes itself: no other set consulted
    assert "a.y" in res.stdout[res.stdout.index("Parameters used") :]


def test_sources_with_unknown_parameter_set_says_unknown(run_dir: Path) -> None:
    """Against the shipped set (other hash, none of the names): counts are unknown, not zero."""
    res = invoke("sources", run_dir)
    assert res.exit_code == 0, res.output
    assert "note:" in res.stdout
    assert res.stdout.count("cited by: unknown") == 3
    assert "cited by 0" not in res.stdout


def test_sources_not_a_run(tmp_path: Path) -> None:
    res = invoke("sources", tmp_path)
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {tmp_path}: no result.nc here (not a run directory)"
    res = invoke("sources", tmp_path / "missing")
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1


def test_sources_corrupt_result_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "result.nc").write_bytes(b"not netcdf")
    res = invoke("sources", tmp_path)
    assert res.exit_code == 1
    assert len(res.stderr.splitlines()) == 1 and "cannot read the result" in res.stderr


# ----------------------------------------------------------------------------- parameters
def test_parameters_lists_every_parameter(param_dir: Path, param_set: ParameterSet) -> None:
    res = invoke("parameters", "--parameter-set", param_dir)
    assert res.exit_code == 0, res.output
    for name in param_set.names():
        assert name in res.stdout
    assert f"hash {param_set.hash}" in res.stdout
    row = next(line for line in res.stdout.splitlines() if "needles.insertion_efficiency" in line)
    assert row.split()[1:5] == ["0.500", "1", "0.200–0.770", "derived"]
    # a keyed parameter: one row per key, each with its value, units and interval
    cheek = next(ln for ln in res.stdout.splitlines() if "skin.dermis_thickness[cheek]" in ln)
    assert cheek.split()[1:5] == ["1500", "µm", "1300–1800", "literature"]
    fixed = next(line for line in res.stdout.splitlines() if "needles.drum_needles" in line)
    assert "none (fixed)" in fixed


def test_parameters_group_filter(param_dir: Path) -> None:
    res = invoke("parameters", "--parameter-set", param_dir, "--group", "healing")
    assert res.exit_code == 0, res.output
    assert "healing.mu_I" in res.stdout and "healing.unused_rate" in res.stdout
    assert "needles." not in res.stdout and "skin." not in res.stdout
    res = invoke("parameters", "--parameter-set", param_dir, "--group", "healin")
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: --group: got 'healin'; allowed: healing, needles, skin"


def test_parameters_shipped_set() -> None:
    ps = load_parameters()
    res = invoke("parameters")
    assert res.exit_code == 0, res.output
    for name in ps.names():
        assert name in res.stdout, name
    group = ps.names()[0].split(".", 1)[0]
    res = invoke("parameters", "-g", group)
    assert res.exit_code == 0
    assert sum(1 for n in ps.names() if n in res.stdout) == len(ps.names(group))


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_simulate_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "tmp" / "run"
    res = invoke("simulate", EXAMPLE, "--out", out, "--draws", "4")
    assert res.exit_code == 0, res.output + repr(res.exception)
    for name in ("result.nc", "endpoints.csv", "report.html", "course.toml"):
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png"))
    with xr.open_dataset(out / "result.nc") as ds:
        assert ds.attrs["disclaimer"] == microneedling.DISCLAIMER
        assert "cheek" in [str(s) for s in ds["site"].values]
    df = pd.read_csv(out / "endpoints.csv")
    assert (df["site"] == "cheek").sum() > 0
    assert df.loc[df["site"] == "cheek", "value"].notna().all()
    import html

    report = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(microneedling.DISCLAIMER) in report
    assert microneedling.DISCLAIMER in res.stdout.replace("\n", " ")
