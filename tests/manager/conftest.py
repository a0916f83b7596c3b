"""Fixtures for these tests: the embedded stack factory."""

from tests.stack import hotpool_stack, stack_backend  # noqa: F401
