"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl in a temporary directory on a
free loopback port (as root, the server runs as the ``postgres`` user through ``runuser``).

A missing PostgreSQL fails the tests when ``MICRONEEDLING_REQUIRE_POSTGRES`` is set (``.ci/run``
sets it); elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE = "MICRONEEDLING_REQUIRE_POSTGRES"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def unavailable(reason: str) -> None:
    """Fail (CI, ``MICRONEEDLING_REQUIRE_POSTGRES`` set) or skip (a developer's machine)."""
    if os.environ.get(REQUIRE):
        pytest.fail(f"PostgreSQL is required ({REQUIRE} is set) but {reason}")
    pytest.skip(f"PostgreSQL not available: {reason} (set {REQUIRE}=1 to make this a failure)")


@dataclass
class Cluster:
    root: Path
    port: int
    prefix: list[str]
    pg_ctl: str

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = "mn_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("initdb/pg_ctl were not found (Debian: apt-get install -y postgresql)")
    assert initdb is not None and pg_ctl is not None
    root = Path(tempfile.mkdtemp(prefix="microneedling-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            unavailable("running as root and there is no 'postgres' user to run the server")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    init = subprocess.run(
        [
            *prefix,
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    port = free_port()
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    start = subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        ],
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-800:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log}")
    return Cluster(root, port, prefix, pg_ctl)
