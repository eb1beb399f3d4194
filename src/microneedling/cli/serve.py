"""``microneedling serve``: the HTTP API (FastAPI on uvicorn) with its database and background jobs.

    microneedling serve [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--database URL]
        [--workers N] [--job-threads N] [--dask-workers N | --scheduler tcp://host:port]
    microneedling serve --create-admin EMAIL [--organisation NAME] [--data-dir DIR] [--database URL]

With no option it needs no set-up: SQLite and the file store in the user's data directory,
migrations applied at start. ``--create-admin`` creates an administrator (password from
``MICRONEEDLING_ADMIN_PASSWORD`` or typed twice; never a default) and exits. See docs/service.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from microneedling.cli.common import EXIT_BAD_INPUT, fail, user_errors
from microneedling.errors import InputError

__all__ = ["serve_command"]


def _password() -> str:
    env = os.environ.get("MICRONEEDLING_ADMIN_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        fail(
            "--create-admin: set MICRONEEDLING_ADMIN_PASSWORD or run in a terminal to type the "
            "password",
            EXIT_BAD_INPUT,
        )
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Database and file store (default: the user data directory; "
            "MICRONEEDLING_DATA_DIR).",
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL",
            help="postgresql+psycopg://user@host/db instead of SQLite (MICRONEEDLING_DATABASE_URL).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, metavar="N", help="Server processes.")
    ] = 1,
    job_threads: Annotated[
        int | None,
        typer.Option(
            "--job-threads",
            min=0,
            metavar="N",
            help="Background runs at a time per process (0: this process runs none). Default 1.",
        ),
    ] = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(
            "--dask-workers",
            min=0,
            metavar="N",
            help="Run the chunks of long jobs on N local Dask worker processes.",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", metavar="ADDR", help="Run chunks on a Dask scheduler, tcp://host:port."
        ),
    ] = None,
    create_admin: Annotated[
        str | None,
        typer.Option(
            "--create-admin",
            metavar="EMAIL",
            help="Create an administrator (password from MICRONEEDLING_ADMIN_PASSWORD or typed) "
            "and exit.",
        ),
    ] = None,
    organisation: Annotated[
        str,
        typer.Option(
            "--organisation", metavar="NAME", help="The administrator's organisation (created)."
        ),
    ] = "default",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Start the HTTP API (OpenAPI docs at /docs) with its database and background jobs."""
    from microneedling.service.config import Settings
    from microneedling.service.server import LOG_LEVELS, ensure_admin, prepare, serve

    with user_errors():
        try:
            settings = Settings.from_env(
                data_dir=data_dir,
                database_url=database,
                job_threads=job_threads,
                dask_workers=dask_workers,
                scheduler=scheduler,
            )
            if log_level.lower() not in LOG_LEVELS:
                raise InputError("--log-level", log_level, "one of " + ", ".join(LOG_LEVELS))
            if settings.dask_workers and settings.scheduler:
                raise InputError(
                    "--scheduler",
                    settings.scheduler,
                    "either --dask-workers or --scheduler, not both",
                )
            if create_admin is not None:
                settings = prepare(settings)
                if ensure_admin(settings, create_admin, _password(), organisation):
                    typer.echo(
                        f"created administrator {create_admin.strip().lower()} of "
                        f"{organisation!r} in {settings.database_kind} "
                        f"({settings.database_url or settings.sqlite_path})"
                    )
                    return
                fail(f"--create-admin: {create_admin} already has an account", EXIT_BAD_INPUT)
            typer.echo(
                f"microneedling service on http://{host}:{port} (pages: /web/, API docs: "
                f"/docs); data in "
                f"{settings.data_dir}",
                err=True,
            )
            serve(
                settings,
                host=host,
                port=port,
                workers=workers,
                access_log=access_log,
                log_level=log_level,
                factory="microneedling.web.app:app_from_env",
            )
        except InputError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
