"""Fixtures for these tests: the embedded stack factory, the runtimes' bootstraps (with
the contract suite's ``runtime``, ``start_runtime`` and ``echo_app``), and the provided
relay's ``external`` and ``pool``."""

from tests.manager.bootstraps import (  # noqa: F401
    echo_app,
    runtime,
    start_bootstrap,
    start_node,
    start_runtime,
)
from tests.manager.provided_kit import external, pool  # noqa: F401
from tests.stack import hotpool_stack, stack_backend  # noqa: F401
