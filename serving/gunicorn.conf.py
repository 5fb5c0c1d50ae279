"""gunicorn settings of the prediction service: ``gunicorn -c serving/gunicorn.conf.py``.

The app is ``serving.wsgi:application`` (set below). Environment:

* ``SERVING_PORT`` (8000) and ``SERVING_HOST`` (127.0.0.1; 0.0.0.0 in a container): where
  to listen.
* ``SERVING_WORKERS`` (number of CPUs): worker processes. Scoring is CPU-bound Python, so
  one worker per core; more only adds memory and context switches.
* ``SERVING_TIMEOUT`` (30): seconds one request may take before gunicorn restarts the worker
  (a ``/reload`` waits for the registry and the other workers: keep it above
  ``SERVING_RELOAD_WAIT_SECONDS`` plus the registry's timeouts).
* ``SERVING_ACCESS_LOG`` (1): 0 turns the JSON access log on stdout off.

Worker class ``sync`` (``serving.gunicorn_logging.JsonErrorSyncWorker``: the sync worker,
whose own error answers, e.g. to a malformed request line, are JSON like the service's): one
request at a time per worker, no keep-alive (put a proxy in front for slow clients, as
gunicorn's docs advise). gthread was measured too: it lost throughput
at 64 connections, and in gunicorn 26.2 a worker that had served keep-alive clients waited
the whole graceful timeout (30 s) on SIGTERM.

Each worker loads the model in its own thread (``preload_app`` stays off: threads do not
survive a fork) and accepts connections only once that first load has finished
(``post_worker_init`` below): after ``/ready`` answers 200, no request meets a worker still
loading. While it waits, the worker tells the master it is alive, so a load slower than
``SERVING_TIMEOUT`` delays readiness instead of getting the worker killed. The master makes
a private folder (``SERVING_STATE_DIR``) where the workers agree on the model they serve
(``serving/sync.py``) and removes it on exit. gunicorn's control socket (new in 25.1, on by default at
``~/.gunicorn/gunicorn.ctl``) is off: two services on one machine would share that path, and
nothing here uses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# gunicorn reads this as a plain file, in the master: no Django or model imports at the top.

wsgi_app = "serving.wsgi:application"
bind = f"{os.environ.get('SERVING_HOST') or '127.0.0.1'}:{os.environ.get('SERVING_PORT') or 8000}"
workers = int(os.environ.get("SERVING_WORKERS") or os.cpu_count() or 1)
# gunicorn's sync worker whose own error answers (bad request line, headers too large) are JSON
worker_class = "serving.gunicorn_logging.JsonErrorSyncWorker"
timeout = int(os.environ.get("SERVING_TIMEOUT") or 30)
graceful_timeout = 30
backlog = 2048
preload_app = False
control_socket_disable = True
proc_name = "mlops-serving"

errorlog = "-"
loglevel = os.environ.get("SERVING_LOG_LEVEL") or "info"
accesslog = None if os.environ.get("SERVING_ACCESS_LOG") == "0" else "-"
logger_class = "serving.gunicorn_logging.JsonAccessLogger"  # one JSON object per request

_OWN_STATE_DIR = "SERVING_OWN_STATE_DIR"


def on_starting(server):
    """Master, before any worker: check the settings, make the workers' shared folder."""
    from serving import config

    config.max_batch_rows()
    config.max_body_bytes()
    config.poll_seconds()
    config.reload_wait_seconds()
    folder = tempfile.mkdtemp(prefix="mlops-serving-")
    os.environ[config.STATE_DIR_VARIABLE] = folder
    os.environ[_OWN_STATE_DIR] = folder


def post_worker_init(worker):
    """Worker, app imported, before it accepts a connection: wait for its model."""
    from serving.runtime import SERVICE

    SERVICE.wait_loaded(heartbeat=worker.notify, alive=lambda: worker.alive)


def worker_exit(server, worker):
    """Worker, on its way out: stop the model thread, leave the workers' list."""
    from serving.runtime import SERVICE

    SERVICE.stop()


def on_exit(server):
    folder = os.environ.get(_OWN_STATE_DIR)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
