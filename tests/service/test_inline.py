"""The inline simulate's hot path (issue 13): what it stores (the run, its result blob and file row,
the audit event, in one transaction) on SQLite and PostgreSQL, and how many run at once."""

from __future__ import annotations

import datetime as dt
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from microneedling.course.model import Course
from microneedling.engine.simulate import simulate
from microneedling.errors import InputError
from microneedling.service import api, auth, runs
from microneedling.service.config import Settings
from microneedling.service.db import AuditEvent, FileRecord, Run
from microneedling.service.runs import RESULT_BLOB
from tests.service.helpers import (
    Service,
    build_service,
    count_inline_simulations,
    example,
    settings_for,
)

API = "/api/v1"


def _count(svc: Service, model: type) -> int:
    with svc.ctx.sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _post_at_once(svc: Service, body: dict[str, Any], n: int) -> list[int]:
    """``n`` simulate requests of organisation A sent together; their status codes."""
    with ThreadPoolExecutor(n) as pool:
        return list(
            pool.map(
                lambda _: (
                    svc.client.post(f"{API}/runs/simulate", json=body, headers=svc.a.h).status_code
                ),
                range(n),
            )
        )


def test_inline_simulate_stores_run_result_and_audit_event(service: Service) -> None:
    c, a = service.client, service.a
    body = {"course": example("acne-scars-rolling-cheek.toml"), "draws": 0}
    r = c.post(f"{API}/runs/simulate", json=body, headers=a.h)
    assert r.status_code == 201, r.text
    out = r.json()
    with service.ctx.sessions() as db:
        run = db.get(Run, out["id"])
        assert run is not None
        assert (run.status, run.kind, run.organisation_id) == ("done", "simulate", a.id)
        assert run.created_by == a.user_id and run.request == out["request"]
        assert run.summary == out["summary"] and run.finished_at is not None
        files = db.scalars(sa.select(FileRecord).where(FileRecord.run_id == run.id)).all()
        assert [f.name for f in files] == [RESULT_BLOB]
        blob = service.ctx.store.read_bytes(files[0].sha256)
        assert len(blob) == files[0].size > 0
        events = db.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "run", AuditEvent.resource_id == str(run.id)
            )
        ).all()
        assert [(e.resource, e.user_id, e.token_id) for e in events] == [
            ("simulate", a.user_id, a.token_id)
        ]


