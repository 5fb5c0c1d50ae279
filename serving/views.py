"""JSON versions of Django's error pages (a JSON API never answers with HTML or a traceback)."""

from __future__ import annotations

from django.http import JsonResponse


def bad_request(request, exception=None):
    # Django sends a disallowed Host header (and other SuspiciousOperation) here.
    return JsonResponse({"detail": "bad request (is the Host header in SERVING_ALLOWED_HOSTS?)"}, status=400)


def forbidden(request, exception=None):
    return JsonResponse({"detail": "forbidden"}, status=403)


def not_found(request, exception=None):
    return JsonResponse(
        {"detail": f"no such endpoint: {request.path} (see /docs or /openapi.json)"}, status=404
    )


def server_error(request):
    return JsonResponse({"detail": "internal error (logged by the service)"}, status=500)
