"""The one function this container serves, behind the /healthz, /init and /invoke routes."""

from __future__ import annotations

import os
import sys
import threading
import time

from . import environment, invoke, logs
from .capture import CapturedOutput
from .config import FunctionConfig, field
from .errors import RequestError, bad_request
from .http11 import StreamingBody, parse_json
from .layers import install_layers
from .loader import LoadedFunction, load_handler, unpack_code

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Mapping
    from typing import Any

    from .http11 import Routes


class Runtime:
    """The one function this container serves: initialised once, invoked one call at a time."""

    def __init__(self, code_dir: str, opt_dir: str = "", provided_dir: str = "") -> None:
        self.code_dir = os.path.realpath(code_dir)
        self.opt_dir = opt_dir
        # packages the runtime provides (boto3, botocore, ...), as Lambda's does
        self.provided_dir = provided_dir
        # the folder holding this package and __main__.py: Lambda's LAMBDA_RUNTIME_DIR
        self.runtime_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._loaded: LoadedFunction | None = None
        self._init_lock = threading.Lock()
        self._invoke_lock = threading.Lock()

    def routes(self) -> Routes:
        """The HTTP routes: path -> (method, handler)."""
        return {
            "/healthz": ("GET", self.health),
            "/init": ("POST", self.init),
            "/invoke": ("POST", self.invoke),
        }

    def health(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """The /healthz body."""
        loaded = self._loaded
        return {
            "status": "ok",
            "initialized": loaded is not None,
            "busy": self._invoke_lock.locked(),
            "function_name": loaded.config.function_name if loaded else None,
            "function_version": loaded.config.function_version if loaded else None,
        }

    def init(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """Unpack the code, import the handler module once and remember the handler."""
        with self._init_lock:
            if self._loaded is not None:
                raise RequestError(409, "AlreadyInitialized", "container is already initialised")
            began = time.perf_counter()
            request = parse_json(body)
            if not isinstance(request, dict):
                raise bad_request("init body must be a JSON object")
            config = FunctionConfig(request)
            unpack_code(field(request, "code_zip_b64", str), self.code_dir)
            log_stream = environment.log_stream_name(config)
            variables = environment.lambda_variables(
                config, code_dir=self.code_dir, runtime_dir=self.runtime_dir, log_stream=log_stream
            )
            environment.apply(config, variables)
            if self.code_dir not in sys.path:
                sys.path.insert(0, self.code_dir)
            install_layers(request, self.opt_dir, self.code_dir)
            # last: the function's own copy of boto3 (code dir, layers) wins, as on Lambda
            if self.provided_dir and self.provided_dir not in sys.path:
                sys.path.append(self.provided_dir)
            # Lambda code opens bundled files relative to its task directory.
            os.chdir(self.code_dir)
            with CapturedOutput(config.log_limit_bytes) as output:
                # inside the capture: the handler writes what the module logs at import there
                logs.configure(config.log_format, config.log_level)
                handler, failure = load_handler(config.handler)
            captured = output.logs()
            if failure is not None:
                raise RequestError(
                    422,
                    failure["type"],
                    failure["message"],
                    traceback=failure["traceback"],
                    **captured,
                )
            self._loaded = LoadedFunction(config, handler, log_stream)
            return {"init_ms": (time.perf_counter() - began) * 1000, **captured}

    def invoke(
        self, body: bytes, headers: Mapping[str, str], started: float
    ) -> bytes | StreamingBody:
        """Run the handler on one event, one invocation at a time (a streamed one until its
        generator is done, just before its last frame is sent); see ``invoke.invoke``."""
        loaded = self._loaded
        if loaded is None:
            raise RequestError(503, "NotInitialized", "container has not been initialised")
        if not self._invoke_lock.acquire(blocking=False):
            raise RequestError(409, "Busy", "container is already running an invocation")
        try:
            answer = invoke.invoke(loaded, body, headers, started)
        except BaseException:
            self._invoke_lock.release()
            raise
        if isinstance(answer, StreamingBody):
            # a streamed call runs on until its generator is done: still one call at a time
            answer.on_end.append(self._invoke_lock.release)
        else:
            self._invoke_lock.release()
        return answer