def test_inline_simulate_stores_in_one_statement_on_postgresql(service: Service) -> None:
    """PostgreSQL stores the run, its file record and its audit event in one statement (one round
    trip; data-modifying WITH queries); SQLite, which has none, in three INSERTs. Both then commit
    once."""
    c, a = service.client, service.a
    body = {"course": example("acne-scars-rolling-cheek.toml"), "draws": 0}
    c.post(f"{API}/runs/simulate", json=body, headers=a.h)  # the token's last use is recorded
    seen: list[str] = []
    engine = service.ctx.engine

    def spy(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    sa.event.listen(engine, "before_cursor_execute", spy)
    try:
        assert c.post(f"{API}/runs/simulate", json=body, headers=a.h).status_code == 201
    finally:
        sa.event.remove(engine, "before_cursor_execute", spy)
    writes = [w for w in seen if not w.startswith("SELECT")]
    if service.kind == "postgresql":
        assert writes == ["WITH new_run AS"]
    else:
        assert writes == ["INSERT INTO runs", "INSERT INTO files", "INSERT INTO audit_events"]


def test_inline_simulate_writes_nothing_when_a_write_fails(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run, file and audit rows are one transaction (on PostgreSQL one statement): an audit
    row that fails (here one without its organisation, refused by the schema) leaves no run and no
    file row behind."""
    c, h = service.client, service.a.h
    body = {"course": example("acne-scars-rolling-cheek.toml"), "draws": 0}
    before = (_count(service, Run), _count(service, FileRecord), _count(service, AuditEvent))
    event = api._run_event
    monkeypatch.setattr(api, "_run_event", lambda *a: {**event(*a), "organisation_id": None})
    with pytest.raises(sa.exc.IntegrityError):  # the test client re-raises the server's error
        c.post(f"{API}/runs/simulate", json=body, headers=h)
    after = (_count(service, Run), _count(service, FileRecord), _count(service, AuditEvent))
    assert after == before


@pytest.mark.parametrize("threads", [1, 3])
def test_at_most_inline_threads_simulations_run_at_once(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inline_threads`` bounds how many inline simulations of one process run at once (the
    others wait on the event loop, none is refused); with 3 allowed, 3 do run together, so the
    count below would see a missing limit."""
    peak = count_inline_simulations(monkeypatch)
    body = {"course": example("acne-scars-rolling-cheek.toml"), "draws": 0}
    with build_service(settings_for(tmp_path, None, inline_threads=threads), "sqlite") as svc:
        assert _post_at_once(svc, body, 6) == [201] * 6
        assert _count(svc, Run) == 6
    assert peak() == threads


def test_requests_waiting_for_the_inline_limit_hold_no_database_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one inline simulation runs, the requests queued behind it hold no pooled connection.
    They held the one their authentication read on, so 15 of them exhausted SQLite's pool (5 + 10)
    and a simulation that needed a connection to store its result waited the pool's 30 s timeout,
    stalling the process (32 clients on 2 workers, 2026-12-06). Counted in the middle of each of
    8 simulations (0.4 s each) while 8 requests are in."""
    body = {"course": example("acne-scars-rolling-cheek.toml"), "draws": 0}
    # no job thread: its polls would take a connection now and then
    settings = settings_for(tmp_path, None, inline_threads=1, job_threads=0)
    with build_service(settings, "sqlite") as svc:
        svc.client.post(f"{API}/runs/simulate", json=body, headers=svc.a.h)  # last_used set
        pool = svc.ctx.engine.pool
        seen: list[int] = []
        real = api.simulate_inline

        def counted(request: Any) -> Any:
            time.sleep(0.2)
            seen.append(pool.checkedout())  # type: ignore[attr-defined]
            time.sleep(0.2)
            return real(request)

        monkeypatch.setattr(api, "simulate_inline", counted)
        assert _post_at_once(svc, body, 8) == [201] * 8
    assert len(seen) == 8
    # the first simulation starts while the others may still be signing in; then none holds one
    assert max(seen[1:]) <= 1, seen


@pytest.mark.parametrize("update", [False, True])
def test_after_authentication_a_request_needs_no_new_connection(
    service: Service, update: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other half of the test above, on both databases: after authentication (with and
    without the ``last_used_at`` UPDATE, whose commit gives the connection back) a request holds
    no connection on SQLite, and holds one it keeps on PostgreSQL, so the request that runs never
    waits for the pool that the requests queued behind it hold."""
    from starlette.requests import Request

    if update:
        monkeypatch.setattr(auth, "_LAST_USED_EVERY", dt.timedelta(0))
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"{API}/runs/simulate",
        "headers": [(b"authorization", f"Bearer {service.a.token}".encode())],
        "app": service.app,
        "client": ("127.0.0.1", 50000),
        "query_string": b"",
    }
    with service.ctx.sessions() as db:
        who = auth.authenticate_request(Request(scope), db, limit=False)
        assert who.organisation_id == service.a.id
        assert db.in_transaction() is (service.kind == "postgresql")


def test_inline_threads_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MICRONEEDLING_DATA_DIR", str(tmp_path))
    assert Settings.from_env().inline_threads == 1
    monkeypatch.setenv("MICRONEEDLING_INLINE_THREADS", "2")
    assert Settings.from_env().inline_threads == 2
    monkeypatch.setenv("MICRONEEDLING_INLINE_THREADS", "0")
    with pytest.raises(InputError) as info:
        Settings.from_env()
    assert (info.value.field, info.value.value) == ("MICRONEEDLING_INLINE_THREADS", "0")


@pytest.mark.parametrize(
    ("name", "draws"),
    [
        ("acne-scars-rolling-cheek.toml", 0),
        ("serum-absorption-study.toml", 0),
        ("stamp-small-scar.toml", 4),
    ],
)
def test_the_stored_result_gives_the_downloads_of_the_result_itself(name: str, draws: int) -> None:
    """``result_blob`` keeps the Dataset's arrays, attributes and encodings, not the Dataset
    object (faster to pickle): ``result_of`` rebuilds an identical Dataset, in the same order of
    variables and dimensions, and every file made on download has the same bytes as when made from
    the Dataset pickled whole (the form stored before, which is still read)."""
    result = simulate(Course.from_dict(example(name)), draws=draws)
    blob = runs.result_blob(result)
    whole = pickle.dumps(result.dataset, protocol=pickle.HIGHEST_PROTOCOL)
    ds, got = result.dataset, runs.result_of(blob).dataset
    assert got.identical(ds)
    assert list(got.variables) == list(ds.variables) and list(got.dims) == list(ds.dims)
    assert list(got.coords) == list(ds.coords) and got.encoding == ds.encoding
    assert {k: v.encoding for k, v in got.variables.items()} == {
        k: v.encoding for k, v in ds.variables.items()
    }
    assert runs.result_of(whole).dataset.identical(ds)
    for file in runs.DERIVED["simulate"]:
        assert runs.derive("simulate", file, blob) == runs.derive("simulate", file, whole), file
    with pytest.raises(runs.StoredResultError):
        runs.result_of(pickle.dumps({"format": 2}))
