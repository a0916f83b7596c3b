"""Execution records do not pile up for ever: the embedded SQLite log keeps them for the
retention period (HOTPOOL_LOG_RETENTION_DAYS, which MongoDB applies with its TTL index) and
deletes older ones as it goes, so a tenant invoking in a loop cannot fill the disk over time.
"""

from __future__ import annotations

import time

import pytest

from hotpool.shared.execlog import SqliteExecutionLog
from hotpool.shared.settings import Settings
from hotpool.shared.stores import open_execution_log

pytestmark = pytest.mark.unit

DAY_S = 24 * 3600.0


def _record(request_id: str, started_at: float) -> dict:
    return {"request_id": request_id, "function": "ns/f", "started_at": started_at, "out": "x"}


async def test_records_older_than_the_retention_are_deleted(tmp_path):
    settings = Settings.from_env({}, state_dir=tmp_path, log_retention_days=1)
    execution_log = await open_execution_log(settings)
    assert isinstance(execution_log, SqliteExecutionLog)
    now = time.time()
    try:
        await execution_log.insert_many(
            [_record(f"old-{i}", now - 2 * DAY_S) for i in range(50)]
            + [_record("recent", now - 60)]
        )
        await execution_log.insert_many([_record("newest", now)])

        kept = await execution_log.latest("ns/f", 100)
    finally:
        await execution_log.close()
    assert [r["request_id"] for r in kept] == ["newest", "recent"]


async def test_old_records_left_by_an_earlier_run_go_at_start(tmp_path):
    path = tmp_path / "executions.db"
    forever = SqliteExecutionLog(path)
    await forever.open()
    await forever.insert_many([_record("old", time.time() - 2 * DAY_S)])
    await forever.close()

    execution_log = await open_execution_log(
        Settings.from_env({}, state_dir=tmp_path, log_retention_days=1)
    )
    try:
        assert await execution_log.latest("ns/f", 10) == []
    finally:
        await execution_log.close()
