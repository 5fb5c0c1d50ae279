"""WSGI entry of the floor (``floor_app.wsgi:application`` with ``bench`` on the path)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floor_app.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
