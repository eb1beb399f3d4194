"""Limits and secrets: rate limits per token and per sign-in (shared by the processes of a server),
request size, cookie flags, argon2 hashes, settings from the environment and the secret key."""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from microneedling.errors import InputError
from microneedling.service.config import Settings
from microneedling.service.db import User
from microneedling.service.security import (
    Limiter,
    RateLimiter,
    SharedRateLimiter,
    hash_password,
    rate_limiter,
    verify_password,
)
from tests.service.helpers import PASSWORD, Service, add_org, build_service, settings_for

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


def test_a_password_change_counts_as_a_sign_in_attempt(strict: Service) -> None:
    """POST /me/password checks the current password: wrong guesses run into the sign-in limit
    (2 a minute here, per address and per account), whatever the token's own rate."""
    c = strict.client
    h = add_org(strict.ctx, "Clinic C", "admin@c.example").h  # a token with a full bucket
    body = {"current_password": "a wrong guess of it", "new_password": "a new long pass phrase"}
    answers = [c.post(f"{API}/me/password", json=body, headers=h) for _ in range(3)]
    codes = [r.status_code for r in answers]
    assert 429 in codes and set(codes) <= {422, 429}, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert "too many sign-in attempts" in refused.json()["error"]  # not the token's own rate


def test_the_processes_of_one_server_share_their_limits(tmp_path: Path) -> None:
    """Two contexts on one data directory (what the processes of ``serve --workers 2`` build)
    share their buckets: together they allow one ``rate_burst`` per token and one
    ``login_per_minute`` per address (the whole limit, no longer divided among the processes)."""
    from microneedling.service.app import make_context

    settings = settings_for(tmp_path, None, rate_burst=4, rate_per_second=1e-6,
                            login_per_minute=10)  # fmt: skip
    one, two = make_context(settings), make_context(settings)
    try:
        requests = [ctx.limiter.hit("token:1") for ctx in (one, two, one, two, one, two)]
        assert [w == 0 for w in requests] == [True] * 4 + [False] * 2
        sign_ins = [ctx.login_limiter.hit("ip:10.0.0.1") for ctx in (one, two) * 6]
        assert [w == 0 for w in sign_ins] == [True] * 10 + [False] * 2
        assert 0 < sign_ins[-1] <= 6.0  # an attempt back every 60/10 s
        assert two.limiter.hit("token:2") == 0.0  # another token: its own bucket
        assert {p.name for p in settings.limits_dir.iterdir()} == {"requests.bin", "sign-in.bin"}
    finally:
        one.engine.dispose()
        two.engine.dispose()


def _flood(limiter: Limiter, keys: int) -> None:
    for i in range(keys):
        limiter.hit(f"email:flood-{i}@attacker.example")


@pytest.mark.parametrize("kind", ["memory", "shared"])
def test_a_flood_of_new_keys_does_not_reset_a_depleted_bucket(kind: str, tmp_path: Path) -> None:
    """An attacker who sends many distinct keys (e-mail addresses) fills the table; the depleted
    bucket of the account under attack is the last to go (the whole table was cleared before)."""
    lim: RateLimiter | SharedRateLimiter
    if kind == "memory":
        lim = RateLimiter(rate=1e-6, burst=3, max_keys=64)
    else:
        lim = SharedRateLimiter(tmp_path / "t.bin", rate=1e-6, burst=3, slots=64, window=8)
    assert [lim.hit("email:victim@clinic.example") == 0 for _ in range(4)] == [True] * 3 + [False]
    _flood(lim, 5000)
    assert lim.hit("email:victim@clinic.example") > 0  # still depleted
    if isinstance(lim, RateLimiter):
        assert len(lim._buckets) <= 64  # bounded
    else:
        assert (tmp_path / "t.bin").stat().st_size == 32 + 64 * 24
        lim.close()


