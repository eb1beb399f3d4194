"""``--molecules FILE``: a course may name the user's own molecules; the run directory keeps the
molecules it used (``molecules.toml``), and bad files or unknown products are bad input (exit 2,
one line naming the file or the field)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
from typer.testing import CliRunner

from microneedling.cli.app import app
from microneedling.io import dumps_toml
from microneedling.parameters.molecules import user_molecules
from tests.user_molecules import COPY, copy_table, trial_data, write_copy, write_serum_course

runner = CliRunner(env={"COLUMNS": "160"})


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], prog_name="microneedling")


def _one_error_line(res: Any) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return str(lines[0])


def test_simulate_with_molecules_writes_them_and_reruns_from_its_outputs(tmp_path: Path) -> None:
    mols = write_copy(tmp_path / "mine.toml")
    course = write_serum_course(tmp_path / "serum.toml")
    out = tmp_path / "run"
    res = invoke("simulate", course, "--out", out, "--draws", "0", "--no-figures", "-q",
                 "--molecules", mols)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "molecules.toml").is_file()
    assert repr(user_molecules(out / "molecules.toml")) == repr(user_molecules(mols))
    again = tmp_path / "again"
    res = invoke("simulate", out / "course.toml", "--out", again, "--draws", "0", "--no-figures",
                 "-q", "--molecules", out / "molecules.toml")  # fmt: skip
    assert res.exit_code == 0, res.output
    first = pd.read_csv(out / "endpoints.csv")
    assert first.equals(pd.read_csv(again / "endpoints.csv"))
    assert (first["variable"] == "absorbed_amount").any()


def test_a_course_of_shipped_products_writes_no_molecules(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = invoke("simulate", write_serum_course(tmp_path / "c.toml", "caffeine"), "--out", out,
                 "--draws", "0", "--no-figures", "-q", "--molecules",
                 write_copy(tmp_path / "mine.toml"))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not (out / "molecules.toml").exists() and (out / "course.toml").is_file()


def test_absorb_with_molecules(tmp_path: Path) -> None:
    out = tmp_path / "absorb"
    res = invoke("absorb", write_serum_course(tmp_path / "serum.toml"), "--out", out,
                 "--no-resolved", "--draws", "0", "-q", "--molecules",
                 write_copy(tmp_path / "mine.toml"))  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "absorption.csv")
    assert list(table["product"]) == [COPY] and (table["absorbed_ug_cm2"] > 0).all()
    assert set(user_molecules(out / "molecules.toml")) == {COPY}


def test_an_unknown_product_lists_the_names_in_scope(tmp_path: Path) -> None:
    course = write_serum_course(tmp_path / "serum.toml")
    out = tmp_path / "run"
    line = _one_error_line(invoke("simulate", course, "--out", out))
    assert "sessions[0].topical.product: got 'house_caffeine'" in line
    assert "one of niacinamide, caffeine" in line and "did you mean 'caffeine'?" in line
    typo = write_serum_course(tmp_path / "typo.toml", "house_cafeine")
    line = _one_error_line(
        invoke("absorb", typo, "--out", out, "--molecules", write_copy(tmp_path / "mine.toml"))
    )
    assert f"naloxone, {COPY}; did you mean '{COPY}'?" in line
    assert not out.exists()


def test_bad_molecule_files_name_the_file_and_the_problem(tmp_path: Path) -> None:
    course = write_serum_course(tmp_path / "serum.toml")
    out = tmp_path / "run"
    missing = tmp_path / "nope.toml"
    line = _one_error_line(invoke("simulate", course, "--out", out, "--molecules", missing))
    assert line == f"error: --molecules {missing}: molecule file not found"
    table = copy_table()
    del table["mw"]
    bad = tmp_path / "bad.toml"
    bad.write_text(dumps_toml({COPY: table}), encoding="utf-8")
    line = _one_error_line(invoke("simulate", course, "--out", out, "--molecules", bad))
    assert f"bad.toml: molecule '{COPY}'.mw: <missing>; allowed: a required property" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("[house\n", encoding="utf-8")
    line = _one_error_line(invoke("simulate", course, "--out", out, "--molecules", broken))
    assert str(broken) in line
    shipped = tmp_path / "shipped.toml"
    shipped.write_text(dumps_toml({"caffeine": copy_table()}), encoding="utf-8")
    line = _one_error_line(invoke("absorb", course, "--out", out, "--molecules", shipped))
    assert str(shipped) in line and "['caffeine'] already defined" in line
    assert not out.exists()


def test_trial_with_molecules_keeps_them_in_its_directory(tmp_path: Path) -> None:
    spec = tmp_path / "trial.toml"
    spec.write_text(dumps_toml(trial_data(3)), encoding="utf-8")
    out = tmp_path / "trial"
    res = invoke("trial", spec, "--out", out, "-q", "--molecules", write_copy(tmp_path / "m.toml"))
    assert res.exit_code == 0, res.output
    assert set(user_molecules(out / "molecules.toml")) == {COPY}
    arms = tomllib.loads((out / "trial.toml").read_text("utf-8"))["arms"]
    assert arms[1]["protocol"]["sessions"][0]["topical"]["product"] == COPY
    line = _one_error_line(invoke("trial", spec, "--out", tmp_path / "no"))
    assert "arms[1].protocol" in line and "house_caffeine" in line
