"""The first schema: organisations, users, API tokens, browser sessions, patients, courses, runs,
files, molecules, populations and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _org() -> sa.Column[int]:
    return sa.Column(
        "organisation_id",
        sa.Integer,
        sa.ForeignKey("organisations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def _creator() -> sa.Column[int]:
    return sa.Column(
        "created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "browser_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        _creator(),
        sa.Column("created_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "courses",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column(
            "patient_id",
            sa.Integer,
            sa.ForeignKey("patients.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        _creator(),
        sa.Column("created_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column(
            "patient_id",
            sa.Integer,
            sa.ForeignKey("patients.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column(
            "course_id",
            sa.Integer,
            sa.ForeignKey("courses.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("endpoints", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("progress_text", sa.String(500), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("worker", sa.String(100), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        _creator(),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "files",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("run_id", "name", name="uq_files_run_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "molecules",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        _creator(),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("organisation_id", "key", name="uq_molecules_org_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "populations",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        _creator(),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("organisation_id", "name", name="uq_populations_org_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        _org(),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column(
            "token_id",
            sa.Integer,
            sa.ForeignKey("api_tokens.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("resource", sa.String(40), nullable=False),
        sa.Column("resource_id", sa.String(100), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("at", TS, nullable=False, index=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in (
        "audit_events",
        "populations",
        "molecules",
        "files",
        "runs",
        "courses",
        "patients",
        "browser_sessions",
        "api_tokens",
        "users",
        "organisations",
    ):
        op.drop_table(table)
