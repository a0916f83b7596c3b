"""The security suite: every attack a hostile tenant or client tried, kept as a test.

Each module is one defect; its tests attack as a tenant would (a function deployed through the
API doing it from inside its container) or as a client would, and assert what a defender
expects to see. The embedded stack factory comes from tests/stack.py.
"""

from tests.async_calls import any_redis_stack, real_redis_url, redis_under_test  # noqa: F401
from tests.manager.bootstraps import start_bootstrap, start_node  # noqa: F401
from tests.manager.provided_kit import pool  # noqa: F401
from tests.stack import hotpool_stack, stack_backend  # noqa: F401
