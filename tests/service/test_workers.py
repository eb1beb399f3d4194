"""``microneedling serve --workers 2``: both worker processes answer requests, each background run
is executed by exactly one of them, on SQLite and PostgreSQL; the rate limit holds for the server
whichever process answers; and the workers end when the supervisor process that started them is
killed (they would otherwise keep the port and the jobs)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from microneedling.client import Client
from microneedling.errors import InputError
from microneedling.service import server
from microneedling.service.config import Settings
from microneedling.service.db import Run, make_engine
from tests.service.conftest import database_url
from tests.service.helpers import PASSWORD, example
from tests.service.live import create_admin, serve, stop

ENV = {"MICRONEEDLING_RATE_PER_SECOND": "0", "MICRONEEDLING_LOGIN_PER_MINUTE": "1000"}


def _workers(pid: int) -> set[int]:
    """The uvicorn worker processes of the server ``pid`` (its children started by
    multiprocessing's spawn; not its resource tracker)."""
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmd:
            out.add(int(d.name))
    return out


def _started_workers(pid: int, n: int = 2, timeout: float = 60.0) -> set[int]:
    """The ``n`` worker processes of server ``pid``, once they exist (at most ``timeout`` s)."""
    end = time.monotonic() + timeout
    while len(workers := _workers(pid)) < n:
        assert time.monotonic() < end, workers
        time.sleep(0.1)
    return workers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_workers_both_serve_and_each_job_runs_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = database_url(kind, request, tmp_path)
    if url:  # the server and create_admin's subprocess read it from the environment
        monkeypatch.setenv("MICRONEEDLING_DATABASE_URL", url)
    create_admin(tmp_path, "admin@workers.example", PASSWORD, "Workers clinic")
    proc, base = serve(tmp_path, ENV, None, "--workers", "2")
    try:
        workers = _started_workers(proc.pid)
        client = Client.login(base, "admin@workers.example", PASSWORD)
        course = example("acne-scars-rolling-cheek.toml")
        headers = {"Authorization": f"Bearer {client.token}"}

        def inline(_: int) -> int:
            # a new connection each time: the kernel hands it to either worker
            r = httpx.post(
                f"{base}/api/v1/runs/simulate",
                json={"course": course, "draws": 0},
                headers=headers,
                timeout=120,
            )
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

        engine = make_engine(Settings(data_dir=tmp_path, database_url=url).url)

        def worker_pids() -> dict[int, int]:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(Run.id, Run.worker)).all()
            return {r.id: int(str(r.worker).split(":")[1]) for r in rows}

        try:
            # batches of 8 concurrent requests until both processes have answered: a worker that is
            # still importing when the first batch arrives leaves every connection to the other one
            # (seen on a loaded machine), so a fixed 32 requests did not always reach both
            inline_ids: list[int] = []
            end = time.monotonic() + 180
            with ThreadPoolExecutor(8) as pool:
                while True:
                    inline_ids += pool.map(inline, range(8))
                    answered = {worker_pids()[i] for i in inline_ids}
                    if answered == workers or time.monotonic() > end:
                        break
            assert answered == workers, (answered, workers, len(inline_ids))  # both answered
            queued = [
                client.submit("simulate", course=course, draws=0, background=True) for _ in range(6)
            ]
            done = [client.wait(q["id"], timeout=300) for q in queued]
            assert [d["status"] for d in done] == ["done"] * 6
            assert [d["attempts"] for d in done] == [1] * 6  # claimed once: never run twice
            pid = worker_pids()
            assert {pid[d["id"]] for d in done} <= workers
            assert len(pid) == len(inline_ids) + 6
        finally:
            engine.dispose()
    finally:
        stop(proc)
    assert not any(_alive(w) for w in workers)  # a clean stop ends the workers


