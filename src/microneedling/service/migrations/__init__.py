"""Alembic migrations of the service's database (the same on SQLite and PostgreSQL); applied at
start by :func:`microneedling.service.db.migrate`."""
