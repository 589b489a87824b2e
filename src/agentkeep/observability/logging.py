"""Structured logging: one event per line, request-scoped context, no stray formatting, and
no secret: every value of every event, ours or a library's, passes the shape-based redaction.

Volume is part of the contract: at INFO a request writes one access line (ours: uvicorn's
access log stays off in every process, whoever configured logging last) and a run at most one
line (`run_ended`). Libraries that log each HTTP request or queue job at INFO are held at
WARNING unless LOG_LEVEL is DEBUG, which shows everything.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from agentkeep.security.secret_values import redact_secret_values

# Loggers that write a line per HTTP request (the model clients' transports) or per queue job
# (procrastinate's "Starting job" / "Job ... ended"); their warnings and errors still show.
PER_REQUEST_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "procrastinate.worker")
# Replaced by our own `agentkeep.access` event (observability/middleware.py).
UVICORN_ACCESS = "uvicorn.access"


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_secret_values(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def redact_secrets(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Replace secret-shaped values (tokens, API keys, provider keys) anywhere in an event.

    It runs after the traceback is formatted, so a token in an exception message is caught
    too; other values (numbers, ids) are left as they are.
    """
    return {key: _redacted(value) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Route stdlib and structlog output through one structlog renderer.

    Logging is process-wide by nature; calling this again simply reconfigures it.
    """
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: rich's pretty ones print local variables, which can hold secrets.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # No handler and no propagation: uvicorn sees `hasHandlers()` false and does not even
    # format its access line. This runs in each `serve --workers N` process after uvicorn
    # has configured its own logging, so it must not turn the access log back on.
    access = logging.getLogger(UVICORN_ACCESS)
    access.handlers[:] = []
    access.propagate = False
    chatty_level = logging.NOTSET if root.getEffectiveLevel() <= logging.DEBUG else logging.WARNING
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(chatty_level)
