"""``--runtime provided``: the relay between hotpool's /init and /invoke and a custom runtime.

A custom runtime is any program that loops over the Lambda Runtime API (``runtime_api``):
GET .../invocation/next for an event, POST .../{id}/response or .../{id}/error with the outcome.
/init unpacks the code, starts ``<code dir>/bootstrap`` with Lambda's environment and answers
once it polls /next for the first time; /invoke hands one event to that poll and answers with
what the runtime posted, in the Python runtime's answer shape; a response the runtime streams
is relayed as it comes, as a streamed Python handler's is (``relay_stream``). With
``external`` the runtime is started by someone else (a container image's entry point): /init
starts nothing and waits for its first poll, which may have come before.

The runtime dying ends the container: a call under way fails with Lambda's Runtime.ExitError,
then the relay exits (the Manager sees the container end and removes it), as it does at once
when the runtime dies between calls. Timeouts are Main's: it removes a container whose call
ran past its deadline.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time

from . import child, environment, reaping
from .config import FunctionConfig, field
from .errors import RequestError, bad_request
from .http11 import StreamingBody, parse_json
from .invoke import _deadline_ms, _uuid4
from .layers import install_layers
from .loader import custom_bootstrap, unpack_code
from .outcomes import (
    LastAnswer,
    event_headers,
    exit_error,
    function_error,
    invalid_state,
    plain_error,
    result_of,
)
from .output_intake import OutputIntake, external_output
from .relay_stream import ACCEPTED, Handoff, StreamedResponse, invalid_mode
from .runtime_api import MAX_PAYLOAD_BYTES, RESPONSE_MODE_HEADER, STREAMING, error_answer

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from collections.abc import Mapping
    from typing import Any

    from .http11 import Request, Routes
    from .runtime_api import Answer

API_PREFIX = "/2018-06-01/runtime/"
# how long /init waits for the runtime's first poll: Lambda's limit on its init phase
INIT_TIMEOUT_S = 10.0
REQUEST_ID_HEADER = "x-hotpool-request-id"
DEADLINE_HEADER = "x-hotpool-deadline-ms"
TOO_LARGE = f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."


class Call:
    """One event handed to the runtime, and what it answered (``outcome``)."""

    def __init__(self, request_id: str, event: bytes, headers: dict[str, str]) -> None:
        self.request_id = request_id
        self.event = event
        self.headers = headers
        self.outcome: dict[str, Any] | None = None  # {"status": ..., "result" | "error": ...}
        self.stream: Handoff | None = None  # the runtime streams its response instead


class Relay:
    """The /healthz, /init and /invoke routes of a custom runtime's container."""

    def __init__(self, code_dir: str, opt_dir: str, *, api_address: str, external: bool) -> None:
        self.code_dir = os.path.realpath(code_dir)
        self.opt_dir = opt_dir
        self.api_address = api_address  # host:port, AWS_LAMBDA_RUNTIME_API
        self.external = external
        self.runtime_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._cond = threading.Condition()
        self._config: FunctionConfig | None = None
        self._initialized = False
        self._polled = False  # the runtime asked for its first event: its init is done
        self._init_error: dict[str, Any] | None = None
        self._exited: str | None = None  # how the runtime ended, once it has
        self._pending: Call | None = None  # waiting for the runtime's /next
        self._current: Call | None = None  # handed out, waiting for its outcome
        self._cut_id = ""  # the call whose stream was cut: its late outcome is let be
        self._polls = 0  # polls of /next waiting for an event
        self._pid = 0
        self._output: child.ChildOutput | None = None
        self._output_fds = (-1, -1)
        if external:  # an image's output arrives through Docker and the Manager (/output)
            self._output, self._output_fds = external_output()
        self._init_lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        self._closing = False

    def routes(self) -> Routes:
        """hotpool's routes: path -> (method, handler)."""
        routes: dict[str, tuple[str, Any]] = {
            "/healthz": ("GET", self.health),
            "/init": ("POST", self.init),
            "/invoke": ("POST", self.invoke),
        }
        if self.external:
            routes["/output"] = (
                "POST",
                lambda body, headers, started: OutputIntake(self._output_fds),
            )
        return routes

    def health(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """The /healthz body."""
        config = self._config if self._initialized else None
        return {
            "status": "ok" if self._exited is None else "exited",
            "initialized": config is not None,
            "busy": self._invoke_lock.locked(),
            "function_name": config.function_name if config else None,
            "function_version": config.function_version if config else None,
        }

    # --- /init -----------------------------------------------------------------------------

    def init(self, body: bytes, headers: Mapping[str, str], started: float) -> dict[str, Any]:
        """Unpack the code, start the runtime and wait for its first poll of /next."""
        with self._init_lock:
            if self._initialized:
                raise RequestError(409, "AlreadyInitialized", "container is already initialised")
            if self._pid or self._exited:  # an earlier /init started a runtime that failed
                raise RequestError(409, "InitFailed", "this container's runtime failed to start")
            began = time.perf_counter()
            request = parse_json(body)
            if not isinstance(request, dict):
                raise bad_request("init body must be a JSON object")
            config = FunctionConfig(request, free_handler=True)
            # an image's runtime brings its code: the relay's /init may come without any
            code = (
                field(request, "code_zip_b64", str, "")
                if self.external
                else field(request, "code_zip_b64", str)
            )
            if code:
                unpack_code(code, self.code_dir, keep_modes=True)
            install_layers(request, self.opt_dir, self.code_dir, keep_modes=True)
            self._config = config
            if not self.external:
                self._spawn(config)
            failure = self._wait_for_first_poll()
            captured = self.captured()
            if failure is not None:
                self._shut_runtime()
                raise RequestError(
                    422,
                    failure["type"],
                    failure["message"],
                    traceback=failure.get("traceback", ""),
                    **captured,
                )
            self._initialized = True
            return {"init_ms": (time.perf_counter() - began) * 1000, **captured}

    def _spawn(self, config: FunctionConfig) -> None:
        bootstrap = custom_bootstrap(self.code_dir, self.opt_dir)
        os.chdir(self.code_dir)  # Lambda starts the bootstrap in LAMBDA_TASK_ROOT
        child.lift_address_space_limit()
        try:
            env = environment.custom_runtime(
                config, code_dir=self.code_dir, runtime_dir=self.runtime_dir,
                opt_dir=self.opt_dir, api_address=self.api_address,
            )  # fmt: skip
            self._pid, self._output = child.start([bootstrap], env, config.log_limit_bytes)
        except OSError as exc:  # not a program: no #! line, a binary for another machine
            raise RequestError(
                422,
                "Runtime.InvalidEntrypoint",
                f"the bootstrap could not be started: {exc}",
                traceback="",
                stdout="",
                stderr="",
            ) from exc
        child.watch(self._pid, self._on_exit)

    def _wait_for_first_poll(self) -> dict[str, Any] | None:
        """None once the runtime polled /next; else why its init failed."""
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._polled or self._init_error or self._exited, INIT_TIMEOUT_S
            )
            if self._init_error is not None:
                return self._init_error
            if self._exited is not None:
                return {
                    "type": "Runtime.ExitError",
                    "message": f"Runtime exited with error: {self._exited}",
                }
            if not done:
                return {
                    "type": "Runtime.InitTimeout",
                    "message": f"the runtime did not poll {API_PREFIX}invocation/next "
                    f"within {INIT_TIMEOUT_S:g} s of starting",
                }
            return None

    # --- /invoke ---------------------------------------------------------------------------

    def invoke(
        self, body: bytes, headers: Mapping[str, str], started: float
    ) -> bytes | StreamingBody:
        """Hand one event to the runtime and answer with its outcome, one call at a time."""
        config = self._config
        if not self._initialized or config is None:
            raise RequestError(503, "NotInitialized", "container has not been initialised")
        if not self._invoke_lock.acquire(blocking=False):
            raise RequestError(409, "Busy", "container is already running an invocation")
        try:
            answer = self._invoke(config, body, headers, started)
        except BaseException:
            self._invoke_lock.release()
            raise
        if isinstance(answer, StreamingBody):  # the call lasts until it is sent
            answer.on_end.insert(0, self._invoke_lock.release)
        else:
            self._invoke_lock.release()
        return answer

    def _invoke(
        self, config: FunctionConfig, body: bytes, headers: Mapping[str, str], started: float
    ) -> bytes | StreamingBody:
        if body:
            parse_json(body)  # refused as the Python runtime refuses it: 400, nothing run
        deadline_ms = _deadline_ms(headers.get(DEADLINE_HEADER), config.timeout_s)
        request_id = headers.get(REQUEST_ID_HEADER) or _uuid4()
        deadline_epoch_ms = int((time.time() + started - time.monotonic()) * 1000 + deadline_ms)
        call = Call(
            request_id, body or b"null", event_headers(config, request_id, deadline_epoch_ms)
        )
        if self._output is not None:
            self._output.begin(config.log_limit_bytes)
        began = time.perf_counter()
        with self._cond:
            self._pending = call
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: call.outcome is not None or call.stream or self._exited is not None
            )
            self._pending = None
            if call.stream is not None:  # relayed as it comes, on this thread
                return StreamedResponse(self, call.stream, request_id, began)
            if call.outcome is None:  # the runtime died under the call
                self._current = None
                call.outcome = {"status": "error", "error": exit_error(request_id, self._exited)}
        duration_ms = (time.perf_counter() - began) * 1000
        answer = {
            **call.outcome,
            "duration_ms": duration_ms,
            "peak_memory_mb": self.peak_memory_mb(),
        }
        encoded = json.dumps({**answer, **self.captured()}).encode()
        if self._exited is not None:
            return LastAnswer(encoded, self.shut_down)
        return encoded

    def peak_memory_mb(self) -> float:
        """The peak RSS of the runtime (or of this process, with an external one)."""
        if self._pid:
            return child.peak_memory_mb(self._pid)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # --- the Runtime API -------------------------------------------------------------------

    def handle_api(self, request: Request) -> Answer:
        """One Runtime API request (``runtime_api.serve`` calls it on its own thread)."""
        path = request.target.split("?", 1)[0]
        if not path.startswith(API_PREFIX):
            return error_answer(404, "NotFound", f"no such path: {path}")
        route = path[len(API_PREFIX) :].split("/")
        if route == ["invocation", "next"]:
            return self._method(request, "GET") or self._next()
        if route == ["init", "error"]:
            return self._method(request, "POST") or self._post_initerror(request)
        if len(route) == 3 and route[0] == "invocation" and route[2] in ("response", "error"):
            return self._method(request, "POST") or self._post_outcome(request, route[1], route[2])
        return error_answer(404, "NotFound", f"no such path: {path}")

    def _method(self, request: Request, method: str) -> Answer | None:
        if request.method != method:
            return error_answer(405, "MethodNotAllowed", f"{request.target} only accepts {method}")
        return None

    def _next(self) -> Answer:
        with self._cond:
            if self._current is not None:
                return invalid_state("an invocation is under way: post its response or error first")
            self._polled = True
            self._polls += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._pending is not None and self._current is None)
            self._polls -= 1
            call, self._pending = self._pending, None
            self._current = call
            return 200, call.headers, call.event

    def _post_outcome(self, request: Request, request_id: str, kind: str) -> Answer:
        with self._cond:
            call = self._current
            if call is None and request_id == self._cut_id:  # late: its stream was cut
                return ACCEPTED
            if call is None:
                return invalid_state(f"no invocation is waiting for a {kind}")
            if request_id != call.request_id:
                return error_answer(400, "InvalidRequestID", "Invalid request ID")
            answer = ACCEPTED
            mode = request.headers.get(RESPONSE_MODE_HEADER) if kind == "response" else None
            if mode == STREAMING:  # read and relayed by /invoke's answer, then answered
                call.stream = handoff = Handoff(request)
                self._cond.notify_all()
                self._cond.wait_for(lambda: handoff.finished)
                return handoff.answer
            if mode is not None:  # as Lambda: refused, and the call fails
                answer, failure = invalid_mode(mode)
                call.outcome = {"status": "error", "error": failure}
            elif request.too_large:  # as Lambda: refused, and the call fails
                answer = error_answer(413, "RequestEntityTooLarge", TOO_LARGE)
                failure = plain_error("Function.ResponseSizeTooLarge", TOO_LARGE)
                call.outcome = {"status": "error", "error": failure}
            elif kind == "response":
                call.outcome = {"status": "success", "result": result_of(request.body)}
            else:
                call.outcome = {"status": "error", "error": function_error(request)}
            self._current = None
            self._cond.notify_all()
            return answer

    def _post_initerror(self, request: Request) -> Answer:
        with self._cond:
            if self._polled:
                return invalid_state("the runtime's init is over: it polled for an event already")
            error = function_error(request)
            self._init_error = {
                "type": error["type"],
                "message": error["message"],
                "traceback": error["traceback"],
            }
            self._cond.notify_all()
            return ACCEPTED

    # --- a streamed response (``relay_stream``) ------------------------------------------

    def stream_ended(self, handoff: Handoff, answer: Answer | None, leftover: bytes) -> None:
        """The runtime's streamed body was read (or cut: ``answer`` None): the call is over
        for the runtime, and its POST is answered."""
        with self._cond:
            if answer is None and self._current is not None:
                self._cut_id = self._current.request_id
            self._current = None
            handoff.request.reader.attach(leftover)
            handoff.request.body_unread = False
            handoff.answer, handoff.finished = answer, True
            self._cond.notify_all()

    def wait_for_poll(self, timeout_s: float) -> bool:
        """Whether the runtime polls /next within ``timeout_s`` (it can take another call)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._polls > 0 or self._exited, timeout_s)

    def exit_within(self, timeout_s: float) -> str | None:
        """How the runtime ended, if it does within ``timeout_s``."""
        with self._cond:
            self._cond.wait_for(lambda: self._exited, timeout_s)
            return self._exited

    def captured(self) -> dict[str, str]:
        """The call's output, its capture ended."""
        return self._output.end() if self._output else {"stdout": "", "stderr": ""}

    def runtime_exited(self) -> bool:
        return self._exited is not None

    # --- the runtime's end -----------------------------------------------------------------

    def _on_exit(self, how: str) -> None:
        if self._closing:  # killed by ``close``: the container is ending anyway
            return
        with self._cond:
            self._exited = how
            idle = self._initialized and not self._invoke_lock.locked()
            self._cond.notify_all()
        if idle:  # between calls: nothing to answer, the container is over
            self.shut_down()

    def _shut_runtime(self) -> None:
        """Kill the runtime and all it started (its init failed)."""
        reaping.kill_leftovers()

    def shut_down(self) -> None:
        """Kill what is left and end this process (``__main__`` turns SIGTERM into exit 0)."""
        if not self._closing:
            self.close()
            os.kill(os.getpid(), signal.SIGTERM)

    def close(self) -> None:
        """Kill the runtime and everything it started: the container is ending."""
        self._closing = True
        reaping.kill_leftovers()
