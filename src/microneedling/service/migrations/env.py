"""Alembic environment: runs on the connection :func:`microneedling.service.db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from microneedling.service.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the package always passes its connection
    raise RuntimeError("run migrations through microneedling.service.db.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
