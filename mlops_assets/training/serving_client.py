"""Telling the prediction service to load the new champion (``SERVING_URL``)."""

from __future__ import annotations

import dagster as dg
import requests


class ServingClient(dg.ConfigurableResource):
    """POSTs ``<url>/reload`` with ``Authorization: Bearer <token>`` (``SERVING_URL``;
    the token as ``dg.EnvVar("SERVING_RELOAD_TOKEN")``).

    With no ``url`` it does nothing (the service can also poll the alias).
    """

    url: str | None = None
    token: str | None = None
    timeout_seconds: float = 30.0

    def base_url(self) -> str | None:
        return (self.url or "").rstrip("/") or None

    def reload(self) -> dict | None:
        """The service's answer (``{"previous_version": ..., "version": ...}``), or None when
        no ``SERVING_URL`` is set. Raises ``RuntimeError`` with the status on failure."""
        base = self.base_url()
        if base is None:
            return None
        token = self.token or ""
        try:
            response = requests.post(
                f"{base}/reload",
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout_seconds,
            )
        except requests.RequestException as exc:
            raise RuntimeError(f"could not reach the prediction service at {base}: {exc}") from None
        if response.status_code != 200:
            raise RuntimeError(f"{base}/reload answered {response.status_code}: {response.text[:300]}")
        return response.json()