def test_a_full_table_drops_refilled_and_fullest_buckets_first() -> None:
    """Refilled buckets are the same as none; then the fullest go, a depleted one last."""
    lim = RateLimiter(rate=1e-6, burst=3, max_keys=3)
    for key, hits in (("drained", 3), ("half", 1), ("used", 2)):
        for _ in range(hits):
            assert lim.hit(key) == 0
    lim.hit("new")  # the table is full: "half" (2 tokens) goes
    assert set(lim._buckets) == {"drained", "used", "new"}
    assert lim.hit("drained") > 0
    lim._buckets["used"].tokens = 3.0  # as if refilled
    lim.hit("newer")
    assert set(lim._buckets) == {"drained", "new", "newer"} and lim.hit("drained") > 0


def test_two_limiters_on_one_file_share_a_bucket(tmp_path: Path) -> None:
    path = tmp_path / "limits" / "t.bin"
    a = SharedRateLimiter(path, rate=1e-6, burst=4)
    b = SharedRateLimiter(path, rate=1e-6, burst=4)
    try:
        waits = [lim.hit("token:7") for lim in (a, b, a, b, a, b)]
        assert [w == 0 for w in waits] == [True] * 4 + [False] * 2
        assert b.hit("token:8") == 0.0 and a.hit("token:8") == 0.0  # another key: its own
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        a.close()
        b.close()


def test_a_table_of_the_wrong_size_or_version_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.write_bytes(b"not a table")
    lim = SharedRateLimiter(path, rate=1e-6, burst=1, slots=16)
    assert path.stat().st_size == 32 + 16 * 24
    assert lim.hit("k") == 0 and lim.hit("k") > 0
    data = bytearray(path.read_bytes())
    data[8:12] = (99).to_bytes(4, "little")  # another version of the table
    path.write_bytes(bytes(data))
    fresh = SharedRateLimiter(path, rate=1e-6, burst=1, slots=16)
    assert fresh.hit("k") == 0  # a new table: "k" is new there
    assert path.read_bytes()[8:12] == (1).to_bytes(4, "little")
    bigger = SharedRateLimiter(path, rate=1e-6, burst=1, slots=32)  # another size: replaced too
    assert path.stat().st_size == 32 + 32 * 24 and bigger.hit("k") == 0
    assert lim.hit("other") == 0  # a limiter on a replaced file keeps working (on its own copy)
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]  # no temporary file left
    for each in (lim, fresh, bigger):
        each.close()


def _hit_many(path: str, start: Any, n: int, allowed: Any) -> None:
    """One process of the test below: ``n`` hits on one key once both processes are ready."""
    lim = SharedRateLimiter(path, rate=1e-6, burst=20_000)
    start.wait(60)
    allowed.put(sum(lim.hit("token:1") == 0 for _ in range(n)))


def test_two_processes_hitting_one_key_allow_exactly_burst(tmp_path: Path) -> None:
    """No update is lost between processes: 2 x 15,000 concurrent hits on a bucket of 20,000 allow
    20,000 in total (without the file lock, both processes overwrite each other's count: about
    2 x 15,000 allowed if they run side by side all along)."""
    ctx = multiprocessing.get_context("spawn")
    start, allowed = ctx.Barrier(2), ctx.Queue()
    path = str(tmp_path / "t.bin")
    procs = [ctx.Process(target=_hit_many, args=(path, start, 15_000, allowed)) for _ in range(2)]
    for proc in procs:
        proc.start()
    try:
        counts = [allowed.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert sum(counts) == 20_000, counts
    assert [proc.exitcode for proc in procs] == [0, 0]


def test_the_in_memory_limiter_where_files_cannot_be_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from microneedling.service import security

    assert isinstance(rate_limiter(tmp_path / "a.bin", 1.0, 2), SharedRateLimiter)
    assert isinstance(rate_limiter(tmp_path / "b.bin", 0.0, 2), RateLimiter)  # no limit, no file
    monkeypatch.setattr(security, "SHARED_LIMITS", False)  # Windows: no fcntl
    assert isinstance(rate_limiter(tmp_path / "c.bin", 1.0, 2), RateLimiter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


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
