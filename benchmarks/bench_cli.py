"""Command-line start-up benchmark (run on its own: ``python benchmarks/bench_cli.py``; not a test).

Reports, in one process so that ratios are meaningful on a noisy machine:

1. wall time of whole ``microneedling`` processes (fresh interpreter each, numba's cache warm),
   median of ``--repeats``, and each as a ratio to a bare ``python -c pass`` measured in the same
   run: ``--version``, ``--help``, ``simulate --draws 0 --no-figures``, ``simulate`` with its
   defaults (32 draws, figures, report);
2. where the start-up of ``simulate --draws 0 --no-figures`` goes: ``python -X importtime``'s
   cumulative time of the top-level packages it imports, largest first, and whether a library of
   another path (``distributed``, ``matplotlib``, SALib, libsbml, ...) is among them (the test
   ``tests/cli/test_imports.py`` fails CI on that; the times are only reported here).

Goals (issue 15): ``simulate --draws 0 --no-figures`` <= 0.8 s, ``simulate`` default <= 1.5 s.

    python benchmarks/bench_cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acne-scars-rolling-cheek.toml"
CLI = [sys.executable, "-m", "microneedling"]
OTHER_PATHS = ("distributed", "matplotlib", "SALib", "libsbml", "roadrunner", "emcee", "arviz",
               "sqlalchemy", "fastapi", "uvicorn")  # fmt: skip


def wall(cmd: list[str], repeats: int, out: Path | None = None) -> float:
    """Median wall time of ``cmd`` in a fresh process (``out`` removed before each run)."""
    times = []
    for _ in range(repeats):
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return statistics.median(times)


def bench_processes(repeats: int, tmp: Path) -> None:
    out = tmp / "run"
    bare = wall([sys.executable, "-c", "pass"], repeats)
    cases = [
        ("microneedling --version", [*CLI, "--version"], None, None),
        ("microneedling --help", [*CLI, "--help"], None, None),
        ("simulate --draws 0 --no-figures",
         [*CLI, "simulate", str(EXAMPLE), "--draws", "0", "--no-figures", "--out", str(out)],
         out, 0.8),
        ("simulate (32 draws, figures)", [*CLI, "simulate", str(EXAMPLE), "--out", str(out)],
         out, 1.5),
    ]  # fmt: skip
    wall(cases[2][1], 1, out)  # warm numba's cache and the file system once
    print(f"1. whole processes, median of {repeats} (python -c pass: {bare * 1e3:.0f} ms)")
    for name, cmd, target, goal in cases:
        t = wall(cmd, repeats, target)
        goal_text = f"   (goal <= {goal:.1f} s)" if goal else ""
        print(f"   {name:34s} {t:6.2f} s   {t / bare:5.1f}x bare python{goal_text}")


def bench_imports(tmp: Path) -> None:
    out = tmp / "imports"
    cmd = [sys.executable, "-X", "importtime", "-m", "microneedling", "simulate", str(EXAMPLE),
           "--draws", "0", "--no-figures", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    # "import time: self [us] | cumulative | imported package": top level = no leading spaces
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m and not m.group(2).startswith(" "):
            name = m.group(2).strip()
            cumulative[name] = cumulative.get(name, 0) + int(m.group(1))
    total = sum(cumulative.values())
    print(f"2. imports of `simulate --draws 0 --no-figures` (-X importtime): {total / 1e6:.2f} s")
    for name, us in sorted(cumulative.items(), key=lambda kv: -kv[1])[:12]:
        print(f"   {name:28s} {us / 1e3:7.0f} ms   {100 * us / total:4.1f}%")
    other = [m for m in OTHER_PATHS if m in cumulative]
    print(f"   libraries of other paths imported: {', '.join(other) if other else 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as d:
        bench_processes(args.repeats, Path(d))
        bench_imports(Path(d))


if __name__ == "__main__":
    main()
