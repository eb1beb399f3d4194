"""A trial on a real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on loopback.

The trial runs through ``microneedling trial --scheduler tcp://127.0.0.1:PORT``; once the first
chunk is on disk, the worker that holds chunks in flight is killed with SIGKILL (no nanny: it stays
dead, like a lost node). The scheduler hands its chunks to the surviving worker and the trial must
finish with a ``trial.nc`` identical, bit for bit, to the same spec run in this process: a chunk's
patients and numbers depend on the spec, the seed and the chunk's place only, never on the worker
that ran it.

``distributed`` is a declared dependency, so a missing ``dask`` command fails this test, never
skips it. Every process started here is ended in the fixture's finalizer (also when the test
fails), and the finalizer checks with ``ps`` that none of them, nor any child, is left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from microneedling.studies.trial.run import plan_chunks, run_trial
from microneedling.studies.trial.spec import TrialSpec
from tests.paths import EXAMPLES

PARALLEL = EXAMPLES / "trials" / "acne-roller-vs-pen.toml"
#: The ``dask`` command of the interpreter running the tests (installed with ``distributed``).
DASK = Path(sys.executable).parent / "dask"
N_PER_ARM, CHUNK = 300, 6  # 2 arms x 50 chunks: ~5 s on two workers after the first chunk
DRAWS = 16  # parameter sets: patient i under set i mod 16, across chunk boundaries
START_TIMEOUT_S = 90.0


@dataclass
class Cluster:
    """A scheduler and named workers started by the fixture, and a client that watches them."""

    address: str
    client: Any
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def _session_processes(groups: set[int]) -> list[str]:
    """Live (non-zombie) processes of the given process groups, as ``ps`` lines."""
    ps = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    )
    left = []
    for line in ps.stdout.splitlines():
        _pid, pgid, stat, *_ = line.split(maxsplit=3)
        if int(pgid) in groups and not stat.startswith("Z"):
            left.append(line.strip())
    return left


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after 10 s; reap them."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        if all(p.poll() is not None for p in procs):
            break


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    assert DASK.is_file(), f"the dask command of the installed distributed is missing: {DASK}"
    from distributed import Client

    procs: list[subprocess.Popen[bytes]] = []
    client: Any = None
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                [str(DASK), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: the finalizer ends it whole
            )
        procs.append(p)
        return p

    try:
        sched_file = tmp_path / "scheduler.json"
        scheduler = start(
            "scheduler",
            "scheduler",
            "--host", "127.0.0.1",
            "--port", "0",  # a free port, read back from the scheduler file
            "--no-dashboard",
            "--scheduler-file", str(sched_file),
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        address = ""
        while not address:
            assert scheduler.poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "dask scheduler did not start"
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:")
        out = Cluster(address, client=None, scheduler=scheduler)
        for name in ("w0", "w1"):
            out.workers[name] = start(
                name,
                "worker", address,
                "--name", name,
                "--nthreads", "1",
                "--nworkers", "1",
                "--no-nanny",  # a SIGKILLed worker stays dead (a lost node), nobody restarts it
                "--no-dashboard",
            )  # fmt: skip
        client = Client(address, timeout="30s")
        client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        out.client = client
        # no nanny: each worker is the very process started here (the one the test kills)
        pids = client.run(os.getpid)
        names = _worker_addresses(client)
        assert {n: pids[a] for n, a in names.items()} == {n: p.pid for n, p in out.workers.items()}
        yield out
    finally:
        if client is not None:
            client.close()
        _stop(procs)
        left = _session_processes({p.pid for p in procs})
        assert not left, f"processes left after the cluster was stopped: {left}"


def _worker_addresses(client: Any) -> dict[str, str]:
    """name -> address of the workers the scheduler knows."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w["name"]): addr for addr, w in info.items()}


def _spec() -> TrialSpec:
    return dataclasses.replace(
        TrialSpec.from_toml(PARALLEL), n_per_arm=N_PER_ARM, parameter_draws=DRAWS
    )


@pytest.fixture(scope="module")
def reference() -> xr.Dataset:
    """The trial in this process, with the same chunks."""
    return run_trial(_spec(), chunk_size=CHUNK).dataset()


