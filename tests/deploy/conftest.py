"""Fixtures for these tests: the embedded stack factory (its live metrics registries)."""

from tests.stack import hotpool_stack, stack_backend  # noqa: F401
