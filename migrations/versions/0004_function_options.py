"""function settings beyond the first columns: layers, logging, the web route

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:10:00

One JSON column holds them (``FunctionConfig.options``); a version written before it has
NULL there and reads as the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("function_versions") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("function_versions") as batch:
        batch.drop_column("options")
