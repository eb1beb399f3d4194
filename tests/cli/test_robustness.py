"""Issue 16: never lose a user's files, never show a traceback, refuse early, say what a number means.

One test (or a few) per item of the issue, through the command line where a user meets it and
through the Python API where the issue names it. The kill test (SIGKILL / SIGTERM of every writing
command) is ``tests/cli/test_kill.py``; the mutation fuzz test is ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import errno
import math
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import microneedling as mn
from microneedling.cli.app import app
from microneedling.errors import CourseValidationError, InputError
from microneedling.io import RUN_MARKER, dumps_toml, read_marker
from tests.paths import REPO

EXAMPLES = REPO / "examples"
ROLLING = EXAMPLES / "acne-scars-rolling-cheek.toml"
SERUM = EXAMPLES / "serum-absorption-study.toml"
TRIAL = EXAMPLES / "trials" / "acne-roller-vs-pen.toml"
PATIENT = EXAMPLES / "patients" / "acne-scars-two-sites.toml"

runner = CliRunner(env={"COLUMNS": "120"})


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args], prog_name="microneedling")


def one_error_line(res: Any) -> str:
    """The single ``error: ...`` line a refusal prints (and no traceback anywhere)."""
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    return str(lines[0])


def course_dict(path: Path = ROLLING) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def write_course(tmp_path: Path, d: dict[str, Any], name: str = "course.toml") -> Path:
    p = tmp_path / name
    p.write_text(dumps_toml(d), encoding="utf-8")
    return p


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def problems(d: dict[str, Any]) -> list[InputError]:
    with pytest.raises(CourseValidationError) as info:
        mn.Course.from_dict(d)
    return info.value.problems


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------ 1. one guard for every writer
WRITERS: dict[str, list[Any]] = {
    "simulate": ["simulate", ROLLING],
    "absorb": ["absorb", SERUM],
    "sensitivity": ["sensitivity", ROLLING],
    "plan": ["plan", PATIENT],
    "trial": ["trial", TRIAL],
    "validate": ["validate"],
    "calibrate": ["calibrate"],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_overwrite_never_deletes_a_directory_it_did_not_write(tmp_path: Path, command: str) -> None:
    """trial, validate and calibrate --overwrite deleted any non-empty --out (item 1)."""
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    t0 = time.perf_counter()
    res = invoke(*WRITERS[command], "--out", out, "--overwrite")
    assert res.exit_code == 1, res.output
    line = one_error_line(res)
    assert "refusing to replace" in line and "not written by microneedling" in line
    assert listing(out) == ["chapter1.tex"] and (out / "chapter1.tex").read_text() == "precious"
    assert listing(tmp_path) == ["thesis"]
    assert time.perf_counter() - t0 < 10.0  # refused before any computation


def test_overwrite_refuses_a_run_of_another_kind(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "trial.nc").write_text("a trial")
    (out / RUN_MARKER).write_text('kind = "trial"\n')
    res = invoke("simulate", ROLLING, "--out", out, "--overwrite")
    assert res.exit_code == 1
    assert "holds a microneedling trial run, not a simulate run" in one_error_line(res)
    assert (out / "trial.nc").read_text() == "a trial"


def test_overwrite_replaces_the_commands_own_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    for _ in range(2):
        res = invoke("sbml", ROLLING, "--out", tmp_path / "m.xml", "--overwrite")
        assert res.exit_code == 0, res.output
    res = invoke("simulate", ROLLING, "--out", out, "--draws", 0, "--no-figures", "-q")
    assert res.exit_code == 0, res.output
    (out / "extra.txt").write_text("left by the user inside the run")
    res = invoke(
        "simulate", ROLLING, "--out", out, "--draws", 0, "--no-figures", "-q", "--overwrite"
    )
    assert res.exit_code == 0, res.output
    assert not (out / "extra.txt").exists() and read_marker(out) == "simulate"
    assert listing(tmp_path) == ["m.xml", "run"]


def test_sbml_overwrite_replaces_only_an_sbml_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.xml"
    notes.write_text("<notes>mine</notes>")
    res = invoke("sbml", ROLLING, "--out", notes, "--overwrite")
    assert res.exit_code == 1
    assert "not an SBML file" in one_error_line(res)
    assert notes.read_text() == "<notes>mine</notes>"


# --------------------------------------------------------------------- 2. unwritable output
@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("/proc/microneedling-test/run", "cannot write /proc/microneedling-test/run: /proc"),
        ("{tmp}/a-file/run", "a-file is not a directory"),
    ],
)
def test_unwritable_out_is_one_line_before_any_work(
    tmp_path: Path, where: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    t0 = time.perf_counter()
    res = invoke("simulate", ROLLING, "--out", where.format(tmp=tmp_path))
    assert res.exit_code == 1
    line = one_error_line(res)
    assert line.startswith("error: cannot write ") and reason in line
    assert time.perf_counter() - t0 < 5.0  # nothing was simulated first
    assert listing(tmp_path) == ["a-file"]


def test_an_oserror_while_writing_is_one_line_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk in the middle of writing: one line with the path and the reason, nothing left."""
    import microneedling.cli.simulate as cli_simulate

    def full(df: Any, path: Path, index: bool = False) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli_simulate, "write_csv_atomic", full)
    res = invoke("simulate", ROLLING, "--out", tmp_path / "run", "--draws", 0, "--no-figures")
    assert res.exit_code == 1
    line = one_error_line(res)
    assert "endpoints.csv: No space left on device" in line
    assert listing(tmp_path) == []  # no run, no temporary