def _start_trial(out: Path, *options: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``microneedling trial`` of the small spec in a subprocess; its stderr goes to a file."""
    cmd = [
        sys.executable, "-m", "microneedling", "trial", str(PARALLEL),
        "--out", str(out),
        "--n", str(N_PER_ARM),
        "--chunk-size", str(CHUNK),
        "--parameter-draws", str(DRAWS),
        "-q",
        *options,
    ]  # fmt: skip
    err = out.with_name(out.name + ".err")
    with open(err, "wb") as fh:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh), err


def _n_chunks(out: Path) -> int:
    return len(list((out.with_name(out.name + ".partial") / "chunks").glob("chunk-*.pkl")))


def _assert_same_as_in_process(out: Path, reference: xr.Dataset) -> None:
    """trial.nc equals the in-process run of the same spec and seed, bit for bit."""
    with xr.open_dataset(out / "trial.nc") as got:
        got.load()
    assert got.sizes["patient"] == N_PER_ARM and got.sizes["arm"] == 2
    assert np.isfinite(got["value"].values).all()
    assert got.attrs["parameter_draws"] == DRAWS and "draw_mean" in got
    np.testing.assert_array_equal(got["value"].values, reference["value"].values)
    xr.testing.assert_identical(got, reference)  # covariates, bands, attributes too


@pytest.mark.slow
def test_trial_on_a_cluster_survives_a_killed_worker(
    cluster: Cluster, tmp_path: Path, reference: xr.Dataset
) -> None:
    n_chunks = len(plan_chunks(_spec(), CHUNK))
    assert n_chunks == 100
    out = tmp_path / "run"
    trial, err = _start_trial(out, "--scheduler", cluster.address)
    try:
        # wait for the first finished chunk, then for a worker holding chunks still to be done
        victim = ""
        in_flight: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while not victim:
            assert trial.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "no chunk finished on the cluster"
            if _n_chunks(out):
                names = _worker_addresses(cluster.client)
                busy = cluster.client.processing()
                for name in ("w0", "w1"):
                    if busy.get(names[name]):
                        victim, in_flight = name, list(busy[names[name]])
                        break
            if not victim:
                time.sleep(0.02)
        os.kill(cluster.workers[victim].pid, signal.SIGKILL)
        done_at_kill = _n_chunks(out)
        assert cluster.workers[victim].wait(timeout=30) == -signal.SIGKILL
        assert 1 <= done_at_kill < n_chunks, "the worker was not killed mid-run"
        assert in_flight and all(str(k).startswith("chunk-") for k in in_flight)

        assert trial.wait(timeout=600) == 0, err.read_text()
    finally:
        if trial.poll() is None:
            trial.kill()
            trial.wait()
    # the scheduler lost the worker and the survivor did the rest
    assert set(_worker_addresses(cluster.client)) == {"w0", "w1"} - {victim}
    assert not (tmp_path / "run.partial").exists()
    _assert_same_as_in_process(out, reference)


@pytest.mark.slow
def test_lost_scheduler_is_one_line_and_the_rerun_resumes(
    cluster: Cluster, tmp_path: Path, reference: xr.Dataset
) -> None:
    out = tmp_path / "run"
    trial, err = _start_trial(out, "--scheduler", cluster.address)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _n_chunks(out):
            assert trial.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "no chunk finished on the cluster"
            time.sleep(0.02)
        cluster.scheduler.send_signal(signal.SIGKILL)
        assert trial.wait(timeout=120) == 1, err.read_text()
    finally:
        if trial.poll() is None:
            trial.kill()
            trial.wait()
    kept = _n_chunks(out)
    assert 1 <= kept < 100
    lines = err.read_text().strip().splitlines()
    assert len(lines) == 1, lines  # one line, no logged traceback
    assert f"lost the connection to the Dask scheduler of {cluster.address}" in lines[0]
    assert "chunks finished are kept in" in lines[0] and "resumes from them" in lines[0]
    assert not out.exists()
    # the same command without the cluster resumes from the kept chunks
    again, err = _start_trial(out)
    assert again.wait(timeout=600) == 0, err.read_text()
    _assert_same_as_in_process(out, reference)
