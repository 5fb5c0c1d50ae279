"""gunicorn's own output as JSON: its access log and the error answers it writes itself.

* ``JsonAccessLogger`` (``logger_class`` in gunicorn.conf.py): one JSON object per request
  with time, remote, method, path, status, bytes, duration_ms, model_version (from the
  ``X-Model-Version`` response header of ``/predict``), pid. Request headers are not logged,
  so the reload token never is.
* ``JsonErrorSyncWorker`` (``worker_class``): gunicorn answers a request it cannot parse (a
  malformed request line, a header too large, an invalid header...) itself, before Django
  sees it, with a hardcoded HTML page. gunicorn has no setting for that page
  (benoitc/gunicorn#993); its documented extension point is a worker class. This one is
  gunicorn's sync worker whose ``handle_error`` keeps all of gunicorn's decisions (status,
  reason, message, the warning and the access-log line) and writes the page as
  ``{"detail": ...}`` with ``nosniff``: during that call, ``gunicorn.util.write_error`` (the
  one function that formats the page) is this module's ``write_json_error``. gunicorn is
  pinned (26.2) and ``test_hardening.py`` sends such requests to a real server.
"""

from __future__ import annotations

import json
import os
import traceback
from datetime import UTC, datetime

from gunicorn import glogging, util
from gunicorn.workers.sync import SyncWorker

ERROR_MESSAGE_MAX = 300  # characters of gunicorn's message (it may quote the request line)


class JsonAccessLogger(glogging.Logger):
    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        try:
            status = resp.status
            if isinstance(status, str):
                status = status.split(None, 1)[0]
            headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
            version = next((v for k, v in headers if k.lower() == "x-model-version"), None)
            entry = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "remote": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": int(status),
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "model_version": version,
                "pid": os.getpid(),
            }
            self.access_log.info(json.dumps(entry))
        except Exception:
            self.error(traceback.format_exc())


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with a JSON body: same status line, same connection close."""
    detail = reason.lower() + (f": {mesg[:ERROR_MESSAGE_MAX]}" if mesg else "")
    body = json.dumps({"detail": detail}).encode("ascii")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorSyncWorker(SyncWorker):
    """gunicorn's ``sync`` worker; the answers gunicorn writes itself are JSON (see above)."""

    def handle_error(self, req, client, addr, exc):
        html_page = util.write_error
        util.write_error = write_json_error  # one thread serves requests in a sync worker
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            util.write_error = html_page
