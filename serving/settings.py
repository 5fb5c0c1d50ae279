"""Django settings of the prediction service: production defaults, everything from the environment.

* ``DEBUG`` is off unless ``SERVING_DEBUG=1``.
* ``SECRET_KEY`` comes from ``DJANGO_SECRET_KEY``. Unset, each process makes a random key
  and logs a warning: the service has no sessions, cookies, CSRF forms or signed data, so
  nothing depends on the key staying the same across processes or restarts.
* ``ALLOWED_HOSTS`` from ``SERVING_ALLOWED_HOSTS`` (comma-separated, default
  ``localhost,127.0.0.1``), enforced by ``serving.middleware`` (Django checks the Host header
  only when something asks for it).
* No database (``DATABASES = {}``), no auth/sessions/admin apps; one small middleware.
* ``DATA_UPLOAD_MAX_MEMORY_SIZE`` = ``SERVING_MAX_BODY_BYTES`` (default 8 MiB): a larger body
  is refused with 413 before it is read.
* Logging: one JSON object per line (``serving.logs``); Django's security events (a bad Host
  header, a ``../`` path) are one WARNING line per kind and minute at most, without paths.
"""

from __future__ import annotations

import secrets

from serving import config

DEBUG = config.debug()

SECRET_KEY = config.secret_key() or ""
SECRET_KEY_GENERATED = not SECRET_KEY
if SECRET_KEY_GENERATED:
    SECRET_KEY = secrets.token_urlsafe(50)

ALLOWED_HOSTS = config.allowed_hosts()

INSTALLED_APPS = ["ninja"]  # ninja: the Swagger UI template and its bundled static files
MIDDLEWARE = ["serving.middleware.HostAndHeadersMiddleware"]
ROOT_URLCONF = "serving.urls"
WSGI_APPLICATION = "serving.wsgi.application"
DATABASES: dict = {}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
STATIC_URL = "/static/"

DATA_UPLOAD_MAX_MEMORY_SIZE = config.max_body_bytes()
SECURITY_LOG_SECONDS = 60  # at most one line per kind of refused suspicious request per process
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
APPEND_SLASH = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "serving.logs.JsonFormatter"},
        "json_brief": {"()": "serving.logs.JsonFormatter", "tracebacks": False},
    },
    "filters": {
        "skip_expected_503": {"()": "serving.logs.SkipExpected503"},
        "throttle_security": {"()": "serving.logs.ThrottleSecurityLog", "seconds": SECURITY_LOG_SECONDS},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json"},
        "stderr_security": {
            "class": "logging.StreamHandler",
            "formatter": "json_brief",
            "filters": ["throttle_security"],
        },
    },
    "loggers": {
        "serving": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        # 4xx answers are the client's business (and the access log has them); 5xx are ours.
        "django.request": {
            "handlers": ["stderr"],
            "level": "ERROR",
            "filters": ["skip_expected_503"],
            "propagate": False,
        },
        # a bad Host header or a ../ path: a WARNING line a minute at most, no paths, no stack
        "django.security": {"handlers": ["stderr_security"], "level": "WARNING", "propagate": False},
        "mlops_core": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
