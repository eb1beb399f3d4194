"""A real server in a subprocess (``python -m microneedling serve``) on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.pg import free_port


def serve(
    data_dir: Path, env: dict[str, str] | None = None, port: int | None = None, *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on ``data_dir``; returns the process and its base URL once it answers."""
    port = port or free_port()
    with open(data_dir / f"server-{port}.log", "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "microneedling",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
                *extra,
            ],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: "
                + (data_dir / f"server-{port}.log").read_text(errors="replace")[-2000:]
            )
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not answer within 90 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_admin(data_dir: Path, email: str, password: str, organisation: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "microneedling",
            "serve",
            "--data-dir",
            str(data_dir),
            "--create-admin",
            email,
            "--organisation",
            organisation,
        ],
        env={**os.environ, "MICRONEEDLING_ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
