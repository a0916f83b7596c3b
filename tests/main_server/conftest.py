"""Fixtures for these tests: the embedded stack factory, and the one on fakeredis or real Redis."""

from tests.async_calls import any_redis_stack, real_redis_url, redis_under_test  # noqa: F401
from tests.stack import hotpool_stack, stack_backend  # noqa: F401
