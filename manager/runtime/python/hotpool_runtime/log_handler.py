"""The root logger's handler, formatted as Lambda's Python runtime formats it.

Imported only once the function has imported ``logging`` (see ``logs``). The shapes follow
awslambdaric (``bootstrap.LambdaLoggerHandler``, ``LambdaLoggerFilter`` and
``lambda_runtime_log_utils.JsonFormatter``):

text  ``[LEVEL]\\t2024-05-01T12:00:00.123Z\\t<request id>\\t<message>\\n`` (+ a traceback)
json  ``{"timestamp", "level", "message", "logger", "requestId"}`` and, for an exception,
      ``"stackTrace"``, ``"errorType"``, ``"errorMessage"``, ``"location"``; fields given
      with ``extra=`` join them; fields that are None are left out.

One difference: Lambda frames each line for CloudWatch; here lines share the call's stdout,
so a line always ends with a newline (a logged traceback included).
"""

from __future__ import annotations

import json
import logging
import time
import traceback

from . import logs

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from .logs import LogSettings

TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# LogRecord attributes that are not "extra" fields (awslambdaric's _RESERVED_FIELDS)
RECORD_FIELDS = frozenset(
    {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
        "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
        "relativeCreated", "thread", "threadName", "processName", "process",
        "aws_request_id", "tenant_id", "_frame_type",
    }
)  # fmt: skip
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


class LambdaLogHandler(logging.Handler):
    """Writes each record to the current ``sys.stdout``, so it lands in the running call's
    (or /init's) captured output."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            logs.write(line if line.endswith("\n") else line + "\n")
        except Exception:
            self.handleError(record)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the running call's request id ("" during /init)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = logs.settings.request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with Lambda's field names."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{time.strftime(DATE_FORMAT, time.gmtime(record.created))}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        # Lambda rounds custom levels down to the standard ones (e.g. 25 -> INFO)
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        exc_info = record.exc_info
        result = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc_info[2]) if exc_info else None,
            "errorType": exc_info[0].__name__ if exc_info and exc_info[0] else None,
            "errorMessage": str(exc_info[1]) if exc_info else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}"
            if exc_info
            else None,
        }
        result.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in RECORD_FIELDS and key not in result
        )
        return _encode({k: v for k, v in result.items() if v is not None}) + "\n"


def install(root: logging.Logger, settings: LogSettings) -> None:
    """Put the Lambda handler on ``root`` (once) and set its level if one is configured."""
    if any(isinstance(h, LambdaLogHandler) for h in root.handlers):
        return
    # awslambdaric makes every formatter, the user's too, print UTC times
    logging.Formatter.converter = time.gmtime
    handler = LambdaLogHandler()
    if settings.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, DATE_FORMAT))
    handler.addFilter(RequestIdFilter())
    if settings.level in logging._nameToLevel:  # as awslambdaric checks it
        root.setLevel(settings.level)
    root.addHandler(handler)
