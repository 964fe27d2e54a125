"""SMS senders: one interface, an HTTP webhook sender, a refusing sender (no gateway configured), a log
sender (development only) and an in-memory recorder."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from loyalty_core import errors
from loyalty_core.model import Programme
from loyalty_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One text message to one phone. ``purpose`` says why it is sent (e.g. "phone_confirmation");
    ``sender`` is the sender name it goes under (``sender_name``), '' for the gateway's own default."""

    phone: str
    text: str
    purpose: str
    programme_id: str
    member_id: str
    sender: str = ""


def sender_name(programme: Programme, store_id: str) -> str:
    """The sender a message to a member of ``store_id`` (the store they enrolled in) goes under: the
    store's name where the programme lists one, else the programme's default (seed 001's note)."""
    return next((s.sender_name for s in programme.sms_senders if store_id and s.store_id == store_id),
                programme.default_sms_sender)


@runtime_checkable
class SmsSender(Protocol):
    """Delivers a message or raises ``errors.Unavailable("sms_gateway_unavailable")``."""

    async def send(self, message: SmsMessage) -> None: ...


class LogSender:
    """Writes each message to the log instead of sending it: for development and demos.

    The text holds the one-time code, so a production deployment configures the webhook sender.
    """

    async def send(self, message: SmsMessage) -> None:
        log.info("sms %s to %s: %s", message.purpose, message.phone, message.text,
                 extra={"event": "sms_logged", "purpose": message.purpose, "member_id": message.member_id})


class NoGatewaySender:
    """Refuses every message: no gateway is configured, and codes must not go to the log outside development."""

    async def send(self, message: SmsMessage) -> None:
        raise errors.FailedPrecondition(
            "sms_gateway_not_configured",
            "no SMS gateway is configured (LOYALTY_SMS_WEBHOOK_URL); one-time codes cannot be sent")


class WebhookSender:
    """POSTs each message as JSON to an SMS gateway's URL; any answer but 2xx is a failure.

    Body: ``{"phone", "text", "purpose", "programme_id", "member_id", "sender"}``. The gateway is called in a
    worker thread with a time-out, so a slow gateway never blocks the event loop.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, auth_header: str = "") -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the SMS webhook URL must be http(s), got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.auth_header = auth_header

    async def send(self, message: SmsMessage) -> None:
        await asyncio.to_thread(self._post, json.dumps(asdict(message)).encode())

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.auth_header:
            headers["Authorization"] = self.auth_header
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            # urlopen raises HTTPError (a URLError) for any non-2xx answer. The URL may carry a
            # token, so the message names only the failure.
            if isinstance(err, urllib.error.HTTPError):
                err.close()  # it holds the answer's socket
                detail = f"HTTP {err.code}"
            else:
                detail = type(err).__name__
            raise errors.Unavailable("sms_gateway_unavailable", f"the SMS gateway did not accept the message ({detail})") from err


class RecordingSender:
    """Keeps every message in memory, in order: for tests and for a server embedded in another program."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[SmsMessage] = []

    async def send(self, message: SmsMessage) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[SmsMessage]:
        with self._lock:
            return list(self._messages)

    def last_to(self, phone: str) -> SmsMessage:
        """The newest message to ``phone``."""
        for message in reversed(self.messages):
            if message.phone == phone:
                return message
        raise LookupError(f"no message was sent to {phone}")


def sender_from_settings(settings: Settings) -> SmsSender:
    """The webhook sender when ``LOYALTY_SMS_WEBHOOK_URL`` is set, else the log sender under
    ``LOYALTY_SMS_LOG_CODES_DEV``, else the refusing one."""
    if settings.sms_webhook_url:
        return WebhookSender(settings.sms_webhook_url, timeout_s=settings.sms_webhook_timeout_s,
                             auth_header=settings.sms_webhook_auth_header)
    return LogSender() if settings.sms_log_codes_dev else NoGatewaySender()
