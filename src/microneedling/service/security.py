"""Secrets and limits: argon2 password hashes, random tokens stored as SHA-256, CSRF tokens bound
to a browser session, and token-bucket rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from microneedling.errors import InputError

__all__ = [
    "MIN_PASSWORD",
    "TOKEN_PREFIX",
    "RateLimiter",
    "check_password_strength",
    "csrf_token",
    "csrf_valid",
    "hash_password",
    "hash_token",
    "new_token",
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


class RateLimiter:
    """Token buckets per key (a token, a user, an address): ``rate`` per second, up to ``burst``.

    In memory, per process (each process of a multi-process server limits on its own).
    ``rate`` 0 disables the limit.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()  # bounded memory under a flood of new keys
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.tokens >= cost:
                b.tokens -= cost
                return 0.0
            return (cost - b.tokens) / self.rate
