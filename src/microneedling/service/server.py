"""Starting the service: migrations once, the first administrator, then uvicorn.

``microneedling serve`` calls :func:`serve`. Worker processes (``--workers N``) build their app with
:func:`app_from_env` from the ``MICRONEEDLING_*`` variables :func:`serve` sets, so every process of
one server shares the same database, data directory and secret key.

On Linux the worker processes each listen on a socket of their own bound with ``SO_REUSEPORT``
(:func:`_supervise`), so the kernel spreads new connections evenly over them by a hash of each
connection's addresses. On one shared socket (uvicorn's own ``workers``), the process that wakes
first accepts every connection queued at that moment (asyncio accepts up to the backlog in one
go): 32 clients connecting together were measured to land 957 : 24 requests on two processes,
i.e. on one core (``benchmarks/bench_service.py``, 2026-12-06). Elsewhere uvicorn's supervisor is used.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker
from uvicorn.config import LOG_LEVELS, STARTUP_FAILURE

from microneedling.errors import InputError
from microneedling.service.accounts import create_admin, normalise_email
from microneedling.service.app import create_app
from microneedling.service.config import ENV_PREFIX, Settings
from microneedling.service.db import User, make_engine, migrate, session_scope

__all__ = ["LOG_LEVELS", "admin_from_env", "app_from_env", "ensure_admin", "prepare", "serve"]

log = logging.getLogger("microneedling.service")


def prepare(settings: Settings) -> Settings:
    """Settings with their secret key, the data directory created and the schema migrated."""
    settings = settings.with_secret()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return settings


def ensure_admin(settings: Settings, email: str, password: str, organisation: str) -> bool:
    """Create the administrator ``email`` of ``organisation`` unless that user exists; returns
    whether it was created."""
    engine = make_engine(settings.url)
    try:
        with session_scope(sessionmaker(engine)) as db:
            address = normalise_email(email, "admin e-mail")
            if db.scalar(sa.select(User.id).where(User.email == address)) is not None:
                return False
            create_admin(db, address, password, organisation)
            return True
    finally:
        engine.dispose()


def admin_from_env(settings: Settings) -> bool:
    """The first administrator from ``MICRONEEDLING_ADMIN_EMAIL`` and
    ``MICRONEEDLING_ADMIN_PASSWORD`` (``MICRONEEDLING_ADMIN_ORGANISATION``, default ``default``),
    created when both are set and the user does not exist yet."""
    email = os.environ.get(ENV_PREFIX + "ADMIN_EMAIL")
    password = os.environ.get(ENV_PREFIX + "ADMIN_PASSWORD")
    if not email and not password:
        return False
    if not email or not password:
        missing = "ADMIN_PASSWORD" if email else "ADMIN_EMAIL"
        raise InputError(ENV_PREFIX + missing, None, "set together with the other admin variable")
    org = os.environ.get(ENV_PREFIX + "ADMIN_ORGANISATION") or "default"
    return ensure_admin(settings, email, password, org)


def _export(settings: Settings) -> None:
    """Put the settings where worker processes read them (their own environment)."""
    env = {
        "DATA_DIR": str(settings.data_dir),
        "SECRET_KEY": settings.secret_key,
        "JOB_THREADS": str(settings.job_threads),
        "DASK_WORKERS": str(settings.dask_workers),
        "MIGRATED": "1",
    }
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    if settings.scheduler:
        env["SCHEDULER"] = settings.scheduler
    for k, v in env.items():
        os.environ[ENV_PREFIX + k] = v


def _exit_with_supervisor(supervisor: int, every: float = 0.5, grace: float = 10.0) -> None:
    """End this worker process once the uvicorn supervisor that started it is gone (killed with
    SIGKILL, it cannot stop its workers: they would keep serving the socket and running jobs, and
    a server started again would not get the port). SIGTERM first (uvicorn's graceful shutdown: the
    job threads stop taking runs; a run in progress stops beating and is resumed by the next
    server), a second one after ``grace`` seconds (uvicorn stops at once), then exit."""
    while os.getppid() == supervisor:
        time.sleep(every)
    log.warning("the server's supervisor process %d is gone: stopping this worker", supervisor)
    for _ in range(2):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
    os._exit(1)


def app_from_env() -> FastAPI:
    """The app of one worker process (uvicorn's factory), from the environment."""
    migrated = os.environ.get(ENV_PREFIX + "MIGRATED") == "1"
    app = create_app(Settings.from_env(), run_migrations=not migrated)
    supervisor = os.environ.get(ENV_PREFIX + "SUPERVISOR_PID")
    if supervisor:  # a worker of ``serve --workers N`` (its supervisor may be gone already)
        threading.Thread(
            target=_exit_with_supervisor,
            args=(int(supervisor),),
            name="microneedling-supervisor-watch",
            daemon=True,
        ).start()
    return app


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    access_log: bool = True,
    log_level: str = "info",
    factory: str = "microneedling.service.server:app_from_env",
    **uvicorn_options: Any,
) -> None:
    """Migrate, then run the app on uvicorn until stopped (Ctrl-C, SIGTERM). ``factory``: the
    app factory of each worker (``microneedling.web.app:app_from_env`` adds the web pages)."""
    settings = prepare(settings)
    admin_from_env(settings)
    _export(settings)
    if workers > 1:  # the worker processes watch this one (see _exit_with_supervisor)
        os.environ[ENV_PREFIX + "SUPERVISOR_PID"] = str(os.getpid())
    else:
        os.environ.pop(ENV_PREFIX + "SUPERVISOR_PID", None)
    if workers > 1 and REUSE_PORT:
        _supervise(
            factory,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            log_level=log_level,
            **uvicorn_options,
        )
        return
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        access_log=access_log,
        log_level=log_level,
        **uvicorn_options,
    )


