"""Fixtures for these tests: the embedded stack factory, and the Node.js bootstrap's."""

from tests.manager.nodejs_bootstrap import start_node  # noqa: F401
from tests.stack import hotpool_stack, stack_backend  # noqa: F401
