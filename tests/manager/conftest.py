"""Fixtures for these tests: the embedded stack factory, and the runtimes' bootstraps (with
the contract suite's ``runtime``, ``start_runtime`` and ``echo_app``)."""

from tests.manager.bootstraps import (  # noqa: F401
    echo_app,
    runtime,
    start_bootstrap,
    start_node,
    start_runtime,
)
from tests.stack import hotpool_stack, stack_backend  # noqa: F401
