"""Executor failures on a cluster: a chunk that kills its workers, a worker with another
installation. (A real ``dask scheduler``/``dask worker`` cluster with a killed worker and a lost
scheduler: ``tests/studies/trial/test_cluster.py``.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dask
import distributed  # noqa: F401  (its config defaults must exist before dask.config.set below)
import pytest

import microneedling
from microneedling.engine.executor import (
    ExecutorError,
    _checked_call,
    _tree_hash,
    installation_stamp,
    map_chunks,
)
from microneedling.errors import MicroneedlingError


def test_a_chunk_that_kills_every_worker_is_one_line_error() -> None:
    # os._exit(3) ends the worker process running the chunk; with no failure allowed the
    # scheduler gives the chunk up at once (default: after 3 more workers died on it)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(ExecutorError) as e:
            map_chunks(os._exit, [3], workers=1)
    msg = str(e.value)
    assert msg.startswith("chunk 0 was lost on a local Dask cluster: every worker that ran it died")
    assert "(1 tried, the last tcp://127.0.0.1:" in msg and "smaller chunk size" in msg
    assert isinstance(e.value, MicroneedlingError)  # the CLI prints it as one line, exit 1


def test_worker_with_another_installation_refuses_the_chunk() -> None:
    mine = installation_stamp()
    assert mine.startswith(microneedling.__version__ + "+") and len(mine.split("+")[1]) == 16
    assert _checked_call(abs, mine, -3) == 3
    with pytest.raises(ExecutorError) as e:
        _checked_call(abs, "0.0.1+0123456789abcdef", -3)
    assert f"runs microneedling {mine}, this machine 0.0.1+0123456789abcdef" in str(e.value)


def test_installation_hash_follows_code_and_data_only(tmp_path: Path) -> None:
    src = Path(microneedling.__file__).parent
    tree = tmp_path / "microneedling"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns("__pycache__"))
    base = _tree_hash(tree)
    assert base == installation_stamp().split("+")[1]  # a copy of the same files: the same hash
    # a template, a cache: no number depends on them
    (tree / "reports" / "templates" / "extra.html.j2").write_text("x", encoding="utf-8")
    (tree / "__pycache__").mkdir(exist_ok=True)
    (tree / "__pycache__" / "x.py").write_text("x = 1\n", encoding="utf-8")
    assert _tree_hash(tree) == base
    # one byte of a parameter file, a code file, or a file moved: another installation
    par = next((tree / "data" / "parameters").glob("*.toml"))
    par.write_bytes(par.read_bytes() + b"\n")
    changed = _tree_hash(tree)
    assert changed != base
    (tree / "engine" / "executor.py").write_text("\n", encoding="utf-8")
    assert _tree_hash(tree) not in {base, changed}
    before = _tree_hash(tree)
    (tree / "about.py").rename(tree / "about2.py")
    assert _tree_hash(tree) != before


def test_existing_scheduler_with_another_installation_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import LocalCluster

    import microneedling.engine.executor as executor

    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        assert map_chunks(abs, [-2, 5], scheduler=cluster.scheduler_address) == [2, 5]
        # this process now claims another installation; the worker process has the real one
        monkeypatch.setattr(executor, "installation_stamp", lambda: "0.0.1+0123456789abcdef")
        with pytest.raises(ExecutorError, match=r"this machine 0\.0\.1\+0123456789abcdef: every"):
            map_chunks(abs, [-2, 5], scheduler=cluster.scheduler_address)


def test_local_workers_keep_glibc_dynamic_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in the workers it spawns; any value turns off
    # glibc's dynamic mmap threshold and made trial chunks 19% slower: map_chunks' LocalCluster
    # must not set it (the variable is cleared here in case an earlier nanny set it in this process)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    got = map_chunks(os.getenv, ["MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"], workers=1)
    assert got == [None, "1"]
