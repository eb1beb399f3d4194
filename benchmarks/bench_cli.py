"""Command-line start-up benchmark (run on its own: ``python benchmarks/bench_cli.py``; not a test).

Reports, in one process so that ratios are meaningful on a noisy machine:

1. wall and CPU (user + system) time of whole ``microneedling`` processes (fresh interpreter each,
   numba's cache warm), median of ``--repeats``, and each as a ratio to a bare ``python -c pass``
   measured in the same run: ``--version``, ``--help``, ``simulate --draws 0 --no-figures``,
   ``simulate`` with its defaults (32 draws, figures, report). With ``--reference SRC`` (the
   ``src`` folder of another checkout, e.g. ``git worktree add /tmp/ref <commit>``), every case
   also runs with ``PYTHONPATH=SRC``, alternating with this tree's run, and the ratio is printed:
   on a loaded machine, CPU time and that ratio say more than wall times;
2. where the start-up of ``simulate --draws 0 --no-figures`` goes: ``python -X importtime``'s
   cumulative time of the top-level packages it imports, largest first, and whether a library of
   another path (``distributed``, ``matplotlib``, Dask, pint, SALib, libsbml, ...) is among them
   (the test ``tests/cli/test_imports.py`` fails CI on that; the times are only reported here).

Goals (issue 15): ``simulate --draws 0 --no-figures`` <= 0.8 s, ``simulate`` default <= 1.5 s.

    python benchmarks/bench_cli.py [--repeats 5] [--reference /tmp/ref/src]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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
OTHER_PATHS = ("distributed", "matplotlib", "dask", "pint", "SALib", "libsbml", "roadrunner",
               "emcee", "arviz", "sqlalchemy", "fastapi", "uvicorn")  # fmt: skip


def run_once(cmd: list[str], out: Path | None, src: str | None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``cmd`` in a fresh process (``out`` removed first;
    ``src``: the package's source folder to put first on ``PYTHONPATH``)."""
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def bench_processes(repeats: int, tmp: Path, reference: str | None) -> None:
    out = tmp / "run"
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None, None),
        ("microneedling --version", [*CLI, "--version"], None, None),
        ("microneedling --help", [*CLI, "--help"], None, None),
        ("simulate --draws 0 --no-figures",
         [*CLI, "simulate", str(EXAMPLE), "--draws", "0", "--no-figures", "--out", str(out)],
         out, 0.8),
        ("simulate (32 draws, figures)", [*CLI, "simulate", str(EXAMPLE), "--out", str(out)],
         out, 1.5),
    ]  # fmt: skip
    trees: list[str | None] = [str(ROOT / "src")] + ([reference] if reference else [])
    for src in trees:  # warm numba's cache (each tree's own) and the file system once
        run_once(cases[3][1], out, src)
    print(f"1. whole processes, median of {repeats}, wall / CPU (user + system)")
    if reference:
        print(f"   reference (PYTHONPATH={reference}) alternating with this tree in each round")
    load = os.getloadavg()[0]
    bare: dict[str | None, float] = {}
    for name, cmd, target, goal in cases:
        runs: dict[str | None, list[tuple[float, float]]] = {src: [] for src in trees}
        for _ in range(repeats):
            for src in trees:
                runs[src].append(run_once(cmd, target, src))
        med = {
            src: tuple(statistics.median(x[i] for x in r) for i in (0, 1))
            for src, r in runs.items()
        }
        here = med[trees[0]]
        if name == "python -c pass":
            bare = {src: m[0] for src, m in med.items()}
            print(f"   {name:34s} {here[0] * 1e3:6.0f} ms wall")
            continue
        goal_text = f"   (goal <= {goal:.1f} s)" if goal else ""
        line = f"   {name:34s} {here[0]:6.2f} s / {here[1]:5.2f} s CPU   {here[0] / bare[trees[0]]:5.1f}x bare python"
        if reference:
            ref = med[reference]
            line += (
                f"   reference {ref[0]:6.2f} s / {ref[1]:5.2f} s CPU ({ref[1] / here[1]:.2f}x CPU)"
            )
        print(line + goal_text)
    print(
        f"   load average {load:.1f} -> {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} CPUs"
    )


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
    ap.add_argument(
        "--reference",
        metavar="SRC",
        help="source folder of another checkout, run alternately with this one (PYTHONPATH)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as d:
        bench_processes(args.repeats, Path(d), args.reference)
        bench_imports(Path(d))


if __name__ == "__main__":
    main()
