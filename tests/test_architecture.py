"""The house rules of the package, read from its own import statements.

* Layers: a module imports only from its own layer or from layers listed before it in
  :data:`LAYERS` (foundation < parameters < physics < course < engine < studies < reports <
  service < web < cli). Nothing imports ``cli``.
* No import cycle between the package's modules.
* No private name (``_x``) imported from another module of the package.
* Imports sit at module top, except two measured exceptions (docs/ARCHITECTURE.md): heavy
  third-party libraries loaded where they are used (:data:`LAZY_THIRD_PARTY`), and the CLI's
  command modules, which import the engine, studies and reports inside the command so that
  ``microneedling --help`` does not load them.
* Physics reads no files.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import REPO

PACKAGE = REPO / "src" / "microneedling"

#: layer of each top-level name of the package, in order (a module may import its own layer and
#: the layers before it)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("about", "errors", "interrupts", "units", "io", "schema", "vocabulary"),
    ("parameters",),
    ("physics",),
    ("course",),
    ("engine",),
    ("studies",),
    ("reports",),
    ("service",),
    ("web",),
    ("cli", "client"),
)
#: third-party libraries that may be imported inside functions, because loading them costs start-up
#: time on paths that do not use them
LAZY_THIRD_PARTY = frozenset(
    {
        "matplotlib",
        "xarray",
        "pandas",
        "scipy",
        "SALib",
        "dask",
        "distributed",
        "libsbml",
        "roadrunner",
        "rich",
        "jinja2",
        "netCDF4",
        "plotly",
        "sklearn",
    }
)


def _rank(module: str) -> int | None:
    """Layer index of a dotted module of the package (None for the package root / __main__)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("__main__", "__init__"):
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (resolved for "from pkg import submodule")
    names: tuple[str, ...]
    line: int
    in_function: bool
    type_checking: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    source = _module_name(path)
    out: list[Import] = []
    type_checking: set[int] = set()
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(
                    Import(source, a.name, (), node.lineno, id(node) in in_function,
                           id(node) in type_checking)
                )  # fmt: skip
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{source}:{node.lineno}: relative import"
            mod = node.module or ""
            names = tuple(a.name for a in node.names)
            targets = [mod]
            if mod.startswith("microneedling"):
                subs = [f"{mod}.{n}" for n in names if _is_package_module(f"{mod}.{n}")]
                targets = subs or [mod]
            for t in targets:
                out.append(
                    Import(source, t, names, node.lineno, id(node) in in_function,
                           id(node) in type_checking)
                )  # fmt: skip
    return out


FILES = sorted(PACKAGE.rglob("*.py"))
IMPORTS = [imp for f in FILES for imp in _imports(f)]
INTERNAL = [i for i in IMPORTS if i.target.split(".")[0] == "microneedling"]


def test_every_module_belongs_to_a_layer() -> None:
    for f in FILES:
        _rank(_module_name(f))  # raises for a module outside the layers


def test_imports_run_down_the_layers_only() -> None:
    upward = []
    for i in INTERNAL:
        src, dst = _rank(i.source), _rank(i.target)
        if src is None or dst is None:  # the package's public face and __main__
            continue
        if dst > src:
            upward.append(f"{i.source}:{i.line} imports {i.target}")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_nothing_imports_the_cli() -> None:
    bad = [
        f"{i.source}:{i.line}"
        for i in INTERNAL
        if i.target.startswith("microneedling.cli")
        and not i.source.startswith(("microneedling.cli", "microneedling.__main__"))
    ]
    assert not bad, bad


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for i in INTERNAL:
        if i.type_checking:
            continue
        graph.setdefault(i.source, set()).add(i.target)
    # a "from package import x" also runs the package's __init__: that edge is the target itself
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_crosses_modules() -> None:
    bad = [
        f"{i.source}:{i.line} imports {n} from {i.target}"
        for i in INTERNAL
        for n in i.names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_imports_sit_at_module_top_except_the_measured_ones() -> None:
    bad = []
    for i in IMPORTS:
        if not i.in_function:
            continue
        top = i.target.split(".")[0]
        if top == "microneedling":
            if i.source.startswith("microneedling.cli."):
                continue  # command modules load heavy layers inside the command (start-up time)
            bad.append(f"{i.source}:{i.line} imports {i.target} inside a function")
        elif top not in LAZY_THIRD_PARTY:
            bad.append(f"{i.source}:{i.line} imports {i.target} inside a function")
    assert not bad, "function-level imports outside the measured exceptions:\n" + "\n".join(bad)


def test_cli_start_imports_no_heavy_layer() -> None:
    """What makes the CLI exception worth it: importing the app loads no engine, study or report."""
    import subprocess

    code = (
        "import sys, microneedling.cli.app\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('microneedling.engine', "
        "'microneedling.studies', 'microneedling.reports', 'microneedling.physics')) "
        "or m.split('.')[0] in ('numpy', 'numba', 'xarray', 'matplotlib', 'dask'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


#: the one physics module that reads files: it hashes the package's own Python sources to keep
#: numba's on-disk cache fresh (no data)
READS_SOURCES = ("cache.py",)


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((PACKAGE / "physics").rglob("*.py")) if p.name not in READS_SOURCES],
    ids=lambda p: p.name,
)
def test_physics_reads_no_files(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {
        ast.unparse(n.func)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and ast.unparse(n.func).split(".")[-1]
        in ("open", "read_text", "read_bytes", "read_toml", "load", "loads", "data_path")
    }
    bad = {c for c in calls if c not in ("np.load",)}
    assert not bad, f"{path.name} reads files: {sorted(bad)}"
