"""Where batches of work run: in this process, on local worker processes, or on a Dask cluster.

Trials, sensitivity analysis and calibration split their cases into chunks (each chunk one
vectorised :func:`~microneedling.engine.batch.simulate_batch` call) and hand them to
:func:`map_chunks`. Dask is the engine; this module only chooses the cluster, submits, collects in
order and shows progress:

``workers=0`` (default)
    run every chunk in this process, one after the other (no Dask at all);
``workers=N``
    start a :class:`distributed.LocalCluster` of N single-threaded worker processes for the call;
``scheduler="tcp://host:port"``
    connect to an existing Dask cluster (``dask scheduler`` + ``dask worker`` elsewhere).

For resumable work, :func:`map_chunks` takes a ``skip`` set of item indices already done and an
``on_result`` callback called (in the submitting process, as results arrive) with each finished
item: a trial writes each finished chunk to disk there, so an interrupted run loses at most the
chunks in flight (:class:`ChunkStore`).

On a cluster, a worker that dies (killed, out of memory, its node lost) takes its chunks in flight
with it; the scheduler gives them to another worker, and because a chunk's result depends only on
its item (the seeds are in the item, never in the worker), the numbers are the same. Dask gives up
on a chunk when more than ``distributed.scheduler.allowed-failures`` (default 3) workers died
running it; that, a lost scheduler and a worker with another installation of this package are an
:class:`ExecutorError` (one line, no traceback). Every chunk sent to an existing scheduler checks
on its worker that the worker runs the same files of this package (:func:`installation_stamp`).

User molecules (:func:`~microneedling.parameters.molecules.using_molecules`) live in a context
variable, which does not cross processes: the molecules in scope where :func:`map_chunks` is called
travel with every chunk sent to a worker, which runs it inside the same scope.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, TypeVar

from microneedling.about import __version__
from microneedling.errors import InputError, MicroneedlingError
from microneedling.io import atomic_path
from microneedling.parameters.molecules import Molecule, molecule_extras, using_molecules

__all__ = [
    "ChunkStore",
    "ExecutorError",
    "installation_stamp",
    "map_chunks",
    "validate_executor",
]

T = TypeVar("T")
R = TypeVar("R")


#: Files of the package that decide its numbers (code and data; not templates or caches).
_STAMPED_SUFFIXES = frozenset({".py", ".toml", ".json", ".csv", ".npz"})


class ExecutorError(MicroneedlingError):
    """The cluster could not finish the work: a chunk lost with every worker that ran it, the
    connection to the scheduler lost, or a worker running another installation of the package."""


def _tree_hash(root: Path) -> str:
    """SHA-256 (16 hex digits) of the code and data files under ``root``: paths and contents."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in _STAMPED_SUFFIXES and "__pycache__" not in p.parts and p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


@functools.cache
def installation_stamp() -> str:
    """``<version>+<hash>`` of this installation: the hash of the package's code and data files,
    computed once per process (~30 ms). Two installations with the same stamp compute the same
    numbers from the same chunk."""
    return f"{__version__}+{_tree_hash(Path(__file__).resolve().parents[1])}"


def _checked_call(fn: Callable[[T], R], stamp: str, item: T) -> R:
    """Run ``fn(item)`` on a worker after checking that it has the submitter's installation."""
    mine = installation_stamp()
    if mine != stamp:
        raise ExecutorError(
            f"Dask worker on {socket.gethostname()} runs microneedling {mine}, this machine "
            f"{stamp}: every worker needs the same version (the same files) installed, or its "
            "chunks could give other numbers"
        )
    return fn(item)


def _with_molecules(fn: Callable[[T], R], molecules: dict[str, Molecule], item: T) -> R:
    """Run ``fn(item)`` on a worker inside the submitter's user molecules (picklable)."""
    with using_molecules(molecules):
        return fn(item)