# -------------------------------------------------------------- 3. paths and temporaries
def test_dot_dot_in_out_leaves_no_stray_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = invoke("simulate", ROLLING, "--out", "a/../b/../c", "--draws", 0, "--no-figures", "-q")
    assert res.exit_code == 0, res.output
    assert listing(tmp_path) == ["c"]


def test_the_next_run_removes_the_temporaries_of_a_killed_run(tmp_path: Path) -> None:
    stale = tmp_path / f".run.tmp-{dead_pid()}-0123456789ab"
    stale.mkdir()
    (stale / "result.nc").write_bytes(b"half a NetCDF file")
    res = invoke("simulate", tmp_path / "missing.toml", "--out", tmp_path / "run")
    assert res.exit_code == 2  # refused (no course file), but only after the guard cleaned up
    assert listing(tmp_path) == []


# ------------------------------------------------------------------------------ 4. crashes
@pytest.mark.parametrize("hours", [5e-324, 1e-9, 0.0166])
def test_a_contact_time_below_one_minute_is_refused_naming_the_field(
    tmp_path: Path, hours: float
) -> None:
    d = course_dict(SERUM)
    d["sessions"][0]["topical"]["contact_hours"] = hours
    for cmd in ("simulate", "absorb"):
        res = invoke(cmd, write_course(tmp_path, d), "--out", tmp_path / cmd)
        assert res.exit_code == 2, res.output
        line = one_error_line(res)
        assert "sessions[0].topical.contact_hours" in line and "1/60 h (1 minute)" in line
        assert not (tmp_path / cmd).exists()


def test_inf_enhancement_only_without_an_intact_skin_path() -> None:
    """inf is reserved for "no intact-skin path"; a short contact time gave inf before."""
    ratio = {}
    for product, hours in (
        ("niacinamide", 1 / 60),
        ("niacinamide", 4.0),
        ("hyaluronic_acid_1mda", 4.0),
    ):
        d = course_dict(SERUM)
        for s in d["sessions"]:
            if "topical" in s:
                s["topical"].update(contact_hours=hours, product=product)
        er = mn.simulate(mn.Course.from_dict(d), draws=0).dataset["enhancement_ratio"].values
        ratio[(product, hours)] = float(np.nanmax(er))
    assert 1.0 < ratio[("niacinamide", 1 / 60)] < math.inf
    assert 1.0 < ratio[("niacinamide", 4.0)] < math.inf
    assert ratio[("hyaluronic_acid_1mda", 4.0)] == math.inf


def test_a_trial_arm_whose_course_is_a_binary_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "arm.toml").write_bytes(bytes(range(256)) * 4)
    spec = tomllib.loads(TRIAL.read_text(encoding="utf-8"))
    spec["arms"][0]["course"] = "arm.toml"
    (tmp_path / "trial.toml").write_text(dumps_toml(spec), encoding="utf-8")
    res = invoke("trial", tmp_path / "trial.toml", "--out", tmp_path / "out")
    assert res.exit_code == 2
    line = one_error_line(res)
    assert "arms[0].course" in line and "is not a UTF-8 text file" in line


