"""What each path of the command line imports (issue 15: an instant command line).

Start-up time is measured by ``benchmarks/bench_cli.py``, never asserted here (a timed test fails
on a loaded machine and passes on a fast one). What is asserted is the cause of slow start-up:
libraries that a path does not use must not be imported on it. Each case runs the command in a
fresh interpreter and lists the top-level modules loaded when it exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import EXAMPLES

#: libraries of other paths: the cluster, sensitivity, SBML, the calibration, the service
HEAVY_ELSEWHERE = frozenset(
    {
        "distributed", "SALib", "libsbml", "roadrunner", "emcee", "arviz",
        "sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "argon2", "playwright",
    }
)  # fmt: skip
#: what a single course without figures does not need either
FIGURES = frozenset({"matplotlib", "PIL"})
#: xarray's duck-array libraries, which it imports to find out that an array is NumPy's
#: (microneedling.engine.quiet_xarray answers without them)
DUCK_ARRAYS = frozenset({"dask", "pint", "cupy", "sparse", "cubed"})
#: the numerical stack: not needed to print help or a version
NUMERICAL = frozenset({"numpy", "scipy", "pandas", "xarray", "numba", "netCDF4", "dask"})
#: the validation of input files (the course and patient models): not needed for the top-level
#: help or version (typer itself coerces a command's parameters with pydantic)
VALIDATION = frozenset({"pydantic", "pydantic_core"})
#: the package's own modules of other paths: the planner's patient file and screening (their
#: pydantic models and rules, ~40 ms), the studies, the service and the web pages
OWN_ELSEWHERE = (
    "microneedling.course.patient", "microneedling.course.screening", "microneedling.studies",
    "microneedling.service", "microneedling.web", "microneedling.client",
)  # fmt: skip

RUNNER = """
import json, sys
sys.argv = ["microneedling", *json.loads(sys.argv[1])]
try:
    from microneedling.cli.app import main
    main()
except SystemExit:
    pass
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""

PYTHON_API = """
import json, sys
import microneedling as mn
mn.simulate(mn.Course.from_file(sys.argv[1]), draws=0).to_netcdf(sys.argv[2])
loaded = sorted({name.split(".")[0] for name in list(sys.modules)})
print("MODULES " + json.dumps(loaded))
"""


def _loaded(output: str) -> set[str]:
    """Top-level names of the modules listed on the ``MODULES`` line of ``output``."""
    return {name.split(".")[0] for name in _loaded_modules(output)}


def _loaded_modules(output: str) -> set[str]:
    line = next(x for x in output.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _own_elsewhere(modules: set[str]) -> list[str]:
    """The package's modules of other paths (:data:`OWN_ELSEWHERE`, or below one) in ``modules``."""
    return sorted(m for m in modules if m.startswith(OWN_ELSEWHERE))


def _cli_run(*args: str) -> set[str]:
    """Every module loaded when ``microneedling ARGS`` exits (a fresh interpreter)."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(list(args))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return _loaded_modules(proc.stderr)


def _cli_modules(*args: str) -> set[str]:
    return {name.split(".")[0] for name in _cli_run(*args)}


@pytest.mark.slow
def test_a_single_course_without_figures_imports_no_cluster_and_no_plotting(
    tmp_path: Path,
) -> None:
    modules = _cli_run(
        "simulate", str(EXAMPLES / "acne-scars-rolling-cheek.toml"), "--draws", "0",
        "--no-figures", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    loaded = {name.split(".")[0] for name in modules}
    assert (tmp_path / "run" / "result.nc").is_file()  # it did the whole job
    assert "xarray" in loaded and "netCDF4" in loaded  # (the case is not vacuous)
    assert "microneedling.course.model" in modules
    unused = HEAVY_ELSEWHERE | FIGURES | DUCK_ARRAYS
    assert not loaded & unused, sorted(loaded & unused)
    assert not _own_elsewhere(modules), _own_elsewhere(modules)


@pytest.mark.slow
def test_a_single_course_with_figures_imports_no_cluster(tmp_path: Path) -> None:
    loaded = _cli_modules(
        "simulate", str(EXAMPLES / "acne-scars-rolling-cheek.toml"), "--draws", "4",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert "matplotlib" in loaded
    unused = HEAVY_ELSEWHERE | DUCK_ARRAYS
    assert not loaded & unused, sorted(loaded & unused)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["simulate", "--help"]])
def test_help_and_version_import_no_numerical_library(args: list[str]) -> None:
    loaded = _cli_modules(*args)
    assert "microneedling" in loaded
    unused = NUMERICAL | FIGURES | HEAVY_ELSEWHERE | (VALIDATION if len(args) == 1 else set())
    assert not loaded & unused, sorted(loaded & unused)


@pytest.mark.slow
def test_the_python_api_simulates_and_writes_without_the_cluster(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_API, str(EXAMPLES / "acne-scars-rolling-cheek.toml"),
         str(tmp_path / "result.nc")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    loaded = _loaded(proc.stdout)
    unused = HEAVY_ELSEWHERE | FIGURES | DUCK_ARRAYS
    assert not loaded & unused, sorted(loaded & unused)
