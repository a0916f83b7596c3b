"""The AWS Lambda context object handed to every invocation."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from .config import FunctionConfig

ARN_TEMPLATE = "arn:hotpool:lambda:local:000000000000:function:{name}:{version}"
LOG_GROUP_TEMPLATE = "/hotpool/functions/{name}"


class LambdaContext:
    """The AWS Lambda context object, so stdlib-only Lambda handlers run unchanged."""

    def __init__(
        self, config: FunctionConfig, log_stream: str, request_id: str, deadline: float
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = config.function_name
        self.function_version = str(config.function_version)
        self.invoked_function_arn = ARN_TEMPLATE.format(
            name=config.function_name, version=config.function_version
        )
        self.memory_limit_in_mb = config.memory_mb
        self.log_group_name = LOG_GROUP_TEMPLATE.format(name=config.function_name)
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the caller's deadline, never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