def validate_executor(workers: int, scheduler: str | None) -> None:
    """Refuse impossible executor choices with a field-named :class:`InputError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError("workers", workers, "an integer >= 0 (0: run in this process)")
    if scheduler is not None:
        if workers:
            raise InputError("scheduler", scheduler, "either --workers or --scheduler, not both")
        if not isinstance(scheduler, str) or "://" not in scheduler:
            raise InputError(
                "scheduler", scheduler, "a Dask scheduler address such as tcp://host:8786"
            )


class _Progress:
    """A rich progress bar (items done, rate, time left) on stderr; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, label: str, done: int = 0) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled or total == 0:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(label or "chunks", total=total, completed=done, rate="")
        self._t0 = time.perf_counter()
        self._start = done

    def advance(self, n: int = 1, rate: str | None = None) -> None:
        if self._bar is None:
            return
        self._bar.advance(self._task, n)
        if rate is not None:
            self._bar.update(self._task, rate=rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def map_chunks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 0,
    scheduler: str | None = None,
    progress: bool = False,
    label: str = "",
    skip: Iterable[int] = (),
    on_result: Callable[[int, R], None] | None = None,
    rate: Callable[[R], float] | None = None,
    rate_unit: str = "items",
    keep: bool = True,
) -> list[R | None]:
    """Apply the picklable ``fn`` to each item; results in the order of ``items``.

    Parameters
    ----------
    fn:
        A module-level function (it is pickled to the workers) of one item.
    items:
        The work, e.g. chunk descriptions (small: they are sent to the workers).
    workers:
        0: in this process; N > 0: a LocalCluster of N single-threaded processes for this call.
    scheduler:
        Address of an existing Dask scheduler (``tcp://host:port``); excludes ``workers``.
    progress:
        Show a progress bar on stderr (items done, rate, time left).
    label:
        Text in front of the progress bar.
    skip:
        Indices of items already done (e.g. chunks found on disk): not run; ``None`` in the result.
    on_result:
        Called as ``on_result(index, result)`` in this process as soon as each item finishes
        (completion order), e.g. to persist it.
    rate, rate_unit:
        ``rate(result)`` is the number of units (e.g. patients) a result stands for; the progress
        bar then shows units per second instead of items per second.

    Returns
    -------
    list
        ``[fn(items[0]), fn(items[1]), ...]`` with ``None`` at the skipped indices.
    """
    validate_executor(workers, scheduler)
    skipped = set(int(i) for i in skip)
    todo = [i for i in range(len(items)) if i not in skipped]
    out: list[R | None] = [None] * len(items)
    bar = _Progress(progress, len(items), label, done=len(items) - len(todo))
    units = 0.0
    t0 = time.perf_counter()

    def finished(i: int, r: R) -> None:
        nonlocal units
        if keep:
            out[i] = r
        if on_result is not None:
            on_result(i, r)
        text = None
        if rate is not None:
            units += rate(r)
            dt = max(time.perf_counter() - t0, 1e-9)
            text = f"{units / dt:,.0f} {rate_unit}/s"
        bar.advance(1, text)

    try:
        if not todo:
            return out
        if workers == 0 and scheduler is None:
            for i in todo:
                finished(i, fn(items[i]))
            return out
        _run_dask(fn, items, todo, workers, scheduler, finished)
        return out
    finally:
        bar.close()


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Raise the stream handlers of Dask's loggers in this process to CRITICAL for the call: a
    lost worker or scheduler becomes an :class:`ExecutorError` (one line), not logged tracebacks.
    Used as the decorator of :func:`_run_dask`, so it runs at each call."""
    import distributed  # noqa: F401  (importing it sets up the loggers quieted here)

    with contextlib.ExitStack() as stack:
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if not name.split(".")[0] == "distributed" or not isinstance(logger, logging.Logger):
                continue
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler):
                    stack.callback(handler.setLevel, handler.level)
                    handler.setLevel(logging.CRITICAL)
        yield


@_quiet_dask_logs()
def _run_dask(
    fn: Callable[[T], R],
    items: Sequence[T],
    todo: list[int],
    workers: int,
    scheduler: str | None,
    finished: Callable[[int, R], None],
) -> None:
    """Submit ``items[todo]`` to a Dask cluster and call ``finished`` as each completes (inside
    :func:`_quiet_dask_logs`); cluster failures become :class:`ExecutorError`."""
    import dask
    from distributed import Client, KilledWorker, LocalCluster, as_completed
    from distributed.comm import CommClosedError

    cluster = None
    if scheduler is None:
        # one thread per worker process: the numerical kernels are single-threaded per process.
        # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536; any value of it turns
        # off glibc's dynamic mmap threshold, so every large array is a fresh mmap: measured, a
        # trial chunk runs 19% slower (266 -> 215 patients/s in one process). None drops it.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,  # failures surface as ExecutorError
                env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise InputError(
                "scheduler", scheduler, f"a reachable Dask scheduler ({exc})"
            ) from None
    task: Callable[[T], R] = fn
    extras = dict(molecule_extras())
    if extras:  # a context variable does not cross processes: the molecules go with each chunk
        task = functools.partial(_with_molecules, task, extras)
    if scheduler is not None:  # workers installed elsewhere: each checks it has our files
        task = functools.partial(_checked_call, task, installation_stamp())
    where = scheduler or "a local Dask cluster"  # for messages
    try:
        futures = {}
        for i in todo:
            fut = client.submit(
                task, items[i], key=f"chunk-{os.getpid()}-{id(items)}-{i}", pure=False
            )
            futures[fut] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            try:
                r = fut.result()
            except KilledWorker as exc:
                raise ExecutorError(
                    f"chunk {i} was lost on {where}: every worker that ran it died "
                    f"({exc.allowed_failures + 1} tried, the last {exc.last_worker.address}); a "
                    "worker out of memory is the usual cause: try a smaller chunk size or workers "
                    "with more memory"
                ) from None
            except (CancelledError, CommClosedError):
                # a dead scheduler cancels the pending futures, or, when it dies while a result
                # is being fetched, closes that connection (CommClosedError, an OSError)
                raise ExecutorError(
                    f"lost the connection to the Dask scheduler of {where} (chunk {i} not "
                    "received); check that the scheduler is still running"
                ) from None
            finished(i, r)
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class ChunkStore:
    """Finished chunks of a long computation, one pickle file per chunk, written atomically.

    A chunk's file appears only when it is complete (written to a hidden temporary name, then
    renamed), so after an interruption every file in the store is whole and a resumed run redoes only
    the missing chunks. ``fingerprint`` (e.g. a hash of the spec, the seed and the chunk size) is
    stored with the chunks; opening a store with a different fingerprint is refused rather than
    mixing results of two different computations.
    """

    def __init__(self, directory: str | os.PathLike[str], fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.directory.mkdir(parents=True, exist_ok=True)
        tag = self.directory / "FINGERPRINT"
        if tag.exists():
            old = tag.read_text(encoding="utf-8").strip()
            if old != fingerprint:
                raise InputError(
                    str(self.directory),
                    f"chunks of another computation (fingerprint {old})",
                    f"chunks of this one (fingerprint {fingerprint}); use a new --out or "
                    "remove the partial directory",
                )
        else:
            with atomic_path(tag) as tmp:
                tmp.write_text(fingerprint, encoding="utf-8")

    def _path(self, index: int) -> Path:
        return self.directory / f"chunk-{index:07d}.pkl"

    def done(self) -> set[int]:
        """Indices of the chunks already stored."""
        out = set()
        for p in self.directory.glob("chunk-*.pkl"):
            try:
                out.add(int(p.stem.split("-")[1]))
            except ValueError:  # pragma: no cover - foreign file
                continue
        return out

    def save(self, index: int, value: Any) -> None:
        """Store chunk ``index`` atomically."""
        with atomic_path(self._path(index)) as tmp, open(tmp, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, index: int) -> Any:
        """Chunk ``index`` as saved."""
        with open(self._path(index), "rb") as fh:
            return pickle.load(fh)
