"""Starting the service: migrations once, the first administrator, then uvicorn.

``microneedling serve`` calls :func:`serve`. Worker processes (``--workers N``) build their app with
:func:`app_from_env` from the ``MICRONEEDLING_*`` variables :func:`serve` sets, so every process of
one server shares the same database, data directory and secret key.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import sessionmaker

from microneedling.errors import InputError
from microneedling.service.accounts import create_admin, normalise_email
from microneedling.service.app import create_app
from microneedling.service.config import ENV_PREFIX, Settings
from microneedling.service.db import User, make_engine, migrate, session_scope

__all__ = ["admin_from_env", "app_from_env", "ensure_admin", "prepare", "serve"]

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
    # each process allows its share of the sign-in limit (service.app.login_limiter)
    os.environ[ENV_PREFIX + "SERVER_PROCESSES"] = str(max(1, workers))
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
