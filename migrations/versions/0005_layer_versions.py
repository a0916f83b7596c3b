"""layers: the layer_versions table, and each function version's resolved layer packages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:30:00

A version written before it has NULL in ``layer_keys``: it has no layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_Timestamp = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)


def upgrade() -> None:
    op.create_table(
        "layer_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_key", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), server_default="", nullable=False),
        sa.Column("created_at", _Timestamp, nullable=False),
        sa.Column("deleted_at", _Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "name", "version", name="uq_layer_version"),
    )
    with op.batch_alter_table("function_versions") as batch:
        batch.add_column(sa.Column("layer_keys", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("function_versions") as batch:
        batch.drop_column("layer_keys")
    op.drop_table("layer_versions")
