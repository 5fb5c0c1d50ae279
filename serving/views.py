"""JSON versions of Django's error pages (a JSON API never answers with HTML or a traceback).

``handler400/403/404/500`` in ``urls.py`` point here; ``bad_host`` answers a Host header not
in ``SERVING_ALLOWED_HOSTS`` (``serving.middleware``), and ``as_json`` rewrites any other
error answer that is not JSON yet (ninja's 405 is ``text/html`` "Method not allowed").
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import JsonResponse

# Headers an error answer keeps when its body is rewritten as JSON.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def bad_request(request, exception=None):
    # Django sends SuspiciousOperation here (a path outside the served folders, say).
    return JsonResponse({"detail": "bad request (refused as suspicious)"}, status=400)


def bad_host(request, exception=None):
    return JsonResponse(
        {"detail": "bad request: the Host header is not one this service answers to (SERVING_ALLOWED_HOSTS)"},
        status=400,
    )


def forbidden(request, exception=None):
    return JsonResponse({"detail": "forbidden"}, status=403)


def not_found(request, exception=None):
    return JsonResponse(
        {"detail": f"no such endpoint: {request.path[:200]} (see /docs or /openapi.json)"}, status=404
    )


def server_error(request):
    return JsonResponse({"detail": "internal error (logged by the service)"}, status=500)


def as_json(request, response):
    """``response`` (an error answer whose body is not JSON) as ``{"detail": ...}``."""
    status = response.status_code
    if status == 405:
        allowed = response.get("Allow", "")
        detail = f"method {request.method[:20]} is not allowed on {request.path[:200]}; allowed: {allowed}"
    else:
        try:
            detail = HTTPStatus(status).phrase.lower()
        except ValueError:
            detail = f"error {status}"
    answer = JsonResponse({"detail": detail}, status=status)
    for header in KEPT_HEADERS:
        if response.has_header(header):
            answer[header] = response[header]
    response.close()
    return answer