def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    proc, base = serve(tmp_path, ENV, None, "--workers", "2")
    try:
        workers = _started_workers(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up: as the OOM killer would
        proc.wait()
        end = time.monotonic() + 30
        while any(_alive(w) for w in workers):
            assert time.monotonic() < end, (
                f"workers {workers} outlived their supervisor: "
                + (tmp_path / f"server-{base.rsplit(':', 1)[1]}.log").read_text()[-2000:]
            )
            time.sleep(0.1)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/api/v1/health", timeout=2)
    finally:
        stop(proc)
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


@pytest.mark.skipif(not server.REUSE_PORT, reason="SO_REUSEPORT balancing is Linux's")
def test_reuseport_sockets_share_connections_and_a_taken_port_is_refused() -> None:
    """Each worker's socket listens on the same port and the kernel spreads new connections over
    them (on one shared socket, the process that woke first took 957 of 981 requests from 32
    clients); a port with a listener, even one bound with SO_REUSEPORT, is refused up front."""
    port = server._free_port("127.0.0.1", 0)
    a = server._reuseport_socket("127.0.0.1", port)
    b = server._reuseport_socket("127.0.0.1", port)
    a.listen(128)
    b.listen(128)
    clients = []
    try:
        for _ in range(64):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(c)
        counts = []
        time.sleep(0.2)  # every handshake queued
        for sock in (a, b):
            sock.setblocking(False)
            n = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            counts.append(n)
        assert sum(counts) == 64, counts
        assert min(counts) >= 16, counts  # hash of 64 client ports: P(< 16 on one) ~ 1e-5
        with pytest.raises(InputError, match="--port"):
            server._free_port("127.0.0.1", port)
    finally:
        for c in clients:
            c.close()
        a.close()
        b.close()


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    proc, base = serve(tmp_path, ENV, None, "--workers", "2")
    try:
        workers = _started_workers(proc.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic() + 60
        while True:
            now = _workers(proc.pid)
            if victim not in now and len(now) == 2:
                break
            assert time.monotonic() < end, now
            time.sleep(0.2)
        assert proc.poll() is None
        for _ in range(10):  # new connections reach either process; all are answered
            assert httpx.get(f"{base}/api/v1/health", timeout=30).status_code == 200
    finally:
        stop(proc)


def _serving_process(conn: http.client.HTTPConnection, port: int, workers: set[int]) -> int | None:
    """The worker process holding the server's end of ``conn`` (a loopback connection to ``port``):
    the socket of /proc/net/tcp from ``port`` to the client's port, found among the workers'
    open files."""
    assert conn.sock is not None
    mine = conn.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
        if (local, remote) == (port, mine):
            inode = fields[9]
    for pid in workers:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _connection_to_each(port: int, workers: set[int]) -> dict[int, http.client.HTTPConnection]:
    """A kept-alive connection to each worker (new connections until both hold one; the kernel
    picks the worker of each). Connections older than 2 s are replaced, as uvicorn closes idle
    ones after 5 s."""
    found: dict[int, tuple[http.client.HTTPConnection, float]] = {}
    end = time.monotonic() + 120
    while set(found) != workers:
        assert time.monotonic() < end, f"connections reached only {set(found)} of {workers}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/v1/health")
        assert conn.getresponse().read() and conn.sock is not None
        pid = _serving_process(conn, port, workers)
        now = time.monotonic()
        for old, (c, since) in list(found.items()):
            if now - since > 2.0:
                c.close()
                del found[old]
        if pid is None or pid in found:
            conn.close()
        else:
            found[pid] = (conn, now)
    return {pid: c for pid, (c, _) in found.items()}


def test_the_rate_limit_holds_whichever_worker_answers(tmp_path: Path) -> None:
    """Requests of one token alternating between the two processes (a kept-alive connection to
    each) get the server's burst of 5 in all, then 429 from both: the processes share their
    buckets (each allowed its own 5 before)."""
    create_admin(tmp_path, "admin@limits.example", PASSWORD, "Limits clinic")
    env = {"MICRONEEDLING_RATE_PER_SECOND": "0.001", "MICRONEEDLING_RATE_BURST": "5",
           "MICRONEEDLING_LOGIN_PER_MINUTE": "1000"}  # fmt: skip
    proc, base = serve(tmp_path, env, None, "--workers", "2")
    conns: dict[int, http.client.HTTPConnection] = {}
    try:
        workers = _started_workers(proc.pid)
        sign_in = {"email": "admin@limits.example", "password": PASSWORD, "name": "t"}
        r = httpx.post(f"{base}/api/v1/auth/token", json=sign_in, timeout=30)
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        conns = _connection_to_each(int(base.rsplit(":", 1)[1]), workers)
        order = [conns[pid] for pid in sorted(conns)] * 6
        answers = []
        for conn in order:
            conn.request("GET", "/api/v1/me", headers=headers)
            resp = conn.getresponse()
            resp.read()
            answers.append((resp.status, resp.getheader("retry-after")))
        codes = [status for status, _ in answers]
        assert codes == [200] * 5 + [429] * 7, codes
        assert all(int(after or 0) >= 1 for status, after in answers if status == 429)
    finally:
        for conn in conns.values():
            conn.close()
        stop(proc)
