"""The README's promise for every command that writes: nothing half-written, no traceback.

Each writing command runs as a real process (``python -m microneedling``) and is killed while it
writes its output (or, for validate and calibrate, which write only after minutes of computing,
while it computes): with SIGTERM it must remove its temporaries, print one ``error:`` line and exit
143; with SIGKILL it cannot clean up, and the next command that writes the same ``--out`` must
remove what it left. In both cases ``--out`` is either absent or a complete run, never partial.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from microneedling.io import read_marker
from tests.paths import REPO

EXAMPLES = REPO / "examples"
ROLLING = EXAMPLES / "acne-scars-rolling-cheek.toml"

#: command -> (arguments before --out, files of a complete output, seconds to wait before
#: killing when no temporary shows up first)
COMMANDS: dict[str, tuple[list[str], tuple[str, ...], float]] = {
    "simulate": (
        ["simulate", str(ROLLING), "--draws", "4"],
        ("result.nc", "endpoints.csv", "report.html", "course.toml"),
        60.0,
    ),
    "absorb": (
        ["absorb", str(EXAMPLES / "serum-absorption-study.toml"), "--draws", "4"],
        ("absorption.csv", "absorption.json", "report.html", "course.toml"),
        60.0,
    ),
    "sensitivity": (
        ["sensitivity", str(ROLLING), "--n-base", "8", "-e", "collagen_change",
         "-p", "healing.mu_I", "-p", "healing.k_1"],
        ("sobol.nc", "sobol.csv", "sobol.png", "report.html", "course.toml"),
        60.0,
    ),
    "plan": (
        ["plan", str(EXAMPLES / "patients" / "acne-scars-two-sites.toml"), "--draws", "4"],
        ("course.toml", "report.html", "pareto.csv", "predictions.csv"),
        90.0,
    ),
    "trial": (
        ["trial", str(EXAMPLES / "trials" / "acne-roller-vs-pen.toml"), "--n", "6", "-q"],
        ("trial.nc", "summary.csv", "comparisons.csv", "report.html"),
        90.0,
    ),
    "sbml": (["sbml", str(ROLLING)], (), 30.0),
    "validate": (["validate", "--no-sobol", "--no-verification", "--draws", "4"],
                 ("report.html", "credibility.json"), 4.0),
    "calibrate": (["calibrate"], (), 4.0),
}  # fmt: skip

_TEMP = re.compile(r"^\..+\.(tmp|old)-\d+-[0-9a-f]{12}$")


#: the children's environment: Python's faulthandler on, so a crash (SIGSEGV, SIGABRT, ...)
#: prints every thread's Python stack to the child's stderr, which the failure messages show
ENV = {**os.environ, "COLUMNS": "120", "PYTHONFAULTHANDLER": "1"}


def _start(args: list[str], out: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "microneedling", *args, "--out", str(out)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _outcome(returncode: int, stdout: str, stderr: str) -> str:
    """What a child did, for a failure message: its exit code (a negative one named by its
    signal), its stderr (with faulthandler's stacks after a crash) and the end of its stdout."""
    code = str(returncode)
    if returncode < 0:
        name = f"signal {-returncode}"
        with contextlib.suppress(ValueError):
            name = signal.Signals(-returncode).name
        code += f" (killed by {name})"
    return f"exit {code}\n--- stderr ---\n{stderr}\n--- stdout (end) ---\n{stdout[-2000:]}"


def _kill_while_writing(proc: subprocess.Popen[str], out: Path, sig: int, wait: float) -> bool:
    """Send ``sig`` as soon as a temporary of ``out`` appears (or after ``wait`` s); returns
    whether the process was still running when the signal went out."""
    prefix = f".{out.name}.tmp-"
    t_end = time.monotonic() + wait
    while proc.poll() is None and time.monotonic() < t_end:
        if any(n.startswith(prefix) for n in os.listdir(out.parent)):
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(sig)
    return True


def _temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if _TEMP.match(p.name))


def _complete_or_absent(out: Path, files: tuple[str, ...], command: str) -> None:
    if not out.exists():
        return
    if command == "sbml":
        assert ET.parse(out).getroot().tag.endswith("sbml")  # a whole XML document
        return
    assert read_marker(out) == command, sorted(p.name for p in out.iterdir())
    for f in files:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_killed_command_leaves_nothing_half_written(
    tmp_path: Path, command: str, sig: signal.Signals
) -> None:
    args, files, wait = COMMANDS[command]
    out = tmp_path / ("model.xml" if command == "sbml" else "out")
    proc = _start(args, out, tmp_path)
    killed = _kill_while_writing(proc, out, sig, wait)
    stdout, stderr = proc.communicate(timeout=120)
    outcome = _outcome(proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr + stdout, outcome
    assert "Fatal Python error" not in stderr, outcome  # faulthandler: a crash
    if not killed or proc.returncode == 0:  # it finished first: then its output is whole
        assert proc.returncode == 0, outcome
        _complete_or_absent(out, files, command)
        assert out.exists()
        return
    _complete_or_absent(out, files, command)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, outcome
        errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "terminated" in errors[0], outcome
        assert _temporaries(tmp_path) == []  # cleaned up on the way out
        return
    assert proc.returncode == -signal.SIGKILL, outcome
    # the next command writing the same --out removes what the killed one left (here a refusal
    # of a missing input: the guard runs first)
    if command == "sbml":
        again = subprocess.run(
            [sys.executable, "-m", "microneedling", "sbml", str(ROLLING), "--out", str(out),
             "--overwrite"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        assert again.returncode == 0, _outcome(again.returncode, again.stdout, again.stderr)
    else:
        again = subprocess.run(
            [sys.executable, "-m", "microneedling", "simulate", "missing.toml", "--out", str(out)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
        )  # fmt: skip
        again_outcome = _outcome(again.returncode, again.stdout, again.stderr)
        assert again.returncode in (1, 2), again_outcome  # missing input, or out exists
        assert "Traceback" not in again.stderr, again_outcome
        if command == "trial":  # the resume store of a killed trial is cleaned by trial itself
            again = subprocess.run(
                [sys.executable, "-m", "microneedling", "trial", "missing.toml", "--out",
                 str(out)],
                cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV,
            )  # fmt: skip
    assert _temporaries(tmp_path) == []
    _complete_or_absent(out, files, command)
