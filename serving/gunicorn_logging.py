"""gunicorn's access log as one JSON object per request (``logger_class`` in gunicorn.conf.py).

Fields: time, remote, method, path, status, bytes, duration_ms, model_version (from the
``X-Model-Version`` response header of ``/predict``), pid. Request headers are not logged,
so the reload token never is.
"""

from __future__ import annotations

import json
import os
import traceback
from datetime import UTC, datetime

from gunicorn import glogging


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
