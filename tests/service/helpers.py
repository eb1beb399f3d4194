"""Helpers of the service tests: an app with two organisations, example inputs as JSON."""

from __future__ import annotations

import contextlib
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest import MonkeyPatch

from microneedling.service import api
from microneedling.service.accounts import create_admin, issue_token
from microneedling.service.app import create_app
from microneedling.service.auth import Context
from microneedling.service.config import Settings
from microneedling.service.db import session_scope
from tests.paths import REPO

PASSWORD = "correct horse battery staple"
EXAMPLES = REPO / "examples"


def example(name: str) -> dict[str, Any]:
    """An example input file (TOML) as the JSON a client sends."""
    return tomllib.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def settings_for(data_dir: Path, database_url: str | None, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_key": "test-secret-key-not-for-production",
        "job_threads": 1,
        "heartbeat_s": 0.05,
        "poll_s": 0.05,
        "rate_per_second": 1000.0,
        "rate_burst": 1000,
        "login_per_minute": 1000,
        "freeze_heap": False,  # many apps start in one test process
    }
    base.update(kw)
    return Settings(**base)


@dataclass
class Org:
    id: int
    name: str
    email: str
    user_id: int
    token: str
    token_id: int

    @property
    def h(self) -> dict[str, str]:
        """Headers of the organisation's administrator's API token."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Service:
    kind: str
    app: FastAPI
    ctx: Context
    client: TestClient
    a: Org
    b: Org


def add_org(ctx: Context, name: str, email: str) -> Org:
    with session_scope(ctx.sessions) as db:
        user = create_admin(db, email, PASSWORD, name)
        rec, token = issue_token(db, user, "tests")
        return Org(user.organisation_id, name, email, user.id, token, rec.id)


@contextlib.contextmanager
def build_service(settings: Settings, kind: str) -> Iterator[Service]:
    app = create_app(settings)
    ctx: Context = app.state.context
    a = add_org(ctx, "Clinic A", f"admin@a-{kind}.example")
    b = add_org(ctx, "Lab B", f"admin@b-{kind}.example")
    with TestClient(app) as client:
        yield Service(kind, app, ctx, client, a, b)


def wait(client: TestClient, run_id: int, headers: dict[str, str], timeout: float = 120) -> Any:
    """Poll a run until it ends; its final state."""
    end = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        run = r.json()
        if run["status"] in ("done", "failed", "cancelled"):
            return run
        assert time.monotonic() < end, f"run {run_id} still {run['status']}: {run}"
        time.sleep(0.05)


def trial_spec(n_per_arm: int = 8, chunk_size: int = 4) -> dict[str, Any]:
    """The roller-vs-pen example trial with both arms inline (the server reads no files)."""
    spec = example("trials/acne-roller-vs-pen.toml")
    roller = {k: v for k, v in example("acne-scars-rolling-cheek.toml").items() if k != "patient"}
    spec["arms"][0] = {"name": spec["arms"][0]["name"], "protocol": roller}
    spec["trial"]["n_per_arm"] = n_per_arm
    spec["trial"]["chunk_size"] = chunk_size
    return spec


def count_inline_simulations(monkeypatch: MonkeyPatch, hold_s: float = 0.3) -> Callable[[], int]:
    """Make every inline simulation of this process last ``hold_s`` longer (long enough for
    concurrent requests to arrive meanwhile) and count how many run at once; returns a function
    giving the highest count seen."""
    active, peak = 0, 0
    lock = threading.Lock()
    real = api.simulate_inline

    def counted(request: Any) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(hold_s)
            return real(request)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(api, "simulate_inline", counted)
    return lambda: peak
