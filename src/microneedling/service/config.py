"""Settings of a service process: command-line options first, then ``MICRONEEDLING_*`` environment
variables, then defaults. Secrets come from the environment only (or, for the session-signing key
of a single machine, a random key kept in the data directory with mode 0600)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from microneedling.errors import InputError
from microneedling.io import write_text_atomic

__all__ = ["ENV_PREFIX", "Settings", "default_data_dir"]

ENV_PREFIX = "MICRONEEDLING_"


def default_data_dir() -> Path:
    """Where the database and the file store live unless ``--data-dir`` says otherwise."""
    return Path(platformdirs.user_data_dir("microneedling", appauthor=False)) / "service"


def _env(name: str) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _env_flag(name: str, default: bool) -> bool:
    """``MICRONEEDLING_<name>``: on for 1, true or yes (any case), off for any other value;
    ``default`` when unset or empty."""
    raw = _env(name)
    return default if raw is None else raw.lower() in ("1", "true", "yes")


def _env_int(name: str, default: int, low: int = 0) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(ENV_PREFIX + name, raw, f"an integer ≥ {low}") from None
    if value < low:
        raise InputError(ENV_PREFIX + name, raw, f"an integer ≥ {low}")
    return value


def _env_float(name: str, default: float, low: float = 0.0) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(ENV_PREFIX + name, raw, f"a number ≥ {low:g}") from None
    if not value >= low:
        raise InputError(ENV_PREFIX + name, raw, f"a number ≥ {low:g}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a service process needs to know (see ``docs/service.md`` for each variable).

    ``database_url`` ``None`` means SQLite in ``data_dir``. ``job_threads`` 0 makes an API-only
    process (runs are queued and executed by another process of the same database). Executor:
    ``dask_workers`` local Dask worker processes, or ``scheduler`` an existing Dask scheduler; the
    default runs chunks in the job thread (in process). ``inline_threads``: threads of a process
    that may run an inline simulate at once (the others wait their turn). The rate limits
    (``rate_per_second`` and ``rate_burst`` per API token or user, ``login_per_minute`` per client
    address and per account) hold for the whole server: its processes share their buckets in
    :attr:`limits_dir` (per process where that cannot work: Windows).
    """

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    secret_key: str = ""
    job_threads: int = 1
    dask_workers: int = 0
    scheduler: str | None = None
    max_body_bytes: int = 2 * 1024 * 1024
    rate_per_second: float = 100.0
    rate_burst: int = 200
    login_per_minute: int = 10
    session_hours: float = 12.0
    secure_cookies: bool = False
    inline_max_draws: int = 64
    inline_threads: int = 1
    max_trial_patients: int = 200_000
    max_sensitivity_runs: int = 200_000
    stale_after_s: float = 30.0
    heartbeat_s: float = 2.0
    poll_s: float = 0.5
    freeze_heap: bool = True
    """Freeze the start-up heap out of the garbage collector's way as each process starts serving
    (:func:`~microneedling.service.app.freeze_startup_heap`); off in the tests, which start many
    apps in one process."""

    # --------------------------------------------------------------------------- paths
    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "microneedling.sqlite3"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database."""
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{self.sqlite_path}"

    @property
    def store_dir(self) -> Path:
        """The content-addressed file store (beside the database)."""
        return self.data_dir / "files"

    @property
    def work_dir(self) -> Path:
        """Scratch space of runs in progress (a trial's finished chunks live here until it ends)."""
        return self.data_dir / "work"

    @property
    def limits_dir(self) -> Path:
        """The rate limits' buckets, shared by the processes of a server (memory-mapped files)."""
        return self.data_dir / "limits"

    @property
    def database_kind(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0]

    # ------------------------------------------------------------------------ building
    @classmethod
    def from_env(cls, **options: Any) -> Settings:
        """Settings from ``options`` (``None`` values ignored), then ``MICRONEEDLING_*`` variables."""
        given = {k: v for k, v in options.items() if v is not None}
        data_dir = Path(given.pop("data_dir", None) or _env("DATA_DIR") or default_data_dir())
        base = cls(
            data_dir=data_dir.expanduser().resolve(),
            database_url=given.pop("database_url", None) or _env("DATABASE_URL"),
            secret_key=_env("SECRET_KEY") or "",
            job_threads=_env_int("JOB_THREADS", 1),
            dask_workers=_env_int("DASK_WORKERS", 0),
            scheduler=_env("SCHEDULER"),
            max_body_bytes=_env_int("MAX_BODY_BYTES", 2 * 1024 * 1024, low=1024),
            rate_per_second=_env_float("RATE_PER_SECOND", 100.0),
            rate_burst=_env_int("RATE_BURST", 200, low=1),
            login_per_minute=_env_int("LOGIN_PER_MINUTE", 10, low=1),
            session_hours=_env_float("SESSION_HOURS", 12.0, low=0.01),
            secure_cookies=_env_flag("SECURE_COOKIES", False),
            inline_max_draws=_env_int("INLINE_MAX_DRAWS", 64),
            inline_threads=_env_int("INLINE_THREADS", 1, low=1),
            max_trial_patients=_env_int("MAX_TRIAL_PATIENTS", 200_000, low=2),
            max_sensitivity_runs=_env_int("MAX_SENSITIVITY_RUNS", 200_000, low=1),
            stale_after_s=_env_float("STALE_AFTER_S", 30.0, low=0.1),
            freeze_heap=_env_flag("FREEZE_HEAP", True),
        )
        settings = replace(base, **given)
        if settings.database_url and not settings.database_url.startswith(("sqlite", "postgresql")):
            raise InputError(
                "--database",
                settings.database_url,
                "a SQLAlchemy URL of SQLite or PostgreSQL, e.g. postgresql+psycopg://user@host/db",
            )
        return settings

    def with_secret(self) -> Settings:
        """These settings with a secret key: ``MICRONEEDLING_SECRET_KEY``, else a random key kept in
        ``data_dir/secret_key`` (mode 0600) so that sessions survive a restart on this machine."""
        if self.secret_key:
            return self
        path = self.data_dir / "secret_key"
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            old = os.umask(0o077)
            try:
                write_text_atomic(secrets.token_urlsafe(48), path)
            finally:
                os.umask(old)
        return replace(self, secret_key=path.read_text(encoding="utf-8").strip())
