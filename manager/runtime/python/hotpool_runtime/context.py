"""The AWS Lambda context object handed to every invocation."""

from __future__ import annotations

import time

from . import logs
from .environment import LOG_GROUP_TEMPLATE

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from .config import FunctionConfig

ARN_TEMPLATE = "arn:hotpool:lambda:{region}:000000000000:function:{name}:{version}"


class LambdaContext:
    """The AWS Lambda context object, so Lambda handlers run unchanged.

    Typed as awslambdaric types it: the function's name, version, memory size and log names
    are the strings of the environment (``memory_limit_in_mb`` is ``"128"``, not 128);
    ``client_context`` is None (no caller passes one here) and ``identity`` a
    ``CognitoIdentity`` whose fields are None."""

    def __init__(
        self, config: FunctionConfig, log_stream: str, request_id: str, deadline: float
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = config.function_name
        self.function_version = str(config.function_version)
        self.invoked_function_arn = ARN_TEMPLATE.format(
            region=config.region, name=config.function_name, version=config.function_version
        )
        self.memory_limit_in_mb = str(config.memory_mb)
        self.log_group_name = LOG_GROUP_TEMPLATE.format(name=config.function_name)
        self.log_stream_name = log_stream
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        # hotpool's own: which attempt at this request id this is (asynchronous retries, or a
        # rerun after a Main replica died); 1 for a synchronous call
        self.attempt = 1
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the caller's deadline, never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, msg: object) -> None:
        """Write ``msg`` to the call's output as is (no newline added, as on Lambda)."""
        logs.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


class CognitoIdentity:
    """The caller's Amazon Cognito identity: none here, so both ids are None."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )
