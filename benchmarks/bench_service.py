"""Service load test (run on its own: ``python benchmarks/bench_service.py``; not part of the tests).

A bounded load on loopback: ``microneedling serve`` in a subprocess (``--workers 2`` by default, the
machine's two cores), then 1, 8 and 32 concurrent clients (asyncio, one keep-alive connection
each), each with its own API token, posting the same course to ``POST /api/v1/runs/simulate`` (``draws = 0``: answered inline,
the result stored in the file store and the database) for a fixed duration or a fixed count of
requests, whichever comes first. Reported per database (SQLite, PostgreSQL) and level: requests per
second, p50 and p99 latency, errors, the CPU time of the server and of the load generator per
request, how many runs each server process stored (``runs.worker``) and the load average. In the
same run, ``simulate`` of the same course is timed in process (median), and the HTTP overhead is p50
at 1 client minus that time, as a fraction of it.

The load generator shares the two cores with the server (and the database), so every millisecond of
its CPU per request is taken from the server. By default each client is a minimal HTTP/1.1 client
on an asyncio stream (:class:`RawClient`: the request's bytes made once, the status line and
``Content-Length`` read, the JSON answer parsed and checked for a finished run): ~0.2 ms of CPU per
request where httpx's ``AsyncClient`` costs ~1.3 ms (``--client httpx`` measures with it; either is
reported as "load generator" CPU per request).

Goals (issue 13): at 32 clients >= 150 simulate requests/s on 2 cores, p99 < 300 ms, zero errors,
HTTP overhead < 30% of the in-process time.

    python benchmarks/bench_service.py [--seconds 10] [--max-requests 3000] [--workers 2]
        [--levels 1,8,32] [--databases sqlite,postgresql] [--database-url URL]
        [--client raw|httpx]

PostgreSQL: a throwaway cluster is started (as the tests do) unless ``--database-url`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import tomllib
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "acne-scars-rolling-cheek.toml"
PASSWORD = "benchmark password 1234"


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system, s) of a process and all its descendants, those that have ended
    included once reaped (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(fields[1])
        # its own CPU and that of its children it has reaped (a PostgreSQL backend that ends
        # within the window is counted in the postmaster's), so each process is counted once
        cpu[int(d.name)] = sum(int(f) for f in fields[11:15]) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += [c for c, pp in parent.items() if pp == p]
    return total


def in_process_ms(repeat: int = 50) -> tuple[float, float]:
    """``simulate(course, draws=0)`` in this process after a warm-up: median wall time and mean CPU
    time per call (ms). CPU time is what a busy machine distorts least."""
    from microneedling.course.model import Course
    from microneedling.engine.simulate import simulate

    course = Course.from_toml(EXAMPLE)
    simulate(course, draws=0)
    times = []
    cpu0 = time.process_time()
    for _ in range(repeat):
        t0 = time.perf_counter()
        simulate(course, draws=0)
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / repeat
    return statistics.median(times) * 1e3, cpu * 1e3


class RawClient:
    """One keep-alive HTTP/1.1 connection that posts the same JSON body again and again: the
    request's bytes are made once; an answer is read by its status line and ``Content-Length``
    (uvicorn answers a JSON body so) and its body parsed as JSON. Only what the benchmark needs:
    no redirects, no TLS; an answer without ``Content-Length`` counts as an error."""

    def __init__(self, url: str, token: str, path: str, body: dict[str, Any]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        data = json.dumps(body).encode()
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> tuple[int, Any]:
        """Send the request; the answer's status and parsed JSON body."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            await self.aclose()
            raise ConnectionError(f"HTTP {status} without Content-Length")
        return status, json.loads(await self.reader.readexactly(length))

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxClient:
    """:class:`RawClient`'s interface on httpx's ``AsyncClient`` (``--client httpx``)."""

    def __init__(self, url: str, token: str, path: str, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=60)
        self.path, self.body = path, body

    async def post(self) -> tuple[int, Any]:
        r = await self.http.post(self.path, json=self.body)
        return r.status_code, r.json()

    async def aclose(self) -> None:
        await self.http.aclose()


CLIENTS: dict[str, type[RawClient] | type[HttpxClient]] = {"raw": RawClient, "httpx": HttpxClient}


async def _client(
    http: RawClient | HttpxClient,
    stop_at: float,
    budget: list[int],
    lat: list[float],
    errors: list[str],
) -> None:
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        t0 = time.perf_counter()
        try:
            status, answer = await http.post()
            ok = status == 201 and isinstance(answer, dict) and answer.get("status") == "done"
            if not ok:
                errors.append(f"{status} {str(answer)[:100]}")
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(type(exc).__name__)
            ok = False
        if ok:
            lat.append(time.perf_counter() - t0)