# ------------------------------------------------------------------------------ 5. limits
def test_a_huge_description_is_refused_without_echoing_it(tmp_path: Path) -> None:
    d = course_dict()
    d["description"] = "x" * 10_001
    res = invoke("simulate", write_course(tmp_path, d), "--out", tmp_path / "run")
    assert res.exit_code == 2
    line = one_error_line(res)
    assert "description: got '<text of 10001 characters>'" in line and len(line) < 300
    big = tmp_path / "big.toml"
    big.write_text(dumps_toml(course_dict()) + "# " + "x" * (11 * 2**20) + "\n", encoding="utf-8")
    res = invoke("simulate", big, "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert "at most 10 MiB" in one_error_line(res)


def test_session_counts_are_limited_per_course_and_per_site_year(tmp_path: Path) -> None:
    d = course_dict()
    template = d["sessions"][0]
    d["sessions"] = [{**template, "day": float(i)} for i in range(1000)]
    d["horizon_days"] = 3650
    t0 = time.perf_counter()
    res = invoke("simulate", write_course(tmp_path, d), "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert "sessions: got '<1000 sessions>'; allowed: at most 500" in one_error_line(res)
    assert time.perf_counter() - t0 < 30.0  # refused, not run
    d["sessions"] = [{**template, "day": 7.0 * i} for i in range(53)]  # weekly for 53 weeks
    d["horizon_days"] = 400
    (p,) = problems(d)
    assert p.field == "sessions[52].day"
    assert "at most 52 sessions of 'cheek' in any 365 days" in p.allowed
    d["sessions"] = d["sessions"][:52]
    assert mn.Course.from_dict(d).sessions[-1].day == 357.0  # weekly for a year is allowed


def test_area_and_draws_have_documented_limits(tmp_path: Path) -> None:
    d = course_dict()
    d["sites"][0]["area_cm2"] = 1e308
    (p,) = problems(d)
    assert p.field == "sites[0].area_cm2" and "≤ 20000 cm²" in p.allowed
    res = invoke("simulate", ROLLING, "--out", tmp_path / "run", "--draws", 100_000)
    assert res.exit_code == 2 and "--draws" in res.output
    with pytest.raises(InputError, match="draws: got 1001; allowed: an integer from 0 to 1000"):
        mn.simulate(mn.Course.from_file(ROLLING), draws=1001)


# ---------------------------------------------------------------------- 6. control characters
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("name", "Acne \x1b[31mRED\x1b[0m course", "U+001B"),
        ("name", "two\nlines", "U+000A"),
        ("description", "NUL \x00 in the report title", "U+0000"),
        ("description", "right-to-left \u202e override", "U+202E"),
    ],
)
def test_control_characters_are_refused_in_text_fields(
    tmp_path: Path, field: str, value: str, code: str
) -> None:
    d = course_dict()
    d[field] = value
    (p,) = problems(d)
    assert p.field == field and code in p.allowed
    res = invoke("simulate", write_course(tmp_path, d), "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert "\x1b" not in res.output and "\x00" not in res.output and "\u202e" not in res.output


def test_a_result_file_with_control_characters_prints_none(tmp_path: Path) -> None:
    """A result.nc written elsewhere (or edited) reaches the terminal cleaned."""
    res = mn.simulate(mn.Course.from_file(ROLLING), draws=0)
    res.dataset.attrs["course_name"] = "evil \x1b]0;title\x07\x1b[2J name\x00"
    run = tmp_path / "run"
    run.mkdir()
    res.to_netcdf(run / "result.nc")
    out = invoke("sources", run)
    assert out.exit_code == 0, out.output
    assert not set(out.output) & {"\x1b", "\x00", "\x07"}
    assert "evil" in out.output


# ----------------------------------------------------------------------------- 7. Python API
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"draws": -1}, "draws"),
        ({"draws": 2.5}, "draws"),
        ({"draws": True}, "draws"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": math.nan}, "rtol"),
        ({"parameters": {"healing.mu_I": 1.0}}, "parameters"),
    ],
)
def test_simulate_refuses_bad_arguments_with_the_packages_error(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputError) as info:
        mn.simulate(mn.Course.from_file(ROLLING), **kwargs)
    assert info.value.field == field


def test_simulate_of_a_dict_is_an_input_error() -> None:
    with pytest.raises(InputError, match="course: got 'dict'; allowed: a Course"):
        mn.simulate(course_dict())


@pytest.mark.parametrize(("name", "bad"), [("healing.mu_I", -1.0), ("healing.k_1", -0.01)])
def test_edited_parameters_outside_their_domain_never_reach_the_engine(
    name: str, bad: float
) -> None:
    with pytest.raises(InputError, match=re.escape(name)):
        mn.load_parameters().with_values({name: bad})


