"""The audit log: who created, changed, ran, viewed or deleted what, when and from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from microneedling.service.db import AuditEvent

__all__ = ["ACTIONS", "record"]

ACTIONS = (
    "create",
    "update",
    "run",
    "view",
    "delete",
    "cancel",
    "login",
    "logout",
    "revoke",
    "download",
)


def record(
    db: Session,
    principal: Any,
    action: str,
    resource: str,
    resource_id: Any = None,
    detail: str = "",
) -> None:
    """Add an event in the caller's transaction (it is kept only if the action is).

    ``principal`` is a :class:`microneedling.service.auth.Principal` (user, organisation, token,
    address)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    db.add(
        AuditEvent(
            organisation_id=principal.organisation_id,
            user_id=principal.user_id,
            token_id=principal.token_id,
            action=action,
            resource=resource,
            resource_id=None if resource_id is None else str(resource_id),
            detail=detail[:1000],
            ip=principal.ip,
        )
    )
