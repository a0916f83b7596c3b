"""hotpool's Python runtime: a stdlib-only HTTP server that runs one user handler.

GET  /healthz  -> 200 {"status": "ok", "initialized", "busy", "function_name", "function_version"}
POST /init     {"function_name": str, "function_version": int, "handler": "pkg.mod.func" or
                "dir/pkg.mod.func", "memory_mb": int, "timeout_s": number, "env": {str: str},
                "code_zip_b64": str, "log_limit_bytes": int (default 65536),
                "region": str (default "us-east-1"), "log_format": "text"|"json",
                "log_level": ""|"TRACE"|"DEBUG"|"INFO"|"WARN"|"ERROR"|"FATAL"}
               -> 200 {"init_ms", "stdout", "stderr"}: stdout/stderr are what the module
                  printed and logged at import (Lambda's INIT output)
               -> 400 malformed request or unsafe/corrupt zip; 409 AlreadyInitialized;
                  422 {"error": {"type", "message", "traceback"}, "stdout", "stderr"} when the
                  import raises (type = exception class) or the handler is missing
                  (HandlerNotFound) or not callable (HandlerNotCallable); still uninitialised.
POST /invoke   headers X-Hotpool-Request-Id (default uuid4), X-Hotpool-Deadline-Ms (remaining
               budget, default timeout_s * 1000); body = event JSON (empty -> null)
               -> 200 {"status": "success", "result"} or {"status": "error",
                  "error": {"type", "message", "traceback", "stack_trace"}}, both plus
                  "duration_ms",
                  "peak_memory_mb", "stdout", "stderr"; unserialisable result -> error
                  Runtime.MarshalError, as Lambda names it.
               -> a handler returning a generator or an async generator (or a dict whose
                  "body" is one: the web form) streams instead: 200, Transfer-Encoding:
                  chunked, Content-Type application/x-hotpool-stream, one frame a chunk:
                  H head (web form), d/D item parts, E summary (``stream``).
               -> 400 body not JSON / bad deadline; 409 Busy (one invocation at a time, a
                  stream until its generator is done; refused, never queued); 503
                  NotInitialized.
Other errors are {"error": {"type", "message"}}: 404 NotFound, 405 MethodNotAllowed, and the
HTTP-level ones of ``http11`` (BadRequest, RequestHeaderFieldsTooLarge, LengthRequired,
PayloadTooLarge).
The handler is called as handler(event, context) with an AWS-Lambda-like context; awaitables
run on one persistent event loop, which sync handlers also see once asyncio is imported.
Before the module is imported, /init sets Lambda's reserved environment (``environment``) and
arranges for Lambda's root log handler (``logs``, ``log_handler``).

Modules: ``http11`` the raw-socket HTTP/1.1 server; ``runtime`` the three routes; ``config``
the /init fields; ``loader`` the zip and the handler import; ``invoke`` one call with its
``context`` and ``capture``d output; ``stream`` the chunked answer of a generator;
``reaping`` kills what a call leaves running (before and
after each /invoke); ``errors`` how failures are reported; ``environment`` Lambda's
variables; ``logs`` and ``log_handler`` Lambda's log lines. The entry point is
the ``__main__.py`` beside this package.

With ``--runtime provided`` the same three routes and answers relay to a custom runtime
instead (``relay``): /init also takes a handler of any text (``_HANDLER``) and answers 422
Runtime.InvalidEntrypoint (no runnable ``bootstrap``), Runtime.ExitError (it exited first),
Runtime.InitTimeout (no poll within 10 s) or the type the runtime posted to /init/error; an
/invoke whose runtime dies answers Runtime.ExitError, then the process exits. ``runtime_api``
serves the Lambda Runtime API to it, only to the runtime it started and its descendants
(``peers``: other tenants share 127.0.0.1 on the process backend); ``outcomes`` turns what the
runtime posts into answers; ``child`` starts it and captures its output. The Python runtime
imports none of these.

Every idle container pays for each module imported here, so the imports are few: no
http.server, asyncio, typing or pathlib; zipfile, base64 and traceback only when used. Nothing
outside the standard library, and nothing of ``hotpool.*``: this runs on any python3.
"""