async def _level(
    url: str,
    tokens: list[str],
    clients: int,
    seconds: float,
    max_requests: int,
    server_pid: int,
    database_pid: int | None = None,
    client: str = "raw",
) -> dict[str, Any]:
    """One level of load; ``database_pid``: the PostgreSQL server's postmaster, whose processes'
    CPU (the database's work per request, on the same cores) is measured too."""
    body = {"course": tomllib.loads(EXAMPLE.read_text()), "draws": 0}
    # every client (one connection each) is made and warmed up (one request: its connection, the
    # server's caches) before the clock starts: made inside the timed loop, creating the other
    # clients (an SSL context each, ~10 ms of this process's CPU) was counted in the latency of the
    # first requests, up to 0.8 s at 32 clients
    if len(tokens) < clients:
        raise ValueError(f"{clients} clients need as many tokens, got {len(tokens)}")
    path = "/api/v1/runs/simulate"
    https = [CLIENTS[client](url, t, path, body) for t in tokens[:clients]]
    try:
        warm: list[float] = []
        await asyncio.gather(*[_client(h, time.perf_counter() + 30, [1], warm, []) for h in https])
        lat: list[float] = []
        errors: list[str] = []
        budget = [max_requests]
        cpu0, own0 = tree_cpu_s(server_pid), time.process_time()
        db0 = tree_cpu_s(database_pid) if database_pid else 0.0
        t0 = time.perf_counter()
        await asyncio.gather(*[_client(h, t0 + seconds, budget, lat, errors) for h in https])
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*[h.aclose() for h in https])
    server_cpu, client_cpu = tree_cpu_s(server_pid) - cpu0, time.process_time() - own0
    db_cpu = tree_cpu_s(database_pid) - db0 if database_pid else 0.0
    n = max(len(lat) + len(errors), 1)
    ms = np.array(lat) * 1e3
    return {
        "clients": clients,
        "requests": len(lat) + len(errors),
        "rps": len(lat) / wall,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "server_cpu_ms": 1e3 * server_cpu / n,
        "client_cpu_ms": 1e3 * client_cpu / n,
        "database_cpu_ms": 1e3 * db_cpu / n,
        "seconds": wall,
    }


def floor(url: str, token: str, server_pid: int, n: int = 400) -> dict[str, float]:
    """Server CPU per request (ms) of requests that do less than a simulate, one client, one after
    another: ``GET /health`` (the HTTP stack alone: uvicorn, the middleware, routing, a JSON
    answer) and ``GET /me`` (plus the API token's lookup and two primary-key reads). They bound
    from below what any authenticated request costs, against the goal's budget for the HTTP
    overhead of a simulate (30% of its in-process time)."""
    out = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        for name, path in (("health", "/api/v1/health"), ("me", "/api/v1/me")):
            for _ in range(50):  # warm
                http.get(path).raise_for_status()
            cpu0 = tree_cpu_s(server_pid)
            for _ in range(n):
                http.get(path)
            out[name] = 1e3 * (tree_cpu_s(server_pid) - cpu0) / n
    return out


