"""Sending emails: SMTP when a host is configured, else an ``.eml`` file in the outbox.

Transport only: what an email says is rendered by the domain that sends it (the alert
sensor's ``alerting/messages.py``); the mailer takes a subject and a body and delivers them.

The code location wires the fields from ``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USER``,
``SMTP_STARTTLS``, ``ALERT_EMAIL_FROM`` and ``ALERT_EMAIL_TO`` (comma-separated), and the
password as ``dg.EnvVar("SMTP_PASSWORD")`` (the UI shows the variable's name, never its
value); the password is scrubbed from every error message. Without a host the email is
written atomically to ``outbox_dir`` (``MLOPS_HOME/outbox``) and logged, so the demo runs
offline.
"""

from __future__ import annotations

import copy
import email.policy
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

from mlops_core.text import scrub

log = logging.getLogger(__name__)

DEFAULT_SENDER = "mlops-assets@localhost"
# Headers up to RFC 5322's line limit stay on one line: the default policy folds at 78
# characters, which put the alert's Subject on two lines. (``max_line_length=None`` would
# also say "no folding", but breaks ``set_content``'s choice of transfer encoding.)
POLICY = email.policy.default.clone(max_line_length=998)


class MailError(RuntimeError):
    """An email could not be sent (the message never contains the SMTP password)."""


class Mailer(dg.ConfigurableResource):
    """Email transport: SMTP at ``smtp_host``, or ``.eml`` files in ``outbox_dir``."""

    outbox_dir: str
    smtp_host: str | None = None
    smtp_port: int | None = None  # default 587 with STARTTLS, else 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    sender: str | None = None
    recipients: str | None = None  # comma-separated
    timeout_seconds: float = 10.0

    # --- settings -------------------------------------------------------------------------
    def port(self) -> int:
        return self.smtp_port or (587 if self.smtp_starttls else 25)

    def from_address(self) -> str:
        return self.sender or self.smtp_user or DEFAULT_SENDER

    def to_addresses(self) -> list[str]:
        return [a.strip() for a in (self.recipients or "").split(",") if a.strip()]

    def describe(self) -> str:
        host = self.smtp_host
        if not host:
            return f"outbox {self.outbox_dir} (no SMTP_HOST)"
        user = f"{self.smtp_user}@" if self.smtp_user else ""
        tls = ", STARTTLS" if self.smtp_starttls else (", TLS" if self.port() == 465 else "")
        return f"smtp://{user}{host}:{self.port()}{tls}"

    def scrub(self, text: str) -> str:
        return scrub(text, self.smtp_password)

    # --- sending --------------------------------------------------------------------------
    def compose(
        self, subject: str, body: str, html: str | None = None, images: dict[str, bytes] | None = None
    ) -> EmailMessage:
        """The email: ``body`` as plain text; with ``html``, ``multipart/alternative`` (the text
        first, then the HTML with ``images``, content id -> PNG bytes, inline beside it)."""
        recipients = self.to_addresses()
        if self.smtp_host and not recipients:
            raise MailError("ALERT_EMAIL_TO is not set: there is nobody to send the alert to")
        msg = EmailMessage(policy=POLICY)
        msg["Subject"] = subject
        msg["From"] = self.from_address()
        msg["To"] = ", ".join(recipients) or "alerts@localhost"
        msg["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        msg["Message-ID"] = make_msgid(domain="mlops-assets")
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
            part = msg.get_payload()[1]
            for cid, png in (images or {}).items():
                part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>", filename=f"{cid}.png")
        return msg

    def send(self, msg: EmailMessage) -> str:
        """Send ``msg``; returns where it went. Raises ``MailError`` (password scrubbed)."""
        host = self.smtp_host
        if not host:
            return str(self._write_outbox(msg))
        try:
            if self.port() == 465 and not self.smtp_starttls:
                smtp = smtplib.SMTP_SSL(host, self.port(), timeout=self.timeout_seconds)
            else:
                smtp = smtplib.SMTP(host, self.port(), timeout=self.timeout_seconds)
            with smtp:
                smtp.ehlo()
                if self.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.smtp_user:
                    smtp.login(self.smtp_user, self.smtp_password or "")
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(
                self.scrub(f"could not send via {self.describe()}: {type(exc).__name__}: {exc}")
            ) from None
        if refused:
            raise MailError(f"{self.describe()} refused recipient(s): {', '.join(refused)}")
        return self.describe()

    def _write_outbox(self, msg: EmailMessage) -> Path:
        folder = Path(self.outbox_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"{stamp}.eml"
        readable = copy.deepcopy(msg)  # 8-bit text so the .eml reads well in a terminal
        text = readable.get_body(preferencelist=("plain",))
        text.set_content(text.get_content(), cte="8bit")
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".eml", dir=folder)
        with os.fdopen(fd, "wb") as out:
            out.write(readable.as_bytes())
        os.replace(tmp, path)
        log.info("alert written to %s (no SMTP_HOST configured)", path)
        return path
