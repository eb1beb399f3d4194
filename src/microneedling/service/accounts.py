"""Organisations, users, API tokens and browser sessions (used by the API and by
``microneedling serve --create-admin``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from microneedling.errors import InputError
from microneedling.service.db import ApiToken, BrowserSession, Organisation, User, now
from microneedling.service.security import (
    check_password_strength,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)

__all__ = [
    "authenticate",
    "change_password",
    "create_admin",
    "create_user",
    "end_sessions",
    "issue_token",
    "normalise_email",
    "start_session",
]


def normalise_email(email: str, field: str = "email") -> str:
    """An e-mail address, lower case; refused unless it looks like ``name@domain``."""
    text = email.strip().lower() if isinstance(email, str) else ""
    local, _, domain = text.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in text) or len(text) > 320:
        raise InputError(field, email, "an e-mail address such as name@clinic.example")
    return text


def create_user(
    db: Session, organisation: Organisation, email: str, password: str, role: str = "member"
) -> User:
    """A new user of ``organisation`` (the e-mail must be new to the whole server)."""
    address = normalise_email(email)
    check_password_strength(password)
    if role not in ("admin", "member"):
        raise InputError("role", role, "one of 'admin', 'member'")
    if db.scalar(sa.select(User.id).where(User.email == address)) is not None:
        raise InputError("email", address, "an e-mail address that has no account yet")
    user = User(
        organisation_id=organisation.id,
        email=address,
        password_hash=hash_password(password),
        role=role,
        active=True,
    )
    db.add(user)
    db.flush()
    return user


def create_admin(db: Session, email: str, password: str, organisation: str) -> User:
    """An administrator of ``organisation`` (created if it does not exist)."""
    name = organisation.strip() if isinstance(organisation, str) else ""
    if not name or len(name) > 200:
        raise InputError("organisation", organisation, "a name of 1 to 200 characters")
    org = db.scalar(sa.select(Organisation).where(Organisation.name == name))
    if org is None:
        org = Organisation(name=name)
        db.add(org)
        db.flush()
    return create_user(db, org, email, password, role="admin")


def authenticate(db: Session, email: str, password: str) -> User | None:
    """The active user with these credentials, else ``None`` (same time for an unknown user)."""
    address = email.strip().lower() if isinstance(email, str) else ""
    user = db.scalar(sa.select(User).where(User.email == address))
    ok = verify_password(user.password_hash if user is not None else None, password)
    return user if ok and user is not None and user.active else None


def change_password(db: Session, user: User, current: str, new: str, repeat: str) -> None:
    """Set ``user``'s password to ``new`` after checking ``current`` (argon2, as at sign-in) and
    that ``repeat`` is the same; the strength rule is the one of :func:`create_user`. Refusals are
    :class:`InputError` naming the form's field (never echoing a password). The caller commits
    (and ends the user's other sessions if it wishes)."""
    if not verify_password(user.password_hash, current if isinstance(current, str) else ""):
        raise InputError("current_password", "<hidden>", "your current password")
    check_password_strength(new, "new_password")
    if repeat != new:
        raise InputError("repeat_password", "<hidden>", "the same new password twice")
    if new == current:
        raise InputError("new_password", "<hidden>", "a password different from the current one")
    user.password_hash = hash_password(new)
    db.flush()


def end_sessions(db: Session, user_id: int, keep: str | None = None) -> None:
    """End the browser sessions of a user (their cookies stop working at once), but the session
    whose cookie is ``keep`` (the caller's own, after a password change on the web)."""
    q = sa.delete(BrowserSession).where(BrowserSession.user_id == user_id)
    if keep:
        q = q.where(BrowserSession.token_hash != hash_token(keep))
    db.execute(q)


def issue_token(db: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token of ``user``; returns the record and the token (shown once)."""
    token = new_token()
    record = ApiToken(
        organisation_id=user.organisation_id,
        user_id=user.id,
        name=name,
        prefix=token[:12],
        token_hash=hash_token(token),
    )
    db.add(record)
    db.flush()
    return record, token


def start_session(db: Session, user: User, hours: float) -> tuple[BrowserSession, str]:
    """A new browser session of ``user``; returns the record and the cookie value."""
    token = new_token("mns_")
    record = BrowserSession(
        organisation_id=user.organisation_id,
        user_id=user.id,
        token_hash=hash_token(token),
        expires_at=now() + dt.timedelta(hours=hours),
    )
    db.add(record)
    db.flush()
    return record, token
