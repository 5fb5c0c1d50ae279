"""Sending alert emails: SMTP when ``SMTP_HOST`` is set, else an ``.eml`` file in the outbox.

SMTP settings come from the environment (``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USER``,
``SMTP_PASSWORD``, ``SMTP_STARTTLS``; sender ``ALERT_EMAIL_FROM``, recipients
``ALERT_EMAIL_TO``, comma-separated). The password is wired as ``dg.EnvVar`` (the UI shows
the variable's name, never its value) and is scrubbed from every error message.
Without ``SMTP_HOST`` the email is written atomically to ``MLOPS_HOME/outbox`` and logged,
so the demo runs offline.
"""

from __future__ import annotations

import copy
import logging
import os
import smtplib
import ssl
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import dagster as dg

from mlops_assets import settings

log = logging.getLogger(__name__)

DEFAULT_SENDER = "mlops-assets@localhost"


class MailError(RuntimeError):
    """An email could not be sent (the message never contains the SMTP password)."""


def _env_bool(value: str | None) -> bool | None:
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


class Mailer(dg.ConfigurableResource):
    """Alert email transport. Unset fields fall back to the environment at send time."""

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool | None = None
    sender: str | None = None
    recipients: str | None = None
    timeout_seconds: float = 10.0
    outbox_dir: str | None = None

    # --- settings -------------------------------------------------------------------------
    def host(self) -> str | None:
        return self.smtp_host or os.environ.get("SMTP_HOST") or None

    def port(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        raw = os.environ.get("SMTP_PORT")
        if raw:
            try:
                return int(raw)
            except ValueError:
                raise MailError(f"SMTP_PORT must be a port number, got {raw!r}") from None
        return 587 if self.starttls() else 25

    def starttls(self) -> bool:
        if self.smtp_starttls is not None:
            return self.smtp_starttls
        env = _env_bool(os.environ.get("SMTP_STARTTLS"))
        return bool(env) if env is not None else False

    def user(self) -> str | None:
        return self.smtp_user or os.environ.get("SMTP_USER") or None

    def _password(self) -> str | None:
        return self.smtp_password or os.environ.get("SMTP_PASSWORD") or None

    def from_address(self) -> str:
        return self.sender or os.environ.get("ALERT_EMAIL_FROM") or self.user() or DEFAULT_SENDER

    def to_addresses(self) -> list[str]:
        raw = self.recipients or os.environ.get("ALERT_EMAIL_TO") or ""
        return [a.strip() for a in raw.split(",") if a.strip()]

    def outbox(self) -> Path:
        return Path(self.outbox_dir) if self.outbox_dir else settings.mlops_home() / "outbox"

    def describe(self) -> str:
        host = self.host()
        if not host:
            return f"outbox {self.outbox()} (no SMTP_HOST)"
        user = f"{self.user()}@" if self.user() else ""
        tls = ", STARTTLS" if self.starttls() else (", TLS" if self.port() == 465 else "")
        return f"smtp://{user}{host}:{self.port()}{tls}"

    def scrub(self, text: str) -> str:
        password = self._password()
        return text.replace(password, "***") if password else text

    # --- sending --------------------------------------------------------------------------
    def compose(self, subject: str, body: str) -> EmailMessage:
        recipients = self.to_addresses()
        if self.host() and not recipients:
            raise MailError("ALERT_EMAIL_TO is not set: there is nobody to send the alert to")
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.from_address()
        msg["To"] = ", ".join(recipients) or "alerts@localhost"
        msg["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        msg["Message-ID"] = make_msgid(domain="mlops-assets")
        msg.set_content(body)
        return msg

    def send(self, msg: EmailMessage) -> str:
        """Send ``msg``; returns where it went. Raises ``MailError`` (password scrubbed)."""
        host = self.host()
        if not host:
            return str(self._write_outbox(msg))
        try:
            if self.port() == 465 and not self.starttls():
                smtp = smtplib.SMTP_SSL(host, self.port(), timeout=self.timeout_seconds)
            else:
                smtp = smtplib.SMTP(host, self.port(), timeout=self.timeout_seconds)
            with smtp:
                smtp.ehlo()
                if self.starttls():
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.user():
                    smtp.login(self.user(), self._password() or "")
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(
                self.scrub(f"could not send via {self.describe()}: {type(exc).__name__}: {exc}")
            ) from None
        if refused:
            raise MailError(f"{self.describe()} refused recipient(s): {', '.join(refused)}")
        return self.describe()

    def _write_outbox(self, msg: EmailMessage) -> Path:
        folder = self.outbox()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"{stamp}.eml"
        readable = copy.deepcopy(msg)  # 8-bit text so the .eml reads well in a terminal
        readable.set_content(msg.get_content(), cte="8bit")
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".eml", dir=folder)
        with os.fdopen(fd, "wb") as out:
            out.write(readable.as_bytes())
        os.replace(tmp, path)
        log.info("alert written to %s (no SMTP_HOST configured)", path)
        return path


def mailer_from_env() -> Mailer:
    """The mailer as the code location wires it: the password as ``dg.EnvVar`` when set."""
    password = dg.EnvVar("SMTP_PASSWORD") if os.environ.get("SMTP_PASSWORD") else None
    return Mailer(smtp_password=password)
