"""The Lambda compatibility suite: real, public Lambda code deployed unchanged on hotpool.

Fixtures come from tests/stack.py (a real Main + Manager per test, the process backend unless
a module overrides ``stack_backend``); third-party code is fetched and built at test time
(sources.py, cached under ~/.cache/hotpool-tests); harness.py deploys and reads records.
"""

from tests.stack import hotpool_stack, stack_backend  # noqa: F401
