"""Limits and secrets: rate limits per token and per sign-in, request size, cookie flags, argon2
hashes, settings from the environment and the secret key."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from microneedling.errors import InputError
from microneedling.service.config import Settings
from microneedling.service.db import User
from microneedling.service.security import RateLimiter, hash_password, verify_password
from tests.service.helpers import PASSWORD, Service, build_service, settings_for

API = "/api/v1"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = settings_for(
        tmp_path_factory.mktemp("strict"),
        None,
        rate_per_second=0.5,
        rate_burst=3,
        login_per_minute=2,
        max_body_bytes=4096,
        secure_cookies=True,
    )
    with build_service(settings, "sqlite") as svc:
        yield svc


def test_rate_limit_per_token(strict: Service) -> None:
    c = strict.client
    codes = [c.get(f"{API}/me", headers=strict.a.h).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.get(f"{API}/me", headers=strict.a.h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "too many requests" in r.json()["error"]
    assert c.get(f"{API}/me", headers=strict.b.h).status_code == 200  # another token: its own


def test_sign_in_attempts_are_limited_and_cookies_secure(strict: Service) -> None:
    c = strict.client
    body = {"email": strict.b.email, "password": PASSWORD}
    r = c.post(f"{API}/auth/login", json=body)
    assert r.status_code == 200 and "Secure" in r.headers["set-cookie"]
    c.cookies.clear()
    assert c.post(f"{API}/auth/login", json={**body, "password": "x" * 12}).status_code == 401
    r = c.post(f"{API}/auth/login", json=body)
    assert r.status_code == 429  # the third attempt within a minute, even with the password


def test_sign_in_limit_is_shared_out_among_server_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``serve --workers 2`` each process allows half of ``login_per_minute`` (10 -> 5 per
    process), so attempts spread over both never exceed 10 a minute; one process alone allows 10."""
    from microneedling.service.app import login_limiter

    for processes, allowed in ((1, 10), (2, 5), (3, 3), (20, 1)):
        lim = login_limiter(settings_for(tmp_path, None, login_per_minute=10,
                                         server_processes=processes))  # fmt: skip
        waits = [lim.hit("ip:127.0.0.1") for _ in range(allowed + 1)]
        assert waits[:allowed] == [0.0] * allowed and waits[allowed] > 0, processes
        assert waits[allowed] == pytest.approx(60.0 * processes / 10.0, rel=0.05)
    # serve() exports the process count to its workers, which read it from the environment
    monkeypatch.setenv("MICRONEEDLING_SERVER_PROCESSES", "2")
    monkeypatch.setenv("MICRONEEDLING_DATA_DIR", str(tmp_path))
    assert Settings.from_env().server_processes == 2


def test_serve_exports_the_number_of_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from microneedling.service import server

    seen: dict[str, str | None] = {}

    def started(*a: object, **k: object) -> None:
        seen.update(n=os.environ.get("MICRONEEDLING_SERVER_PROCESSES"))

    # one process runs uvicorn; several run under uvicorn's supervisor or, on Linux, ours
    monkeypatch.setattr(server.uvicorn, "run", started)
    monkeypatch.setattr(server, "_supervise", started)
    # serve() sets these in its own environment: setenv first, so that the test's end restores them
    for key in ("SERVER_PROCESSES", "SUPERVISOR_PID", "DATA_DIR", "SECRET_KEY", "JOB_THREADS",
                "DASK_WORKERS", "MIGRATED"):  # fmt: skip
        monkeypatch.setenv("MICRONEEDLING_" + key, "")
    server.serve(settings_for(tmp_path, None), workers=3)
    assert seen["n"] == "3"
    server.serve(settings_for(tmp_path, None), workers=1)
    assert seen["n"] == "1"


def test_request_size_limit(strict: Service) -> None:
    r = strict.client.post(
        f"{API}/patients",
        content=b"{" + b" " * 5000 + b"}",
        headers={**strict.b.h, "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["status"] == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b" " * 1000

    r = strict.client.post(
        f"{API}/patients",
        content=chunks(),
        headers={**strict.b.h, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "4096 bytes" in r.json()["error"]


def test_passwords_are_argon2_hashes(strict: Service) -> None:
    with strict.ctx.sessions() as db:
        hashes = db.scalars(sa.select(User.password_hash)).all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    h = hash_password(PASSWORD)
    assert h != hash_password(PASSWORD)  # salted
    assert verify_password(h, PASSWORD) and not verify_password(h, PASSWORD + "x")
    assert not verify_password(None, PASSWORD)


def test_rate_limiter_refills_at_its_rate() -> None:
    lim = RateLimiter(rate=1000.0, burst=2)
    assert lim.hit("k") == 0.0 and lim.hit("k") == 0.0
    wait = lim.hit("k")
    assert 0.0 < wait <= 1e-3 + 1e-9
    assert RateLimiter(rate=0.0, burst=1).hit("k") == 0.0  # 0 disables


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MICRONEEDLING_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MICRONEEDLING_RATE_PER_SECOND", "5")
    s = Settings.from_env()
    assert s.data_dir == (tmp_path / "d").resolve() and s.rate_per_second == 5.0
    assert s.url.startswith("sqlite") and s.store_dir.parent == s.data_dir
    assert Settings.from_env(data_dir=tmp_path / "e").data_dir == (tmp_path / "e").resolve()
    monkeypatch.setenv("MICRONEEDLING_JOB_THREADS", "two")
    with pytest.raises(InputError) as info:
        Settings.from_env()
    assert info.value.field == "MICRONEEDLING_JOB_THREADS" and info.value.value == "two"
    monkeypatch.delenv("MICRONEEDLING_JOB_THREADS")
    with pytest.raises(InputError) as info:
        Settings.from_env(database_url="mysql://x")
    assert info.value.field == "--database"


def test_secret_key_from_the_environment_or_a_private_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MICRONEEDLING_SECRET_KEY", raising=False)
    s = Settings.from_env(data_dir=tmp_path).with_secret()
    key = tmp_path / "secret_key"
    assert len(s.secret_key) >= 40 and key.read_text() == s.secret_key
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert Settings.from_env(data_dir=tmp_path).with_secret().secret_key == s.secret_key
    monkeypatch.setenv("MICRONEEDLING_SECRET_KEY", "from-the-environment")
    assert Settings.from_env(data_dir=tmp_path).with_secret().secret_key == "from-the-environment"


def test_serve_refuses_an_unknown_log_level_before_starting(tmp_path: Path) -> None:
    """A bad ``--log-level`` is an input error naming the option and the allowed values (it was
    a KeyError inside uvicorn, reported as an internal error)."""
    from typer.testing import CliRunner

    from microneedling.cli.app import app

    out = CliRunner().invoke(
        app, ["serve", "--data-dir", str(tmp_path), "--log-level", "verbose", "--port", "1"]
    )
    assert out.exit_code == 2, out.output
    assert "--log-level" in out.output and "'verbose'" in out.output and "debug" in out.output
