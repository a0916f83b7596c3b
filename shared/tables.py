"""The tables of the metadata database, as SQLAlchemy models.

The Alembic migrations in ``migrations/`` make them; ``tests/shared/test_schema.py`` checks that
the migrated schema matches these models. The stores that read and write them are
``shared.metadata`` (functions), ``shared.keystore`` (keys), ``shared.layer_store`` (layers) and
``shared.schedule_store`` (schedules).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names, so the models, the migrations and every backend agree on them and a
# later migration can drop one by name (SQLite's batch mode needs that).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    # no "pk": MySQL names every primary key PRIMARY and answers any other name with a warning
}

# MySQL's DATETIME keeps whole seconds and its FLOAT is single precision; ask for the
# microseconds and the doubles SQLite keeps, so a row reads back exactly as it was written.
Timestamp = DateTime(timezone=True).with_variant(
    mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb"
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FunctionRow(Base):
    __tablename__ = "functions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # unique: the index every lookup by name uses (uq_functions_name)
    # namespace-qualified: "name" in the default namespace, "namespace.name" elsewhere
    name: Mapped[str] = mapped_column(String(127), unique=True, nullable=False)
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class VersionRow(Base):
    __tablename__ = "function_versions"
    # Also the index of the hot-path lookup (function_id, version), and the one MySQL needs for
    # the foreign key: a second index over the same columns would only slow down writes.
    __table_args__ = (UniqueConstraint("function_id", "version", name="uq_function_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    function_id: Mapped[int] = mapped_column(
        ForeignKey("functions.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    code_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    code_key: Mapped[str] = mapped_column(String(255), nullable=False)
    runtime: Mapped[str] = mapped_column(String(32), nullable=False)
    handler: Mapped[str] = mapped_column(String(255), nullable=False)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False)
    timeout_s: Mapped[float] = mapped_column(Double, nullable=False)
    max_concurrency: Mapped[int] = mapped_column(Integer, nullable=False, server_default="100")
    env: Mapped[dict] = mapped_column(JSON, nullable=False)
    # the settings added since (FunctionConfig.options): layers, logging, the web route
    options: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the code keys of its layers, in order, resolved at deploy: a cold start needs no lookup
    layer_keys: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class LayerVersionRow(Base):
    """One immutable layer version (``shared.layer_store``). A deleted one keeps its row, so
    its number is never given again, as Lambda never reuses a layer version number."""

    __tablename__ = "layer_versions"
    __table_args__ = (UniqueConstraint("namespace", "name", "version", name="uq_layer_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(63), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    code_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    code_key: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


# a schedule's fixed event: up to 256 KiB of JSON, more than MySQL's TEXT (64 KiB) holds
EventText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class ScheduleRow(Base):
    """One schedule of one function (``shared.schedule_store``)."""

    __tablename__ = "schedules"
    # also the index of a namespace's count and a function's listing
    __table_args__ = (UniqueConstraint("namespace", "function", "name", name="uq_schedule"),)

    # uuid4 hex: the scheduler's Redis keys name it, so it stays across updates
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), nullable=False)
    # namespace-qualified, as FunctionRow.name
    function: Mapped[str] = mapped_column(String(127), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    expression: Mapped[str] = mapped_column(String(256), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    event: Mapped[str | None] = mapped_column(EventText, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(127), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)


class KeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    # only a hash is stored: the key itself is shown once, at creation
    secret_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    namespaces: Mapped[list] = mapped_column(JSON, nullable=False)
    scopes: Mapped[str] = mapped_column(String(255), nullable=False)
    function: Mapped[str | None] = mapped_column(String(127), nullable=True)
    rate_per_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    description: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
