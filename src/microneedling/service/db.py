"""The database: tables (SQLAlchemy 2 ORM), engines for SQLite and PostgreSQL, and the Alembic
migrations that create and change the schema (``service/migrations``; the same on both databases).

Every record that holds user data carries ``organisation_id``; the API reaches records only through
:func:`microneedling.service.auth.owned` and :func:`microneedling.service.auth.scoped`, which filter
on the caller's organisation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "BrowserSession",
    "CourseRecord",
    "FileRecord",
    "MoleculeRecord",
    "Organisation",
    "PatientRecord",
    "PopulationRecord",
    "Run",
    "User",
    "alembic_config",
    "downgrade",
    "make_engine",
    "migrate",
    "now",
    "session_scope",
]


def now() -> dt.datetime:
    """The current time, UTC, timezone-aware."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: ids are never reused after a deletion (SQLite reuses the largest id without this), so the audit
#: log's record ids stay unambiguous
_NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    """Base of every table."""


def _org() -> Mapped[int]:
    return mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), index=True, nullable=False
    )


def _creator() -> Mapped[int | None]:
    return mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=now, nullable=False)


class Organisation(Base):
    """A clinic or a lab: the unit that owns records."""

    __tablename__ = "organisations"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = _created()


class User(Base):
    """A person who signs in; ``role`` is ``admin`` (manages the organisation's users) or ``member``."""

    __tablename__ = "users"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    email: Mapped[str] = mapped_column(sa.String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    role: Mapped[str] = mapped_column(sa.String(20), nullable=False, default="member")
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    created_at: Mapped[dt.datetime] = _created()


class ApiToken(Base):
    """A token for scripts: only its SHA-256 is stored; revoked tokens stay listed."""

    __tablename__ = "api_tokens"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = _created()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class BrowserSession(Base):
    """A signed-in browser: the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "browser_sessions"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = _created()
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)


class PatientRecord(Base):
    """A patient: the planner's patient file (validated by ``course.patient.PatientFile``)."""

    __tablename__ = "patients"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    name: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_by: Mapped[int | None] = _creator()
    created_at: Mapped[dt.datetime] = _created()


class CourseRecord(Base):
    """A course (validated by ``course.model.Course``), optionally of a stored patient."""

    __tablename__ = "courses"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    patient_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("patients.id", ondelete="CASCADE"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_by: Mapped[int | None] = _creator()
    created_at: Mapped[dt.datetime] = _created()


class Run(Base):
    """A run of one kind (simulate, plan, absorb, trial, sensitivity, validate) and its state.

    ``status``: queued → running → done | failed | cancelled. ``worker`` and ``heartbeat_at`` say
    which process holds a running job (``worker``: also which process ran an inline simulation); a
    job whose heartbeat is stale is taken over (resumed) by another process, or by the same server
    after a restart.
    """

    __tablename__ = "runs"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    kind: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(20), nullable=False, index=True)
    patient_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("patients.id", ondelete="CASCADE"), index=True, nullable=True
    )
    course_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("courses.id", ondelete="CASCADE"), index=True, nullable=True
    )
    request: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    summary: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    endpoints: Mapped[list[Any] | None] = mapped_column(sa.JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    progress: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0)
    progress_text: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    worker: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    created_by: Mapped[int | None] = _creator()
    created_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FileRecord(Base):
    """A file of a run (``result.nc``, ``report.html``, ``figures/x.png``): a name and the SHA-256
    of its content in the file store."""

    __tablename__ = "files"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "name", name="uq_files_run_name"),
        _NEVER_REUSE_IDS,
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True, nullable=False)
    size: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    created_at: Mapped[dt.datetime] = _created()


class MoleculeRecord(Base):
    """A topical active added by an organisation (the molecule library's TOML format)."""

    __tablename__ = "molecules"
    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "key", name="uq_molecules_org_key"),
        _NEVER_REUSE_IDS,
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    key: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_by: Mapped[int | None] = _creator()
    created_at: Mapped[dt.datetime] = _created()


class PopulationRecord(Base):
    """A virtual population added by an organisation (the population file format)."""

    __tablename__ = "populations"
    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "name", name="uq_populations_org_name"),
        _NEVER_REUSE_IDS,
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    created_by: Mapped[int | None] = _creator()
    created_at: Mapped[dt.datetime] = _created()


class AuditEvent(Base):
    """Who created, ran, viewed or deleted what, when and from where (kept when the record goes)."""

    __tablename__ = "audit_events"
    __table_args__ = _NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = _org()
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    token_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True
    )
    action: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    resource: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    resource_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    detail: Mapped[str] = mapped_column(sa.String(1000), nullable=False, default="")
    ip: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=now, index=True, nullable=False)


# ----------------------------------------------------------------------------- engines
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite with foreign keys, WAL and a busy timeout; PostgreSQL pooled."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(engine: Engine) -> Config:
    """The Alembic configuration of the package's migrations, bound to ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", "microneedling.service:migrations")
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (default: the newest), in one transaction."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the schema to ``revision`` (``"base"``: no table left)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on an exception."""
    db = factory()
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()