def _tokens(url: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        r = httpx.post(
            f"{url}/api/v1/auth/token",
            json={"email": "bench@bench.example", "password": PASSWORD, "name": f"client {i}"},
            timeout=30,
        )
        r.raise_for_status()
        out.append(r.json()["token"])
    return out


def runs_per_process(data: Path, database_url: str | None) -> Counter[str]:
    """How many runs each server process has stored (``runs.worker``: the process's pid)."""
    import sqlalchemy as sa

    from microneedling.service.config import Settings
    from microneedling.service.db import Run, make_engine

    engine = make_engine(Settings(data_dir=data, database_url=database_url).url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(Run.worker, sa.func.count()).group_by(Run.worker)).all()
    finally:
        engine.dispose()
    return Counter({str(w).split(":")[1] if w else "-": int(n) for w, n in rows})


def run_database(
    kind: str, database_url: str | None, args: argparse.Namespace, database_pid: int | None = None
) -> list[dict[str, Any]]:
    from tests.service.live import create_admin, serve, stop

    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="microneedling-bench-") as tmp:
        data = Path(tmp)
        extra = ["--workers", str(args.workers)]
        if database_url:
            extra += ["--database", database_url]
        # the rate limiter stays on, above what one client can send (100/s would refuse some)
        env = {"MICRONEEDLING_LOGIN_PER_MINUTE": "1000", "MICRONEEDLING_RATE_PER_SECOND": "10000"}
        if database_url:
            os.environ["MICRONEEDLING_DATABASE_URL"] = database_url
        create_admin(data, "bench@bench.example", PASSWORD, "Bench")
        proc, url = serve(data, env, None, *extra)
        try:
            tokens = _tokens(url, max(levels))
            fl = floor(url, tokens[0], proc.pid)
            print(
                f"  {kind:10s} floor: server CPU per request GET /health {fl['health']:.2f} ms, "
                f"GET /me {fl['me']:.2f} ms",
                flush=True,
            )
            rows = []
            for n in levels:
                before = runs_per_process(data, database_url)
                row = asyncio.run(
                    _level(
                        url,
                        tokens,
                        n,
                        args.seconds,
                        args.max_requests,
                        proc.pid,
                        database_pid,
                        args.client,
                    )
                )
                split = runs_per_process(data, database_url) - before
                row["database"] = kind
                row["load"] = os.getloadavg()[0]
                row["split"] = "/".join(str(v) for _, v in sorted(split.items()))
                row["floor_health"], row["floor_me"] = fl["health"], fl["me"]
                rows.append(row)
                print(
                    f"  {kind:10s} {n:3d} clients: {row['requests']:5d} requests, "
                    f"{row['rps']:6.1f}/s, p50 {row['p50']:6.1f} ms, p99 {row['p99']:6.1f} ms, "
                    f"server CPU {row['server_cpu_ms']:.1f} ms/request, load generator "
                    f"{row['client_cpu_ms']:.1f} ms/request, database "
                    f"{row['database_cpu_ms']:.1f} ms/request, errors {row['errors']} "
                    f"{row['first_error']}; runs per server process {row['split']}; load "
                    f"average {row['load']:.1f}",
                    flush=True,
                )
            return rows
        finally:
            stop(proc)
            os.environ.pop("MICRONEEDLING_DATABASE_URL", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--database-url", default=None, help="An existing PostgreSQL database.")
    ap.add_argument(
        "--client", choices=sorted(CLIENTS), default="raw", help="The load generator's client."
    )
    args = ap.parse_args()

    print(
        f"load average at the start: {os.getloadavg()[0]:.1f}; load generator: {args.client}",
        flush=True,
    )
    wall0, cpu0 = in_process_ms()
    print(
        f"in-process simulate(draws=0), {EXAMPLE.name}: median {wall0:.2f} ms, "
        f"CPU {cpu0:.2f} ms per call",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    cluster = None
    try:
        for kind in args.databases.split(","):
            url, db_pid = None, None
            if kind == "postgresql":
                url = args.database_url
                if url is None:
                    from tests.service.pg import start_cluster

                    cluster = start_cluster()
                    url = cluster.create_database()
                    # the postmaster: its children are the database's processes
                    db_pid = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
            rows += run_database(kind, url, args, db_pid)
    finally:
        if cluster is not None:
            cluster.stop()
    wall1, cpu1 = in_process_ms()
    wall, cpu = min(wall0, wall1), min(cpu0, cpu1)
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(
        f"in-process simulate: median {wall0:.2f} / {wall1:.2f} ms, CPU {cpu0:.2f} / "
        f"{cpu1:.2f} ms per call (before / after the load)"
    )
    print(
        "| database | clients | requests | requests/s | p50 ms | p99 ms | errors "
        "| server CPU ms/request | database CPU ms/request (throwaway cluster) "
        "| 2 cores / (server + database + load generator CPU) | runs per process (with warm-up) "
        "| load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cap = 2000.0 / (r["server_cpu_ms"] + r["database_cpu_ms"] + r["client_cpu_ms"])
        print(
            f"| {r['database']} | {r['clients']} | {r['requests']} | {r['rps']:.1f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | {r['server_cpu_ms']:.1f} "
            f"| {r['database_cpu_ms']:.1f} | {cap:.0f}/s | {r['split']} | {r['load']:.1f} |"
        )
    for r in rows:
        if r["clients"] == 1:
            print(
                f"HTTP overhead ({r['database']}, 1 client): latency p50 {r['p50']:.1f} ms vs "
                f"in-process {wall:.2f} ms: {100 * (r['p50'] - wall) / wall:.0f}%; server CPU "
                f"{r['server_cpu_ms']:.1f} ms vs in-process CPU {cpu:.2f} ms: "
                f"{100 * (r['server_cpu_ms'] - cpu) / cpu:.0f}% (goal < 30%, "
                f"{0.3 * cpu:.2f} ms); floor: GET /health {r['floor_health']:.2f} ms, "
                f"GET /me {r['floor_me']:.2f} ms of server CPU"
            )
    for r in rows:
        if r["clients"] == 32:
            met = r["rps"] >= 150 and r["p99"] < 300 and r["errors"] == 0
            print(
                f"goal at 32 clients ({r['database']}): >= 150/s, p99 < 300 ms, 0 errors: "
                f"{'met' if met else 'missed'}"
            )


if __name__ == "__main__":
    main()
