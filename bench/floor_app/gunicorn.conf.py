"""The floor's gunicorn settings: the service's (serving/gunicorn.conf.py), minus its hooks.

Same bind variables, workers, worker class, backlog and timeouts; a
different app, no access log (the floor does no logging) and none of the service's hooks.
"""

import runpy
from pathlib import Path

_service = runpy.run_path(str(Path(__file__).resolve().parents[2] / "serving" / "gunicorn.conf.py"))
_SHARED = (
    "bind",
    "workers",
    "worker_class",
    "timeout",
    "graceful_timeout",
    "backlog",
    "preload_app",
    "control_socket_disable",
    "errorlog",
    "loglevel",
)
globals().update({name: _service[name] for name in _SHARED})
wsgi_app = "floor_app.wsgi:application"
accesslog = None
proc_name = "mlops-serving-floor"
