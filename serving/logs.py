"""One JSON object per log line: time, level, logger, message, pid (and the exception, if any).

Also the two filters of ``LOGGING`` (``serving/settings.py``): ``SkipExpected503`` and
``ThrottleSecurityLog`` (a bad Host header: one WARNING line a minute at most, no paths).
"""

from __future__ import annotations

import json
import logging
import os
import time
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


class ThrottleSecurityLog(logging.Filter):
    """Django's security events (a Host header not in ALLOWED_HOSTS, a ``../`` path): one
    WARNING line per kind at most every ``seconds`` per process, without the exception's
    message or stack (Django's names absolute paths of the server), counting the others.

    Each is a client's doing, answered 400; anyone can send thousands a second, so logging
    each (Django logs them as ERRORs) would flood the log. The line that is written says how
    many of that kind were refused since the last one.
    """

    def __init__(self, seconds: float = 60.0):
        super().__init__()
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        self._next: dict[str, float] = {}  # kind -> monotonic time the next line may be written
        self._skipped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.name.rsplit(".", 1)[-1]  # django.security.DisallowedHost -> DisallowedHost
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        skipped = self._skipped.pop(kind, 0)
        self._next[kind] = now + self.seconds
        if kind == "DisallowedHost":
            text = "refused a request (400): its Host header is not in SERVING_ALLOWED_HOSTS"
            host = _meta(record, "HTTP_HOST")
            if host is not None:
                text += f" (Host: {host[:80]!r})"
        else:
            text = f"refused a suspicious request (400, {kind})"
        if skipped:
            text += f"; {skipped} more like it since the last such line (at most one a {self.seconds:g} s)"
        record.msg, record.args = text, ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _meta(record: logging.LogRecord, key: str) -> str | None:
    request = getattr(record, "request", None)
    meta = getattr(request, "META", None)
    return meta.get(key) if isinstance(meta, dict) else None
