"""SMS senders: the webhook sender against a tiny local HTTP server, the recorder, the log sender."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loyalty_core import errors, sms
from loyalty_core.settings import Settings

MESSAGE = sms.SmsMessage(phone="+15550001111", text="Your code: 123456", purpose="phone_confirmation",
                         programme_id="p1", member_id="m1")


class Gateway:
    """A local HTTP server standing in for an SMS gateway: it keeps what it receives and answers
    with ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, str]]] = []
        self.status = 202
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.received.append((dict(self.headers), json.loads(body)))
                self.send_response(gateway.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sms"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    try:
        yield server
    finally:
        server.close()


async def test_the_webhook_sender_posts_the_message_as_json(gateway: Gateway) -> None:
    await sms.WebhookSender(gateway.url, auth_header="Bearer t0ken").send(MESSAGE)
    (headers, body), = gateway.received
    assert body == {"phone": "+15550001111", "text": "Your code: 123456", "purpose": "phone_confirmation",
                    "programme_id": "p1", "member_id": "m1", "sender": ""}
    assert headers["Authorization"] == "Bearer t0ken" and headers["Content-Type"] == "application/json"


async def test_a_gateway_refusal_is_unavailable(gateway: Gateway) -> None:
    gateway.status = 503
    with pytest.raises(errors.Unavailable) as err:
        await sms.WebhookSender(gateway.url).send(MESSAGE)
    assert err.value.code == "sms_gateway_unavailable" and "HTTP 503" in err.value.message


async def test_an_unreachable_gateway_is_unavailable(gateway: Gateway) -> None:
    url = gateway.url
    gateway.close()
    with pytest.raises(errors.Unavailable):
        await sms.WebhookSender(url, timeout_s=2).send(MESSAGE)


def test_the_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        sms.WebhookSender("file:///etc/passwd")


async def test_the_recorder_keeps_messages_in_order() -> None:
    recorder = sms.RecordingSender()
    await recorder.send(MESSAGE)
    await recorder.send(dataclasses.replace(MESSAGE, text="Your code: 654321"))
    assert [m.text for m in recorder.messages] == ["Your code: 123456", "Your code: 654321"]
    assert recorder.last_to("+15550001111").text == "Your code: 654321"
    with pytest.raises(LookupError):
        recorder.last_to("+15559999999")


async def test_the_log_sender_writes_the_message_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="loyalty_core.sms"):
        await sms.LogSender().send(MESSAGE)
    assert "Your code: 123456" in caplog.text


def test_the_settings_choose_the_sender(gateway: Gateway) -> None:
    assert isinstance(sms.sender_from_settings(Settings()), sms.NoGatewaySender)
    assert isinstance(sms.sender_from_settings(Settings(sms_log_codes_dev=True)), sms.LogSender)
    chosen = sms.sender_from_settings(Settings(sms_webhook_url=gateway.url, sms_webhook_timeout_s=1.5))
    assert isinstance(chosen, sms.WebhookSender) and (chosen.url, chosen.timeout_s) == (gateway.url, 1.5)
