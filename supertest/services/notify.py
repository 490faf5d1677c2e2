"""Sending one alert to one channel: a signed webhook, an email over SMTP, or any Apprise URL.

Each sender answers (delivered, detail), the detail being what the far end said or why it could not
be reached, in words for the delivery log; none raises for a far end's fault.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import apprise
import requests

SIGNATURE_HEADER = "X-Supertest-Signature"
DETAIL_CHARS = 500  # of a far end's answer, in the log


@dataclass(frozen=True)
class Alert:
    """What one alert says: the webhook's JSON payload, and the words of an email or chat message."""

    payload: dict[str, Any]
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Transport:
    """How far ends are reached: the settings that apply to every channel."""

    timeout: float
    smtp_url: str = ""
    mail_from: str = "supertest@localhost"
    extra: dict[str, Any] = field(default_factory=dict)


def sign(secret: str, body: bytes) -> str:
    """The webhook signature header's value: HMAC-SHA256 of the raw body with the channel's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(kind: str, target: str, secret: str | None, alert: Alert, transport: Transport) -> tuple[bool, str]:
    """Deliver `alert` to a channel of type `kind`; (delivered, detail)."""
    if kind == "webhook":
        return _webhook(target, secret or "", alert, transport.timeout)
    if kind == "email":
        return _email(target, alert, transport)
    return _apprise(target, alert, transport.timeout)


def _webhook(url: str, secret: str, alert: Alert, timeout: float) -> tuple[bool, str]:
    body = json.dumps(alert.payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               "User-Agent": "Supertest-Alerts"}
    try:
        # Streamed, and only the start read: a far end that sends a body for ever is not waited for.
        with requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                           stream=True) as response:
            answer = f"HTTP {response.status_code} {response.reason or ''}".strip()
            text = _start_of(response, time.monotonic() + timeout).strip()[:DETAIL_CHARS]
    except requests.Timeout:
        return False, f"no answer within {timeout:g} s"
    except requests.RequestException as error:  # its words may quote the URL: its path and password are secret
        return False, f"could not connect: {_reason(error)}".replace(url, "the webhook's URL")
    return 200 <= response.status_code < 300, f"{answer}: {text}" if text else answer


def _start_of(response: requests.Response, deadline: float) -> str:
    """The first DETAIL_CHARS of a body, or what of them came by `deadline`."""
    start = b""
    for chunk in response.iter_content(chunk_size=1):  # a byte at a time: a trickle cannot outlast the deadline
        start += chunk
        if len(start) >= 4 * DETAIL_CHARS or time.monotonic() > deadline:
            break
    return start.decode(response.encoding or "utf-8", "replace")


def _reason(error: BaseException) -> str:
    """The innermost cause's words (requests wraps urllib3 wraps the socket error)."""
    while error.__context__ is not None and error.__context__ is not error:
        error = error.__context__
    return str(error) or type(error).__name__


def recipients(target: str) -> list[str]:
    return [address.strip() for address in target.split(",") if address.strip()]


def masked(detail: str, addresses: list[str]) -> str:
    """A delivery's detail (shown to every user) with the channel's addresses masked as its hint masks them."""
    for address in addresses:
        detail = detail.replace(address, f"{address[0]}…@{address.partition('@')[2]}")
    return detail


def _email(target: str, alert: Alert, transport: Transport) -> tuple[bool, str]:
    if not transport.smtp_url:
        return False, "SMTP_URL is not set, so email cannot be sent"
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = alert.subject, transport.mail_from, ", ".join(
        recipients(target))
    message.set_content(alert.text)
    message.add_alternative(alert.html, subtype="html")
    url = urlparse(transport.smtp_url)
    options = {key: values[-1].lower() for key, values in parse_qs(url.query).items()}
    host, tls = url.hostname or "localhost", url.scheme == "smtps"
    port = url.port or (465 if tls else 587 if options.get("starttls") == "true" else 25)
    try:
        smtp_class = smtplib.SMTP_SSL if tls else smtplib.SMTP
        with smtp_class(host, port, timeout=transport.timeout) as smtp:
            if options.get("starttls") == "true":
                smtp.starttls(context=ssl.create_default_context())
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        return False, masked(f"SMTP {host}:{port}: {error or type(error).__name__}", recipients(target))
    if refused:
        return False, masked(f"SMTP {host}:{port} refused {', '.join(refused)}", recipients(target))
    return True, f"SMTP {host}:{port} accepted the mail for {len(recipients(target))} recipient(s)"


def apprise_knows(url: str) -> bool:
    """Whether Apprise has a service for this URL (and the URL is well formed for it)."""
    return apprise.Apprise().add(url)


def _apprise(url: str, alert: Alert, timeout: float) -> tuple[bool, str]:
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return False, "Apprise does not recognise this URL"
    for service in notifier:  # Apprise's own default waits are 4 s; ours is the setting
        service.socket_connect_timeout = service.socket_read_timeout = timeout
    with apprise.LogCapture(level=logging.INFO) as captured:
        delivered = bool(notifier.notify(body=alert.text, title=alert.subject))
    said = " ".join(line.strip() for line in captured.getvalue().splitlines() if line.strip())
    return delivered, (said or ("sent" if delivered else "Apprise could not send it"))[:DETAIL_CHARS]