# --------------------------------------------------------------- 8. late or silent validation
def test_a_trial_end_point_that_does_not_apply_is_refused_before_computing(tmp_path: Path) -> None:
    spec = tomllib.loads(TRIAL.read_text(encoding="utf-8"))
    spec["arms"][0]["course"] = str(ROLLING)
    spec["trial"]["endpoints"] = ["striae_width:reduction", "collagen_change"]
    (tmp_path / "trial.toml").write_text(dumps_toml(spec), encoding="utf-8")
    t0 = time.perf_counter()
    res = invoke("trial", tmp_path / "trial.toml", "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 2, res.output
    line = one_error_line(res)
    assert "trial.endpoints[0]" in line and "striae_width" in line and "'roller 1.5 mm'" in line
    assert time.perf_counter() - t0 < 30.0  # 400 patients per arm were never simulated
    assert listing(tmp_path) == ["trial.toml"]  # no output, no DIR.partial


def test_sensitivity_refuses_an_inapplicable_end_point_before_the_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import microneedling.studies.sensitivity as sens

    calls: list[int] = []

    def counted(chunk: Any) -> Any:
        calls.append(1)
        return real(chunk)

    real = sens.evaluate_chunk
    monkeypatch.setattr(sens, "evaluate_chunk", counted)
    with pytest.raises(InputError, match=r"endpoints\[0\]: got 'melanin_index'"):
        sens.sobol_indices(mn.Course.from_file(ROLLING), ["melanin_index"], n_base=8)
    assert calls == []


def test_validate_with_negative_draws_is_bad_input() -> None:
    res = invoke("validate", "--draws", -1)
    assert res.exit_code == 2
    assert "--draws" in res.output


def test_patient_file_errors_use_the_shared_wording(tmp_path: Path) -> None:
    d = tomllib.loads(PATIENT.read_text(encoding="utf-8"))
    d["patient"]["age_years"] = 10
    p = tmp_path / "patient.toml"
    p.write_text(dumps_toml(d), encoding="utf-8")
    res = invoke("plan", p, "--out", tmp_path / "plan")
    assert res.exit_code == 2
    line = one_error_line(res)
    assert "patient.age_years: got 10; allowed:" in line and "Input should be" not in line


# ---------------------------------------------------------------------- 9. low draw counts
def test_few_draws_carry_a_warning() -> None:
    few = mn.simulate(mn.Course.from_file(ROLLING), draws=8)
    enough = mn.simulate(mn.Course.from_file(ROLLING), draws=20)
    assert any("draws = 8" in w and "rough" in w for w in few.warnings)
    assert not any("draws =" in w for w in enough.warnings)


def test_sensitivity_with_a_small_base_sample_says_what_its_numbers_are(tmp_path: Path) -> None:
    import pandas as pd

    res = invoke(
        "sensitivity", ROLLING, "--out", tmp_path / "s", "--n-base", 8, "-e", "collagen_change",
        "-p", "healing.mu_I", "-p", "healing.k_1", "-p", "healing.r_F", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning: --n-base 8" in res.stderr
    s1 = pd.read_csv(tmp_path / "s" / "sobol.csv")["S1"]
    negative = bool((s1 < 0).any())
    assert negative == ("are negative" in res.stderr)  # said exactly when there are some


# ---------------------------------------------------------------------- what a reader sees
@pytest.mark.parametrize("command", ["plan", "simulate", "absorb", "trial", "sensitivity"])
def test_help_fits_80_columns_plainly(command: str) -> None:
    res = CliRunner(env={"COLUMNS": "80"}).invoke(app, [command, "--help"])
    assert res.exit_code == 0
    text = res.output
    assert "<bool>" not in text and "<path>" not in text and "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    arg = {"plan": "PATIENT", "trial": "SPEC"}.get(command, "COURSE")
    assert text.splitlines()[0] == f"Usage: microneedling {command} [OPTIONS] {arg}"


def test_the_bare_command_shows_help_and_exits_0() -> None:
    res = invoke()
    assert res.exit_code == 0
    assert "Usage: microneedling [OPTIONS] COMMAND" in res.output and "simulate" in res.output


def test_absorb_help_names_the_default_and_its_opposite() -> None:
    text = " ".join(invoke("absorb", "--help").output.split())
    assert "--resolved / --no-resolved" in text and "[default: resolved]" in text


def test_simulate_table_shows_baselines_units_and_time_after_the_last_session(
    tmp_path: Path,
) -> None:
    res = invoke("simulate", ROLLING, "--out", tmp_path / "run", "--draws", 0, "--no-figures")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "baseline" in out and "(last +35 d)" in out  # day 119 = last session (day 84) + 35
    scar = next(line for line in out.splitlines() if line.strip().startswith("Atrophic scar"))
    assert "0.500" in scar  # the depth before treatment, from the course file
    pih = next(line for line in out.splitlines() if "hyperpigmentation" in line)
    assert "probability" in pih


def test_references_shown_to_users_carry_no_internal_notes_or_unvetted_links() -> None:
    from microneedling.parameters.parameter_set import INTERNAL, load_references

    refs = load_references()
    for key, ref in refs.items():
        assert not INTERNAL.search(ref.user_citation), (key, ref.user_citation)
        assert ref.user_citation.strip(), key
        assert not ref.user_url or ref.user_url == ref.url
    # the recorded text keeps its provenance; what a user sees drops the remark only
    assert "design notes" in refs["bailey1975"].citation
    assert refs["bailey1975"].user_citation.startswith("Bailey et al. (1975). Characterization")
    assert "(issue 3)" not in refs["estimate"].user_citation
    hidden = [r for r in refs.values() if r.url and not r.user_url]
    assert hidden and all("scribd" not in r.user_url for r in refs.values())


def test_sources_shows_clean_citations_counts_and_why_for_estimates(tmp_path: Path) -> None:
    res = invoke("sources", ROLLING, "--parameters")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "research notes" not in out and "shared/research" not in out and "(issue 3)" not in out
    assert "scribd.com" not in out and "discovery.researcher.life" not in out
    # the count says which parameters and how they relate to sensitivity's default
    head = " ".join(out.splitlines()[1].split())
    n_used = int(re.search(r"(\d+) = every parameter this run looked up", head).group(1))  # type: ignore[union-attr]
    n_sens = int(re.search(r"`sensitivity` varies (\d+) by default", head).group(1))  # type: ignore[union-attr]
    assert 0 < n_sens <= n_used
    # a keyed parameter is one row per key, with its interval (not squeezed out)
    row = next(line for line in out.splitlines() if "skin.sc_thickness[cheek]" in line)
    assert "16.8" in row and "10.0–25.0" in row and "estimate" in row
    assert "Why: the" in out and "skin.papillary_fraction: Papillary share of the dermis" in out


def test_absorb_shows_both_models_ratios_and_explains_the_difference(tmp_path: Path) -> None:
    res = invoke("absorb", SERUM, "--out", tmp_path / "a", "--draws", 0)
    assert res.exit_code == 0, res.output
    row = next(line for line in res.stdout.splitlines() if "niacinamide" in line)
    assert row.count("×") == 2 and row.rstrip().endswith("%")  # both ratios and the amount diff
    text = " ".join(res.stdout.split())
    assert "Ratio = absorbed with channels / absorbed through intact skin" in text
    assert "divides by the intact-skin amount" in text


def test_plan_prints_end_points_in_words_and_the_upper_pih_percentile(tmp_path: Path) -> None:
    patient = EXAMPLES / "patients" / "melasma-dark-skin.toml"
    res = invoke("plan", patient, "--out", tmp_path / "p", "--no-figures")
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())
    assert "MASI, reduction, 90 d after the last session" in out  # a melasma's objective
    assert "masi_score:reduction" not in out
    m = re.search(r"PIH risk ([\d.]+) nominal, ([\d.]+) at the 90th percentile", out)
    assert m is not None and float(m.group(2)) >= float(m.group(1))
    strict = invoke("plan", patient, "--out", tmp_path / "q", "--pih-ceiling-on", "p90")
    if float(m.group(2)) > 0.05:  # the nominal ceiling let through a plan over it at the p90
        if strict.exit_code == 1:  # no plan meets the ceiling at the 90th percentile
            assert "90th-percentile worst-session PIH risk" in one_error_line(strict)
        else:  # another plan meets it there (e.g. fewer or shallower sessions)
            assert strict.exit_code == 0, strict.output
            got = " ".join(strict.stdout.split())
            m2 = re.search(r"PIH risk ([\d.]+) nominal, ([\d.]+) at the 90th percentile", got)
            assert m2 is not None and float(m2.group(2)) <= 0.05
    else:
        assert strict.exit_code == 0
