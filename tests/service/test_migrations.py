"""The Alembic migrations on SQLite and PostgreSQL: up to head gives exactly the tables of the ORM
(autogenerate finds no difference), down to base removes them, up again works; the app applies
them at start and a second start changes nothing."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from microneedling.service.db import Base, alembic_config, downgrade, make_engine, migrate
from tests.service.conftest import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="microneedling-mig-") as tmp:
        url = database_url(request.param, request, Path(tmp))
        eng = make_engine(url or f"sqlite+pysqlite:///{tmp}/m.sqlite3")
        try:
            yield eng
        finally:
            eng.dispose()


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def _head(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_up_down_up(engine: Engine) -> None:
    assert _tables(engine) == set()
    migrate(engine)
    assert _current(engine) == _head(engine)
    assert _tables(engine) == set(Base.metadata.tables) | {"alembic_version"}
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == [], diff
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO organisations (name, created_at) VALUES ('x', :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
    downgrade(engine)
    assert _tables(engine) == {"alembic_version"}
    assert _current(engine) is None
    migrate(engine)
    assert _current(engine) == _head(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM organisations")).scalar() == 0
    migrate(engine)  # at head: nothing to do
    assert _current(engine) == _head(engine)


def test_foreign_keys_cascade_on_both_databases(engine: Engine) -> None:
    """Deleting a run deletes its file rows in the database itself (SQLite: foreign keys on)."""
    migrate(engine)
    with engine.begin() as conn:
        t = "2026-01-01 00:00:00"
        conn.execute(
            sa.text("INSERT INTO organisations (id, name, created_at) VALUES (1, 'o', :t)"),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, organisation_id, kind, status, request, progress, "
                "progress_text, cancel_requested, attempts, created_at) VALUES "
                "(1, 1, 'simulate', 'done', '{}', 1.0, '', false, 0, :t)"
            ),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO files (organisation_id, run_id, name, sha256, size, media_type, "
                "created_at) VALUES (1, 1, 'a', :s, 1, 'x', :t)"
            ),
            {"s": "0" * 64, "t": t},
        )
        conn.execute(sa.text("DELETE FROM runs WHERE id = 1"))
        assert conn.execute(sa.text("SELECT count(*) FROM files")).scalar() == 0
