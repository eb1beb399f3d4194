"""Command-line start-up benchmark (run on its own: ``python benchmarks/bench_cli.py``; not a test).

Reports, in one process so that ratios are meaningful on a noisy machine:

1. wall and CPU (user + system) time of whole ``microneedling`` processes (fresh interpreter each,
   numba's cache warm), median of ``--repeats``, and each as a ratio to a bare ``python -c pass``
   measured in the same run: ``--version``, ``--help``, ``simulate --draws 0 --no-figures``,
   ``simulate`` with its defaults (32 draws, figures, report). With ``--reference SRC`` (the
   ``src`` folder of another checkout, e.g. ``git worktree add /tmp/ref <commit>``), every case
   also runs with ``PYTHONPATH=SRC``, alternating with this tree's run, and the ratio is printed
   (of the medians, and the median and quartiles of each round's own ratio): on a loaded machine,
   CPU time and the per-round ratio say more than wall times;
2. where the start-up of ``simulate --draws 0 --no-figures`` goes: ``python -X importtime``'s
   cumulative time of the top-level packages it imports, largest first, and whether a library of
   another path (``distributed``, ``matplotlib``, Dask, pint, SALib, libsbml, ...) is among them
   (the test ``tests/cli/test_imports.py`` fails CI on that; the times are only reported here).

Bytecode: every process reads its modules' compiled bytecode, as an installed package's user does
(``PYTHONDONTWRITEBYTECODE`` is dropped and ``PYTHONPYCACHEPREFIX`` points into the temporary folder,
one per tree, filled by the warm-up run, so that no source tree gets ``__pycache__`` files of
Python's). ``--no-bytecode`` keeps ``PYTHONDONTWRITEBYTECODE=1`` instead: then each process
compiles the package's own sources again (~0.2-0.3 s of the 2026-12-05 figures, which were
measured so).

Goals (issue 15): ``simulate --draws 0 --no-figures`` <= 0.8 s, ``simulate`` default <= 1.5 s.

    python benchmarks/bench_cli.py [--repeats 5] [--reference /tmp/ref/src] [--no-bytecode]
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
#: a process of only the libraries ``simulate --draws 0 --no-figures`` cannot do without, none
#: of this package's work: what no change to the package can take below (written to a temporary
#: folder with the numba module below, whose one function numba caches on the warm-up run)
FLOOR = """
import gc, sys
gc.disable()  # as the command pauses the collector through its work and freezes what it made
sys.path.insert(0, sys.argv[1])
import numpy as np, scipy.special, pydantic, typer, netCDF4, jinja2, rich.console
from microneedling.engine.quiet_xarray import import_xarray  # (xarray without Dask and pint)
xr = import_xarray()
import floor_kernel
floor_kernel.twice(1.0)  # numba loads a cached function: its imports and target context
xr.Dataset({"a": ("x", np.arange(3.0))})
with netCDF4.Dataset(sys.argv[2], "w") as nc:
    nc.createDimension("x", 3)
    nc.createVariable("a", "f8", ("x",))[:] = np.arange(3.0)
gc.freeze()
"""
FLOOR_KERNEL = """
import numba


@numba.njit(cache=True)
def twice(x):
    return 2.0 * x
"""
OTHER_PATHS = ("distributed", "matplotlib", "dask", "pint", "SALib", "libsbml", "roadrunner",
               "emcee", "arviz", "sqlalchemy", "fastapi", "uvicorn")  # fmt: skip


#: where each tree's bytecode goes (``None``: none written, ``PYTHONDONTWRITEBYTECODE=1``)
PYCACHE: dict[str | None, Path | None] = {}


def process_env(src: str | None) -> dict[str, str]:
    """The environment of a measured process: ``src`` first on ``PYTHONPATH`` and the bytecode
    setting of the run (:data:`PYCACHE`)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    prefix = PYCACHE.get(src)
    if prefix is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
    return env


def run_once(cmd: list[str], out: Path | None, src: str | None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``cmd`` in a fresh process (``out`` removed first;
    ``src``: the package's source folder to put first on ``PYTHONPATH``)."""
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    env = process_env(src)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def bench_processes(repeats: int, tmp: Path, reference: str | None, bytecode: bool) -> None:
    out = tmp / "run"
    floor = tmp / "floor"
    floor.mkdir(exist_ok=True)
    (floor / "floor_kernel.py").write_text(FLOOR_KERNEL, encoding="utf-8")
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"], None, None),
        ("libraries alone (floor)", [sys.executable, "-c", FLOOR, str(floor), str(floor / "x.nc")],
         None, None),
        ("microneedling --version", [*CLI, "--version"], None, None),
        ("microneedling --help", [*CLI, "--help"], None, None),
        ("simulate --draws 0 --no-figures",
         [*CLI, "simulate", str(EXAMPLE), "--draws", "0", "--no-figures", "--out", str(out)],
         out, 0.8),
        ("simulate (32 draws, figures)", [*CLI, "simulate", str(EXAMPLE), "--out", str(out)],
         out, 1.5),
    ]  # fmt: skip
    trees: list[str | None] = [str(ROOT / "src")] + ([reference] if reference else [])
    for i, src in enumerate(trees):
        PYCACHE[src] = tmp / f"pycache-{i}" if bytecode else None
    for src in trees:  # warm numba's caches (each tree's own), the bytecode and the file system
        for case in cases[1:2] + cases[4:]:
            run_once(case[1], out, src)
    print(f"1. whole processes, median of {repeats}, wall / CPU (user + system)")
    print(
        "   bytecode read from a cache, as installed"
        if bytecode
        else "   no bytecode cache (PYTHONDONTWRITEBYTECODE=1): the package's sources compiled each run"
    )
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
            # each round's own ratio (its two runs are next to each other in time): on a machine
            # whose load moves, their median and quartiles are steadier than a ratio of medians
            paired = sorted(
                r[1] / h[1] for r, h in zip(runs[reference], runs[trees[0]], strict=True)
            )
            q1, q2, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
            line += (
                f"   reference {ref[0]:6.2f} s / {ref[1]:5.2f} s CPU ({ref[1] / here[1]:.2f}x CPU;"
                f" per round {q2:.2f}x, quartiles {q1:.2f}-{q3:.2f})"
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
                          env=process_env(str(ROOT / "src")))  # fmt: skip
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
    ap.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile the sources in every process (PYTHONDONTWRITEBYTECODE=1), as before 2026-12-06",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as d:
        bench_processes(args.repeats, Path(d), args.reference, not args.no_bytecode)
        bench_imports(Path(d))


if __name__ == "__main__":
    main()
