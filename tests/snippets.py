"""Run a Python snippet in a fresh interpreter, for tests of what a process imports or sets up
when it starts (module caches, probes, import side effects) that the test process has already
done."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str, *args: str, timeout: float = 300.0) -> list[str]:
    """Run ``python -c code args...``; fail the test with its stderr unless it exits 0; return
    the lines it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
