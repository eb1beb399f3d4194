"""``microneedling calibrate`` end to end on the real model with tiny settings: screening result,
history matching, the posterior (emulate-sample-correct, and emcee on the model), the posterior
files (content-hashed, reproducing their summary), the run directory and its resume store; bad
options are refused before any work."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from microneedling.cli.app import app
from microneedling.parameters.sampling import load_posterior, posterior_statistics
from microneedling.studies.credibility import pipeline
from microneedling.studies.credibility.calibrate import CalibrationConfig, load_config

BAR = "\u2501"  # the heavy line rich draws a progress bar with


def tiny_config(rounds: int = 1) -> CalibrationConfig:
    c = load_config()
    return c.model_copy(
        update={
            "history_matching": c.history_matching.model_copy(update={"points": 16, "waves": 2}),
            "sampler": c.sampler.model_copy(
                update={"min_walkers": 2, "steps": 4, "chunk_steps": 2, "keep": 50}
            ),
            "emulator": c.emulator.model_copy(
                update={
                    "rounds": rounds,
                    "max_rounds": None,
                    "steps": 4,
                    "draws": 16,
                    "hidden": (8,),
                    "members": 1,
                }
            ),
        }
    )


def fixed_screening(**_: Any) -> dict[str, Any]:
    return {
        "version": "screening-test",
        "selected": ["observe.erythema_threshold", "healing.k_1"],
        "nuisances": {"sampled": [], "fixed": [], "stand_in_sd": {}},
        "n_runs": 0,
        "seconds": 0.0,
    }


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [1, 0], ids=["emulated", "emcee-on-the-model"])
def test_calibrate_command_runs_the_pipeline_and_writes_a_hashed_posterior(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rounds: int
) -> None:
    monkeypatch.setattr(pipeline, "load_config", lambda: tiny_config(rounds))
    monkeypatch.setattr(pipeline, "run_screening", fixed_screening)
    out = tmp_path / "cal"
    res = CliRunner().invoke(app, ["calibrate", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in out.iterdir() if p.name != ".microneedling-run")
    npz = [f for f in files if f.endswith(".npz")]
    assert len(npz) == 1 and npz[0].startswith("posterior-")
    assert {"calibration.json", "screening.toml", npz[0].replace(".npz", ".toml")} <= set(files)
    post = load_posterior(out / npz[0].replace(".npz", ".toml"))  # hash checked on load
    assert [f["label"] for f in post.factors] == ["observe.erythema_threshold", "healing.k_1"]
    assert (
        posterior_statistics(post.x, post.factors, post.groups, post.nuisances)
        == (post.summary["statistics"])
    )
    summary = json.loads((out / "calibration.json").read_text())
    assert summary["diagnostics"]["steps"] == 4
    assert "history matching" in res.output and "emcee" in res.output
    if rounds:
        imp = summary["diagnostics"]["importance"]
        assert [r["draws"] for r in imp["rounds"]] == [16]
        assert "importance correction" in res.output
        assert imp["evaluations"] == 32 + 16  # history matching + the round's draws
    assert not (tmp_path / "cal.partial").exists()  # the resume store goes once the run is whole
    assert BAR not in res.stderr  # --quiet draws no bar


@pytest.mark.slow
def test_calibrate_without_quiet_draws_a_progress_bar_per_stage_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tiny run without ``--quiet``: each stage draws a rich bar on stderr (label, bar,
    chunks done of all, rate, time), finished; the log lines stay on stdout, free of bars."""
    monkeypatch.setattr(pipeline, "load_config", lambda: tiny_config(1))
    monkeypatch.setattr(pipeline, "run_screening", fixed_screening)
    res = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "cal")])
    assert res.exit_code == 0, res.output
    bars = [line for line in res.stderr.splitlines() if BAR in line]
    # 16 points in one chunk per wave; 4 emcee steps in chunks of 2; the round's 16 draws in one
    expected = [
        ("history matching, wave 1", "1/1", "points/s"),
        ("history matching, wave 2", "1/1", "points/s"),
        ("emcee", "2/2", "steps/s"),
        ("model runs of round 1", "1/1", "draws/s"),
    ]
    assert len(bars) == len(expected), res.stderr
    for line, (label, done, unit) in zip(bars, expected, strict=True):
        pattern = rf"{re.escape(label)} {BAR}+ {done} \d+ {unit} [0-9:]+ [0-9:]+"
        assert re.fullmatch(pattern, line), line
    assert BAR not in res.stdout and "history matching: wave 1" in res.stdout


def test_bad_options_are_refused_before_any_work(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "a"), "--screening", "x"])
    assert res.exit_code == 2 and "--screening" in res.output
    res = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "b"), "--write-values"])
    assert res.exit_code == 2 and "--write" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []
