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


def test_every_imported_library_is_a_declared_dependency() -> None:
    """A fresh install gets only what pyproject's [project] dependencies name: every third-party
    module the package imports (at the top of a file or inside a function) must come from one of
    them (plotly was once imported but not declared, and only a fresh clone failed)."""
    import ast
    import importlib.metadata as md
    import re
    import tomllib

    declared = {
        re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-")
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    providers = md.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing: dict[str, list[str]] = {}
    for path in sorted((ROOT / "src" / "microneedling").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in ("microneedling", "__future__"):
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not missing, {k: sorted(set(v))[:3] for k, v in missing.items()}
