"""Secrets and limits: argon2 password hashes, random tokens stored as SHA-256, CSRF tokens bound
to a browser session, and token-bucket rate limits (shared by the processes of a server through a
memory-mapped file, or in memory per process where that cannot work)."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import mmap
import os
import secrets
import struct
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from microneedling.errors import InputError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "MIN_PASSWORD",
    "SHARED_LIMITS",
    "TOKEN_PREFIX",
    "Limiter",
    "RateLimiter",
    "SharedRateLimiter",
    "check_password_strength",
    "csrf_token",
    "csrf_valid",
    "hash_password",
    "hash_token",
    "new_token",
    "rate_limiter",
    "verify_password",
]

#: shortest accepted password (characters)
MIN_PASSWORD = 12
#: API tokens start with this, so that a leaked one is recognisable (secret scanners)
TOKEN_PREFIX = "mnt_"

_HASHER = PasswordHasher()
#: a hash to verify against when the user does not exist (same time either way)
_DUMMY = _HASHER.hash("not a password of anyone " + secrets.token_hex(8))


def check_password_strength(password: str, field: str = "password") -> str:
    """Refuse short or blank passwords (an :class:`InputError` naming ``field``; never the value)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or not password.strip():
        raise InputError(field, "<hidden>", f"a password of at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InputError(field, "<hidden>", "a password of at most 1024 characters")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; parameters of argon2-cffi's defaults)."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (a missing user costs the same time)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    """A new random token (256 bits)."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token of a browser session: an HMAC of the session's cookie, so that a page of
    another site (which cannot read our cookie) cannot forge it."""
    return hmac.new(secret.encode(), b"csrf:" + session_token.encode(), "sha256").hexdigest()


def csrf_valid(secret: str, session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(secret, session_token), str(given))


@dataclass
class _Bucket:
    tokens: float
    at: float


class Limiter(Protocol):
    """What the service asks of a rate limit (:class:`RateLimiter`, :class:`SharedRateLimiter`)."""

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds to wait."""
        ...


class RateLimiter:
    """Token buckets per key (a token, a user, an address) in this process's memory: ``rate`` per
    second, up to ``burst``. ``rate`` 0 disables the limit.

    What the service uses where :class:`SharedRateLimiter` cannot work (no ``fcntl``: Windows),
    where each process of a multi-process server limits on its own. At most ``max_keys`` buckets:
    a bucket refilled to ``burst`` is the same as none, so when the table is full those are dropped
    first, then the fullest ones (a tenth of the table at a time); a depleted bucket is the last to
    go, so a flood of new keys cannot reset the bucket of the account it attacks.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max(1, int(max_keys))
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _level(self, b: _Bucket, now: float) -> float:
        return min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)

    def _make_room(self, now: float) -> None:
        level = {k: self._level(b, now) for k, b in self._buckets.items()}
        for k, v in level.items():
            if v >= self.burst:
                del self._buckets[k]
        excess = len(self._buckets) - self.max_keys
        if excess >= 0:  # none refilled enough: the fullest go, a batch at a time
            drop = excess + max(1, self.max_keys // 10)
            for k in heapq.nlargest(drop, self._buckets, key=level.__getitem__):
                del self._buckets[k]

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._make_room(now)  # bounded memory under a flood of new keys
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = self._level(b, now)
            b.at = now
            if b.tokens >= cost:
                b.tokens -= cost
                return 0.0
            return (cost - b.tokens) / self.rate


#: whether :class:`SharedRateLimiter` works here (it locks its file with ``fcntl.flock``)
SHARED_LIMITS = sys.platform != "win32"

_MAGIC = b"mnlimit\x00"
_VERSION = 1
#: magic, version, number of slots, the salt of the key hash
_HEADER = struct.Struct("<8sII16s")
#: a bucket: the key's hash (0: an empty slot), its tokens, the time.monotonic() of its last hit
_SLOT = struct.Struct("<Qdd")


class SharedRateLimiter:
    """Token buckets shared by every process that opens the same ``path``: ``rate`` per second, up
    to ``burst`` (the processes of one server open one file under its data directory, so a client
    gets the server's limit whichever process answers it). ``rate`` must be positive.

    The file is a fixed table of ``slots`` buckets (a power of two; 2**16 by default, 1.5 MiB,
    sparse until used), memory-mapped. A key is hashed (BLAKE2b, 8 bytes, keyed with a random salt
    kept in the file's header, so that nobody can choose keys that land on one slot) and its
    bucket lives in one of the ``window`` slots from ``hash mod slots``. A new key takes an empty
    slot of its window, else one whose bucket has refilled to ``burst`` (the same as no bucket),
    else the fullest: a depleted bucket is the last to go, so a flood of new keys cannot reset the
    bucket of the account it attacks. Each hit holds a ``threading.Lock`` (the threads of this process) and
    an exclusive ``fcntl.flock`` on the file (the other processes), so no update is lost. Times are
    ``time.monotonic()``, the same clock in every process of the machine (Linux: CLOCK_MONOTONIC); a
    bucket whose time lies ahead of the clock (written before a reboot) counts as refilled.

    The file is created (or, if its size or version is not this code's, replaced) by writing a new
    file and renaming it over the path while holding the lock on the old one; a process that opened
    the old file sees that its file is no longer the path's and opens again, so processes starting
    together end up on one file. The table only works on one machine: a data directory on a network
    file system shared by several machines gives each machine its own limits at best.

    Cost (``timeit``, best of 5 x 200,000 hits, 2026-12-07 02:05 UTC, Linux, load average 3.4 on
    2 cores): 2.3 µs per :meth:`hit` of an existing key (two ``flock`` calls, the hash, the
    window), 5.0 µs for a new key each time; :class:`RateLimiter` 0.6 µs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        rate: float,
        burst: int,
        *,
        slots: int = 1 << 16,
        window: int = 8,
    ) -> None:
        if slots < 1 or slots & (slots - 1) or not 1 <= window <= slots:
            raise ValueError(f"slots must be a power of two >= window >= 1, not {slots}, {window}")
        if not rate > 0:
            raise ValueError(f"a shared rate limit needs a positive rate, not {rate}")
        self.path = Path(path)
        self.rate = float(rate)
        self.burst = float(burst)
        self.slots = slots
        self.window = window
        self._lock = threading.Lock()
        self._fd, self._map, self._salt = _open_table(self.path, slots)
        self._close = weakref.finalize(self, _close_table, self._fd, self._map)

    def close(self) -> None:
        """Unmap and close the file (also done when the limiter is garbage-collected)."""
        self._close()

    def _hash(self, key: str) -> int:
        data = key.encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(data, digest_size=8, key=self._salt).digest()
        return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds to wait."""
        h = self._hash(key)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return self._take(h, cost, time.monotonic())  # the clock read under the lock
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _take(self, h: int, cost: float, now: float) -> float:
        table, burst, rate = self._map, self.burst, self.rate
        first = h & (self.slots - 1)
        victim, victim_level = -1, -1.0
        for i in range(self.window):
            offset = _HEADER.size + ((first + i) & (self.slots - 1)) * _SLOT.size
            slot_hash, tokens, at = _SLOT.unpack_from(table, offset)
            if slot_hash == h:
                break
            if slot_hash == 0:
                level = math.inf  # an empty slot: the first choice
            else:
                level = burst if now < at else min(burst, tokens + (now - at) * rate)
            if level > victim_level:
                victim, victim_level = offset, level
        else:  # a new key: the slot of the window whose bucket is nearest full (a refilled one)
            offset, tokens, at = victim, burst, now
        tokens = burst if now < at else min(burst, tokens + (now - at) * rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / rate
        _SLOT.pack_into(table, offset, h, tokens, now)
        return wait


def _close_table(fd: int, table: mmap.mmap) -> None:
    table.close()
    os.close(fd)


def _valid_table(fd: int, slots: int) -> bytes | None:
    """The salt of the table open on ``fd``, if its size and header are this code's."""
    if os.fstat(fd).st_size != _HEADER.size + slots * _SLOT.size:
        return None
    magic, version, n, salt = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
    return salt if (magic, version, n) == (_MAGIC, _VERSION, slots) else None


def _write_table(path: Path, slots: int) -> None:
    """A new, empty table at ``path``: written beside it, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.ftruncate(fd, _HEADER.size + slots * _SLOT.size)  # zeros: every slot empty
            os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, slots, secrets.token_bytes(16)), 0)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open_table(path: Path, slots: int) -> tuple[int, mmap.mmap, bytes]:
    """The table at ``path`` (created or replaced if missing, of another size or version): its
    open file, its mapping and its salt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                mine = os.fstat(fd)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is not None and (mine.st_dev, mine.st_ino) == (
                    current.st_dev,
                    current.st_ino,
                ):
                    salt = _valid_table(fd, slots)
                    if salt is not None:
                        return fd, mmap.mmap(fd, _HEADER.size + slots * _SLOT.size), salt
                    _write_table(path, slots)  # under the old file's lock: one process replaces it
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # another process replaced the file meanwhile, or this one did: open again


def rate_limiter(path: str | os.PathLike[str], rate: float, burst: int) -> Limiter:
    """The limit of a server: a :class:`SharedRateLimiter` on ``path`` where ``fcntl`` exists,
    else (Windows) a :class:`RateLimiter` per process. ``rate`` 0: no limit (and no file)."""
    if rate <= 0 or not SHARED_LIMITS:
        return RateLimiter(rate, burst)
    return SharedRateLimiter(path, rate, burst)
