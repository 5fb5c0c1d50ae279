"""The WSGI application (what gunicorn serves): Django, plus the model thread.

``serving/gunicorn.conf.py`` keeps ``preload_app`` off, so each worker imports this module
after the fork and starts its own model thread (threads do not survive a fork); its
``post_worker_init`` then holds the worker back until the first load has finished.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "serving.settings")

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from serving.runtime import SERVICE

application = get_wsgi_application()

if settings.SECRET_KEY_GENERATED:
    logging.getLogger("serving").warning(
        "DJANGO_SECRET_KEY is not set: using a random key for this process. The service uses "
        "no sessions, cookies, CSRF or signing, so nothing depends on it; set it to silence this."
    )
SERVICE.start()
