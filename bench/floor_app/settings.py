"""Minimal Django settings for the floor: no apps, no middleware, no database, no logging."""

import secrets

DEBUG = False
SECRET_KEY = secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list = []
MIDDLEWARE: list = []
ROOT_URLCONF = "floor_app.urls"
DATABASES: dict = {}
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024  # the service's default limit
USE_TZ = True
USE_I18N = False
LOGGING_CONFIG = None