# ------------------------------------------------------------- worker processes on SO_REUSEPORT
#: Whether worker processes get a socket each (Linux balances SO_REUSEPORT listeners by a hash of
#: the connection; other systems either lack it or give every connection to one socket).
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
#: A worker that ends within this many seconds of its start, this many times in a row, stops the
#: server instead of being started again (a crash loop).
FAST_EXIT_S, FAST_EXITS = 10.0, 3

_ulog = logging.getLogger("uvicorn.error")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reuseport_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` beside its siblings (``SO_REUSEPORT``), not yet listening:
    asyncio listens on it once the worker's app has started (``loop.create_server(sock=...)``), so
    the kernel hands no connection to a worker that cannot answer yet."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _free_port(host: str, port: int) -> int:
    """``port`` (a free one if 0) after checking that nothing listens there: a listener bound
    with ``SO_REUSEPORT`` by this user (an earlier server still running, say) would otherwise
    silently share the port with the new workers. Raises :class:`InputError` if it is taken.
    Sockets bound and not yet listening pass (as for uvicorn, whose sockets reuse the address):
    two servers of one user started on one port within the second their workers take to listen
    could share it."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is fine
        probe.bind((host, port))
        return int(probe.getsockname()[1])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(
                "--port", port, f"a port on {host} that no other program listens on"
            ) from exc
        if exc.errno == errno.EACCES:
            raise InputError("--port", port, f"a port this user may listen on ({exc})") from exc
        raise InputError(
            "--host", host, f"an address of this machine to listen on ({exc})"
        ) from exc
    finally:
        probe.close()


def _worker(factory: str, sock: socket.socket, options: dict[str, Any]) -> None:
    """One server process: uvicorn on the socket the supervisor bound for it, until SIGTERM."""
    try:
        config = uvicorn.Config(factory, factory=True, **options)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: uvicorn has stopped
        pass


def _supervise(
    factory: str,
    *,
    host: str,
    port: int,
    workers: int,
    stop_after: float = 15.0,
    **options: Any,
) -> None:
    """Run ``workers`` server processes until SIGINT or SIGTERM, each on a socket of its own bound
    to ``host:port`` with ``SO_REUSEPORT`` (bound here, together, right after checking the port is
    free; kept here, so that connections waiting on a worker that died are answered by the one
    started in its place). A worker that dies is started again (as uvicorn's supervisor does),
    unless the app failed to start or it keeps dying within seconds. On stop the workers get
    SIGTERM (uvicorn's graceful shutdown) and, after ``stop_after`` seconds, SIGKILL."""
    options = {"host": host, "port": port, **options}
    uvicorn.Config(factory, factory=True, **options)  # checks the options, sets up logging here
    port = _free_port(host, port)
    options["port"] = port
    socks = []
    try:
        for _ in range(workers):
            socks.append(_reuseport_socket(host, port))
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise InputError(
            "--port", port, f"a port on {host} the server can listen on ({exc})"
        ) from exc
    ctx = multiprocessing.get_context("spawn")
    signals: list[int] = []  # the handler only appends: no lock is taken inside a signal handler
    previous = {
        sig: signal.signal(sig, lambda sig, _frame: signals.append(sig))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    running: list[tuple[multiprocessing.process.BaseProcess, float]] = []  # (worker, its start)
    fast = 0

    def start(i: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        proc = ctx.Process(
            target=_worker, args=(factory, socks[i], options), name=f"microneedling-server-{i}"
        )
        proc.start()
        return proc, time.monotonic()

    try:
        for i in range(workers):
            running.append(start(i))
        _ulog.info("supervisor [%d]: %d worker processes on http://%s:%d, a socket each "
                   "(SO_REUSEPORT)", os.getpid(), workers, host, port)  # fmt: skip
        while not signals:
            time.sleep(0.25)
            for i, (proc, since) in enumerate(running):
                if proc.is_alive() or signals:
                    continue
                if proc.exitcode == STARTUP_FAILURE:  # uvicorn's: import, factory or lifespan
                    _ulog.error("worker [%s]: the application failed to start", proc.pid)
                    raise SystemExit(STARTUP_FAILURE)
                fast = fast + 1 if time.monotonic() - since < FAST_EXIT_S else 0
                if fast >= FAST_EXITS:
                    _ulog.error("workers keep ending within %.0f s of their start (the last "
                                "with %s): stopping", FAST_EXIT_S, proc.exitcode)  # fmt: skip
                    raise SystemExit(1)
                _ulog.warning("worker [%s] ended with %s: starting another", proc.pid,
                              proc.exitcode)  # fmt: skip
                running[i] = start(i)
    finally:
        procs = [proc for proc, _ in running]
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        end = time.monotonic() + stop_after
        for proc in procs:
            proc.join(max(0.0, end - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sock in socks:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
