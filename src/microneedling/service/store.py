"""The content-addressed file store beside the database.

A blob is named by the SHA-256 of its content, ``files/ab/cdef…``; the database references blobs
from :class:`~microneedling.service.db.FileRecord` rows. Blobs are written atomically
(:func:`microneedling.io.atomic_path`: a reader sees the whole file or none), identical content is
stored once, and a blob is removed when the last row that references it goes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from microneedling.io import atomic_path

__all__ = ["FileStore"]

_CHUNK = 1 << 20


class FileStore:
    """Blobs under ``root``, one file per distinct content."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (it may not exist)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; returns its SHA-256 and size (nothing is written if it is stored)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if not target.is_file():
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return sha, len(data)

    def put_file(self, source: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a copy of the file ``source``; returns its SHA-256 and size."""
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
                size += len(block)
        sha = digest.hexdigest()
        target = self.path(sha)
        if not target.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        return sha, size

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def remove(self, digests: Iterable[str]) -> int:
        """Remove the blobs ``digests`` (the caller checked that nothing references them)."""
        n = 0
        for sha in set(digests):
            p = self.path(sha)
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                continue
        return n
