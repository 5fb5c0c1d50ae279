"""The service's one middleware: enforce ALLOWED_HOSTS, keep every answer JSON, mark responses.

* Django validates the Host header only when something calls ``request.get_host()``
  (CommonMiddleware, CSRF); this service runs neither, so this does it: a request for a
  host not in ``SERVING_ALLOWED_HOSTS`` gets a 400 JSON answer (``serving.views.bad_host``)
  and one WARNING on ``django.security.DisallowedHost``, which ``serving.logs`` writes at
  most once a minute per process, with a count of the others.
* An error answer that is not JSON (ninja's 405 is ``text/html``) becomes
  ``{"detail": ...}``, keeping ``Allow`` (``serving.views.as_json``); with DEBUG on, Django's
  debug pages are left alone.
* ``X-Content-Type-Options: nosniff`` on every answer.
* ``Content-Length`` (Django leaves it out; gunicorn would then send the body chunked).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import DisallowedHost

from serving import views

security_log = logging.getLogger("django.security.DisallowedHost")


def is_json(response) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip().lower() == "application/json"


class HostAndHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            request.get_host()
        except DisallowedHost as exc:
            security_log.warning(str(exc), extra={"status_code": 400, "request": request})
            response = views.bad_host(request, exc)
        else:
            response = self.get_response(request)
        if response.status_code >= 400 and not is_json(response) and not settings.DEBUG:
            response = views.as_json(request, response)
        response["X-Content-Type-Options"] = "nosniff"
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
