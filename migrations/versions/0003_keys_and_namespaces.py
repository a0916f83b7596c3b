"""users, API keys, and namespace-qualified function names

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 14:10:00

A function's ``name`` now holds its namespace-qualified name: ``name`` in the default
namespace, ``namespace.name`` in any other (a plain name has no dot), so it grows to 127.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)


def upgrade() -> None:
    with op.batch_alter_table("functions") as batch:
        batch.alter_column(
            "name", existing_type=sa.String(length=63), type_=sa.String(length=127),
            existing_nullable=False,
        )  # fmt: skip
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=127), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("namespaces", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=127), nullable=True),
        sa.Column("rate_per_s", sa.Double(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_keys_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id"),
        # the lookup every authenticated request does (cached in Main for a few seconds)
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("users")
    with op.batch_alter_table("functions") as batch:
        batch.alter_column(
            "name", existing_type=sa.String(length=127), type_=sa.String(length=63),
            existing_nullable=False,
        )  # fmt: skip
