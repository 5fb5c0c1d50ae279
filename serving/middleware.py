"""The service's one middleware: enforce ALLOWED_HOSTS, mark responses, give their length.

* Django validates the Host header only when something calls ``request.get_host()``
  (CommonMiddleware, CSRF); this service runs neither, so this does it: a request for a
  host not in ``SERVING_ALLOWED_HOSTS`` gets a 400 JSON answer (``serving.views``).
* ``X-Content-Type-Options: nosniff`` on every answer.
* ``Content-Length`` (Django leaves it out; gunicorn would then send the body chunked).
"""

from __future__ import annotations


class HostAndHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.get_host()  # raises DisallowedHost -> 400
        response = self.get_response(request)
        response["X-Content-Type-Options"] = "nosniff"
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
