"""Small helpers both sides of the code location / service border need: secrets out of text,
and numbers and flags out of settings strings (with errors that name the setting)."""

from __future__ import annotations

from datetime import time
from urllib.parse import unquote, urlsplit, urlunsplit

UNPARSABLE_URL = "<unparsable URL>"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """``url`` without its password: ``postgresql+psycopg2://u:secret@h/db`` ->
    ``postgresql+psycopg2://u:***@h/db``. A URL that cannot be parsed shows nothing."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return UNPARSABLE_URL
    if password is None:
        return url
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every secret (as given and URL-decoded) replaced by ``***``."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "***")
    return text


def parse_number(
    name: str, raw: str | None, default: float | None, *, minimum: float | None = None, positive=False
) -> float | None:
    """``raw`` (a setting's text) as a number; blank is ``default``."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if positive and not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    if minimum is not None and not value >= minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def parse_count(name: str, raw: str | None) -> int | None:
    """``raw`` (a setting's text) as a whole number of at least 1; blank is None."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of at least 1 (or unset), got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1 (or unset), got {raw!r}")
    return value


def parse_port(name: str, raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be a port number, got {raw!r}")
    return port


def parse_clock(name: str, raw: str) -> time:
    """``raw`` as a time of day ``HH:MM`` (24 h)."""
    try:
        hours, minutes = (int(part) for part in raw.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ConfigError(f"{name} must be a time of day HH:MM (UTC), got {raw!r}") from None


def parse_flag(raw: str | None, default: bool = False) -> bool:
    """``1/true/yes/on`` (any case) is true; blank is ``default``; anything else is false."""
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")
