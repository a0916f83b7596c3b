"""An asynchronous attempt that ran writes its end once Redis is back, instead of running again."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions

from hotpool.main_server import async_consumer
from hotpool.main_server.async_consumer import AsyncConsumer
from hotpool.main_server.async_outcome import Decision
from hotpool.shared.async_queue import Attempt, Entry
from hotpool.shared.settings import Settings


class FlakyQueue:
    """FINISH fails with a connection error ``failures`` times, then ends the attempt."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    async def finish(self, attempt: Attempt, outcome: str, fields: Any, **_: Any) -> bool:
        self.calls.append(outcome)
        if len(self.calls) <= self.failures:
            raise redis.exceptions.ConnectionError("Error 111 connecting: Connection refused")
        return True


def _consumer(queue: FlakyQueue) -> AsyncConsumer:
    # only FINISH is reached: no invoker or function service is needed
    return AsyncConsumer(Settings.from_env({}), queue=queue, invoker=None, functions=None)


ATTEMPT = Attempt(Entry("1-0", "r1", "default/f", "default"), 1, {"status": "running"})


@pytest.mark.unit
async def test_an_attempt_that_ran_is_ended_once_redis_answers_again(monkeypatch):
    monkeypatch.setattr(async_consumer, "redis_retry_s", 0.0)
    queue = FlakyQueue(failures=3)
    consumer = _consumer(queue)
    await consumer._finish(ATTEMPT, None, Decision("succeeded"))
    assert queue.calls == ["succeeded"] * 4
    assert consumer.counters["async_succeeded"] == 1
    assert consumer.counters["async_finish_retried"] == 3


@pytest.mark.unit
async def test_a_stopping_consumer_leaves_the_attempt_to_the_reclaim_path(monkeypatch):
    monkeypatch.setattr(async_consumer, "redis_retry_s", 0.0)
    queue = FlakyQueue(failures=1)
    consumer = _consumer(queue)
    consumer._stopping = True
    with pytest.raises(redis.exceptions.ConnectionError):
        await consumer._finish(ATTEMPT, None, Decision("succeeded"))
    assert queue.calls == ["succeeded"]
    assert consumer.counters["async_succeeded"] == 0
