"""``microneedling plan``: outputs, round trip through ``microneedling simulate``, refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from microneedling import DISCLAIMER
from microneedling.cli.app import app
from microneedling.course.model import Course
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values
from tests.planner_helpers import patient_dict

runner = CliRunner()


def _write(tmp_path: Path, d: dict, name: str = "patient.toml") -> Path:
    lines = [f'name = "{d["name"]}"', "", "[patient]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in d["patient"].items()]
    lines += ["", "[history]"]
    for k, v in d["history"].items():
        lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else v}")
    for s in d["sites"]:
        lines += ["", "[[sites]]", f'name = "{s["name"]}"']
        for k, v in s.items():
            if k not in ("name", "concerns"):
                lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else v}")
        for c in s["concerns"]:
            lines += ["", "[[sites.concerns]]"]
            lines += [f"{k} = {v!r}".replace("'", '"') for k, v in c.items()]
    lines += ["", "[limits]"]
    for k, v in d["limits"].items():
        lines.append(f"{k} = {v!r}".replace("'", '"'))
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_plan_writes_outputs_and_the_course_round_trips(tmp_path: Path) -> None:
    src = _write(tmp_path, patient_dict(sites=("cheek", "nose"), limits={"max_sessions": 2}))
    out = tmp_path / "plan"
    res = runner.invoke(app, ["plan", str(src), "--out", str(out), "--draws", "4"])
    assert res.exit_code == 0, res.output
    assert "Recommended plan" in res.output and "NOTE:" in res.output
    for f in ("course.toml", "pareto.png", "pareto.csv", "predictions.csv", "report.html"):
        assert (out / f).is_file(), f
    html = (out / "report.html").read_text(encoding="utf-8")
    assert DISCLAIMER in html and "qualified practitioner" in html and "Why this plan" in html
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the course file is a course `microneedling simulate` runs unchanged ...
    course = Course.from_toml(out / "course.toml")
    assert Course.from_toml_text(course.to_toml()) == course
    sim = runner.invoke(
        app,
        [
            "simulate",
            str(out / "course.toml"),
            "--out",
            str(tmp_path / "sim"),
            "--draws",
            "0",
            "--no-figures",
            "--quiet",
        ],
    )
    assert sim.exit_code == 0, sim.output
    # ... and reproduces the plan's predicted nominal end points
    pred = {
        (r["site"], r["endpoint"]): float(r["value"]) for r in _csv_rows(out / "predictions.csv")
    }
    run = simulate_batch([course])
    for (site, ep), value in pred.items():
        b = [s.name for s in course.sites].index(site)
        got = endpoint_values(run, ep)[b]
        assert got == pytest.approx(value, rel=1e-6, abs=1e-9), (site, ep)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_absolute_contraindication_exits_1_with_one_line(tmp_path: Path) -> None:
    src = _write(tmp_path, patient_dict(history={"pregnant": True}))
    out = tmp_path / "plan"
    res = runner.invoke(app, ["plan", str(src), "--out", str(out)])
    assert res.exit_code == 1
    err = res.stderr if hasattr(res, "stderr") else res.output
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "pregnancy" in line[0] and "absolute" in line[0]
    assert not out.exists()


def test_bad_patient_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    d = patient_dict()
    d["patient"]["fitzpatrick"] = 9
    src = _write(tmp_path, d)
    res = runner.invoke(app, ["plan", str(src), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "patient.fitzpatrick" in res.output + getattr(res, "stderr", "")


def test_limit_options_override_the_file(tmp_path: Path) -> None:
    src = _write(tmp_path, patient_dict(limits={"max_sessions": 3}))
    out = tmp_path / "plan"
    res = runner.invoke(
        app,
        [
            "plan",
            str(src),
            "--out",
            str(out),
            "--max-sessions",
            "1",
            "--draws",
            "0",
            "--no-figures",
            "--max-downtime-days",
            "1.0",
        ],
    )
    assert res.exit_code == 0, res.output
    course = tomllib.loads((out / "course.toml").read_text(encoding="utf-8"))
    assert len(course["sessions"]) == 1
    rows = _csv_rows(out / "pareto.csv")
    assert all(float(r["max_session_downtime_days"]) <= 1.0 for r in rows)
    assert np.all([int(r["sessions"]) == 1 for r in rows])
