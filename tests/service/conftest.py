"""Fixtures of the service tests: a PostgreSQL cluster per test process, and an app per test
module on each database (SQLite and PostgreSQL) with two organisations, each with an administrator
and an API token."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.helpers import Service, build_service, settings_for
from tests.service.pg import Cluster, start_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def database_url(kind: str, request: pytest.FixtureRequest, tmp: Path) -> str | None:
    """``None`` (SQLite in the data directory) or a new PostgreSQL database."""
    if kind == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    """The app on one database, with organisations A and B (module-scoped: one per test file)."""
    with tempfile.TemporaryDirectory(prefix="microneedling-svc-") as tmp:
        url = database_url(request.param, request, Path(tmp))
        with build_service(settings_for(Path(tmp), url), request.param) as svc:
            yield svc


@pytest.fixture(scope="module")
def sqlite_service() -> Iterator[Service]:
    """The app on SQLite only (for the long runs whose database work is the same on both)."""
    with tempfile.TemporaryDirectory(prefix="microneedling-svc-") as tmp:
        with build_service(settings_for(Path(tmp), None), "sqlite") as svc:
            yield svc
