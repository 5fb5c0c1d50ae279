"""One JSON object per log line: time, level, logger, message, pid (and the exception, if any)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """``tracebacks=False`` keeps an exception's type and message but not its stack (for
    Django's security warnings about bad Host headers and paths: the client's doing)."""

    def __init__(self, *args, tracebacks: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info and self.tracebacks:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry)


class SkipExpected503(logging.Filter):
    """Drop Django's "Service Unavailable" lines: a 503 here is the documented "no model
    loaded" answer (logged once, with its reason, when loading failed), not a server fault;
    a readiness probe would otherwise log an error every few seconds."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503
