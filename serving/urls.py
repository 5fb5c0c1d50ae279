"""URLs: the ninja API at the root, Swagger UI's bundled files, JSON for Django's own errors."""

from __future__ import annotations

from pathlib import Path

import ninja
from django.urls import path, re_path
from django.views.static import serve

from serving.api import api

NINJA_STATIC = Path(ninja.__file__).parent / "static"

urlpatterns = [
    path("", api.urls),  # first: /predict is resolved on every request
    # /docs (Swagger UI) loads these; they ship with django-ninja, so no CDN is needed.
    re_path(r"^static/(?P<path>ninja/.+)$", serve, {"document_root": NINJA_STATIC}),
]

handler400 = "serving.views.bad_request"
handler403 = "serving.views.forbidden"
handler404 = "serving.views.not_found"
handler500 = "serving.views.server_error"
