"""The floor's gunicorn settings: the service's (serving/gunicorn.conf.py), minus its hooks.

Same bind variables, workers, backlog and timeouts; a different app, no access log (the
floor does no logging) and none of the service's hooks. The worker is gunicorn's plain
``sync``: the service's ``JsonErrorSyncWorker`` is that same worker, differing only in the
error pages gunicorn writes itself (never on the benchmark's path), and its module cannot be
imported here (``--pythonpath bench`` makes ``serving`` mean ``bench/serving.py``).
"""

import runpy
from pathlib import Path

_service = runpy.run_path(str(Path(__file__).resolve().parents[2] / "serving" / "gunicorn.conf.py"))
_SHARED = (
    "bind",
    "workers",
    "timeout",
    "graceful_timeout",
    "backlog",
    "preload_app",
    "control_socket_disable",
    "errorlog",
    "loglevel",
)
globals().update({name: _service[name] for name in _SHARED})
worker_class = "sync"
wsgi_app = "floor_app.wsgi:application"
accesslog = None
proc_name = "mlops-serving-floor"
