"""functions and their immutable versions

Revision ID: 0001
Revises:
Create Date: 2025-11-22 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A revision is a snapshot: it spells out its types instead of importing them from the models.
# MySQL's DATETIME keeps whole seconds and its FLOAT is single precision: ask for microseconds
# and doubles, as SQLite keeps them.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        # the unique index every lookup by name uses
        sa.UniqueConstraint("name", name=op.f("uq_functions_name")),
    )
    op.create_table(
        "function_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("function_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_key", sa.String(length=255), nullable=False),
        sa.Column("runtime", sa.String(length=32), nullable=False),
        sa.Column("handler", sa.String(length=255), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Double(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["function_id"],
            ["functions.id"],
            name=op.f("fk_function_versions_function_id_functions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
        # also the index of the hot-path lookup (function_id, version) and the index MySQL
        # needs for the foreign key; a second index over these columns would only cost writes
        sa.UniqueConstraint("function_id", "version", name="uq_function_version"),
    )


def downgrade() -> None:
    op.drop_table("function_versions")
    op.drop_table("functions")
