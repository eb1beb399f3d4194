"""Background runs: a few job threads per server process take queued runs from the database, run
them through :func:`microneedling.service.runs.execute` (whose chunks go to the project's executor:
in the job thread by default, on local Dask workers or a Dask scheduler when configured), and store
their outputs.

A heartbeat thread writes each running job's progress and heartbeat to the database and reads
cancellation requests. A run is claimed with one conditional ``UPDATE`` (so two processes never
take the same run); a run whose owner stopped beating for ``stale_after_s`` (the process was killed,
the machine restarted) is taken over and resumed: a trial then computes only the chunks missing from
its chunk store.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from microneedling.service.config import Settings
from microneedling.service.db import FileRecord, Run, now
from microneedling.service.runs import (
    Cancelled,
    Outputs,
    Progress,
    error_json,
    execute,
    log_failure,
    media_type,
    remove_work,
)
from microneedling.service.store import FileStore

__all__ = ["TERMINAL", "JobManager", "store_outputs", "work_dir"]

log = logging.getLogger("microneedling.service")

TERMINAL = frozenset({"done", "failed", "cancelled"})


def work_dir(settings: Settings, run_id: int) -> Path:
    """The run's own scratch directory (a trial's chunk store lives there until the run ends)."""
    return settings.work_dir / f"run-{run_id}"


def store_outputs(db: Session, store: FileStore, run: Run, outputs: Outputs) -> list[FileRecord]:
    """Move a run's files into the file store and reference them from the database."""
    records = []
    for name, content in outputs.files.items():
        sha, size = (
            store.put_bytes(content) if isinstance(content, bytes) else store.put_file(content)
        )
        rec = FileRecord(
            organisation_id=run.organisation_id,
            run_id=run.id,
            name=name,
            sha256=sha,
            size=size,
            media_type=media_type(name),
        )
        db.add(rec)
        records.append(rec)
    run.summary = outputs.summary
    if outputs.endpoints is not None:
        run.endpoints = outputs.endpoints
    db.flush()
    return records


@dataclass
class _Job:
    run_id: int
    progress: Progress = field(default_factory=Progress)


class JobManager:
    """Job threads, a dispatcher and a heartbeat for one server process."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], store: FileStore
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------- control
    def start(self) -> None:
        if self.settings.job_threads <= 0:
            return
        for i in range(self.settings.job_threads):
            t = threading.Thread(target=self._work, name=f"microneedling-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._beat, name="microneedling-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking runs; a run in progress is left to finish in its daemon thread or, if the
        process exits first, to be resumed by the next server (its heartbeat stops)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout=timeout / max(len(self._threads), 1))

    def notify(self) -> None:
        """A run was queued: wake a job thread now instead of at its next poll."""
        with self._wake:
            self._wake.notify()

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._jobs)

    # ------------------------------------------------------------------------ claiming
    def _claim(self) -> int | None:
        stale = now() - dt.timedelta(seconds=self.settings.stale_after_s)
        ready = sa.or_(
            Run.status == "queued",
            sa.and_(
                Run.status == "running",
                sa.or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stale),
            ),
        )
        with self.sessions() as db:
            ids = db.scalars(sa.select(Run.id).where(ready).order_by(Run.id).limit(10)).all()
            for rid in ids:
                t = now()
                res = db.execute(
                    sa.update(Run)
                    .where(Run.id == rid, ready)
                    .values(
                        status="running",
                        worker=self.worker_id,
                        heartbeat_at=t,
                        attempts=Run.attempts + 1,
                        started_at=sa.func.coalesce(Run.started_at, t),
                    )
                    .execution_options(synchronize_session=False)
                )
                db.commit()
                if getattr(res, "rowcount", 0) == 1:
                    return int(rid)
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                rid = self._claim()
            except Exception:  # a database hiccup: try again at the next poll
                log.exception("could not claim a run")
                rid = None
            if rid is None:
                with self._wake:
                    self._wake.wait(timeout=self.settings.poll_s)
                continue
            self._run(rid)

    # ------------------------------------------------------------------------- running
    def _run(self, rid: int) -> None:
        job = _Job(rid)
        with self.sessions() as db:
            run = db.get(Run, rid)
            if run is None:
                return
            kind, request, cancel = run.kind, dict(run.request), run.cancel_requested
        work = work_dir(self.settings, rid)
        if cancel:
            self._finish(rid, "cancelled", None, None, work)
            return
        with self._lock:
            self._jobs[rid] = job
        try:
            outputs = execute(kind, request, self.settings, job.progress, work)
        except Cancelled:
            self._finish(rid, "cancelled", None, None, work)
        except BaseException as exc:
            log_failure(rid, exc)
            self._finish(rid, "failed", None, error_json(exc), work)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(rid, "done", outputs, None, work)
        finally:
            with self._lock:
                self._jobs.pop(rid, None)

    def _finish(
        self,
        rid: int,
        status: str,
        outputs: Outputs | None,
        error: dict[str, Any] | None,
        work: Path,
    ) -> None:
        with self.sessions() as db:
            run = db.get(Run, rid)
            if run is None:
                remove_work(work)  # deleted meanwhile
                return
            if run.worker not in (self.worker_id, None):
                return  # taken over by another process
            if status == "done" and run.cancel_requested:
                status, outputs = "cancelled", None  # cancelled during its one step: dropped
            if outputs is not None:
                store_outputs(db, self.store, run, outputs)
                run.progress, run.progress_text = 1.0, "done"
            run.status = status
            run.error = error
            run.finished_at = now()
            run.heartbeat_at = now()
            if status == "cancelled":
                run.progress_text = "cancelled"
            remove_work(work)  # before the commit: a finished run never leaves chunks behind
            db.commit()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self._beat_once()
            except Exception:
                log.exception("heartbeat failed")

    def _beat_once(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        if not jobs:
            return
        with self.sessions() as db:
            for job in jobs:
                run = db.get(Run, job.run_id)
                if run is None:
                    job.progress.cancelled = True  # deleted: stop computing it
                    continue
                if run.worker != self.worker_id or run.status != "running":
                    continue
                run.heartbeat_at = now()
                run.progress = job.progress.fraction
                run.progress_text = job.progress.text
                if run.cancel_requested:
                    job.progress.cancelled = True
            db.commit()
