"""Logs: one JSON object per line; phone numbers and secrets never in clear."""

import json
import logging

from server.logs import JsonFormatter, mask


def _format(msg: str, **extra) -> dict:
    record = logging.LogRecord("loyalty.access", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter().format(record))


def test_a_line_is_json_with_the_extra_fields():
    entry = _format("rpc", event="rpc", method="/loyalty.v1.X/Y", grpc_code="OK", duration_ms=1.5,
                    member_id="6f1c0f2e-0000-4000-8000-000000000001")
    assert entry["event"] == "rpc" and entry["grpc_code"] == "OK" and entry["duration_ms"] == 1.5
    assert entry["member_id"] == "6f1c0f2e-0000-4000-8000-000000000001"


def test_phone_numbers_and_secrets_are_not_in_clear():
    entry = _format("lookup of +44 7700 900123 failed", phone="+447700900123", card_secret="1234",
                    authorization="Bearer abc")
    line = json.dumps(entry)
    assert "7700" not in line and "abc" not in line and "1234" not in line
    assert entry["phone"] == "[redacted]"
    assert mask("call +447700900123") == "call **********123"
