"""ruff (lint and format) and mypy are part of the suite: a lint, format or type error fails CI like
any other test. The tools come with the ``test`` extra; a missing tool fails, it is never skipped."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import REPO as ROOT

PATHS = ["src", "tests", "benchmarks"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_clean() -> None:
    proc = _run("ruff", "check", *PATHS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_formatted() -> None:
    proc = _run("ruff", "format", "--check", *PATHS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean() -> None:
    proc = _run("mypy", "src/microneedling")
    assert proc.returncode == 0, proc.stdout + proc.stderr
