"""The import file `loyalty-core import` reads: JSON Lines or CSV rows as the domain's ImportedMember,
each with its line, and a progress line (rows/s, done, ETA). Formats: docs/membership.md
"Importing members"."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from loyalty_core.errors import InvalidArgument
from loyalty_core.model import CustomValue, ImportedLot, ImportedMember, ImportedPurchase

FORMATS = ("jsonl", "csv")
# CSV columns holding JSON (lists of lots and purchases), and the prefix of custom field columns.
CSV_JSON_COLUMNS = ("lots", "purchases")
CSV_CUSTOM_PREFIX = "custom."


def _time(value: Any, field: str) -> int | None:
    """An RFC 3339 time (with its offset) as µs since the epoch; None when empty."""
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument("value_out_of_range", f"{field} is not an RFC 3339 time", field=field) from None
    if moment.tzinfo is None:
        raise InvalidArgument("value_out_of_range", f"{field} needs its UTC offset", field=field)
    return int(moment.timestamp() * 1_000_000)


def _int(value: Any, field: str) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument("value_out_of_range", f"{field} is an integer", field=field)
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument("value_out_of_range", f"{field} is an integer", field=field) from None


def _list(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise InvalidArgument("value_out_of_range", f"{field} is a list of objects", field=field)
    return value


def member_of(data: dict[str, Any]) -> ImportedMember:
    """One row's object (JSON Lines' field names, as the proto's ImportedMember in JSON) as the domain's."""
    custom = data.get("custom_fields") or {}
    if not isinstance(custom, dict):
        raise InvalidArgument("value_out_of_range", "custom_fields is an object of name: value",
                              field="custom_fields")
    return ImportedMember(
        external_id=str(data.get("external_id") or ""), phone=str(data.get("phone") or ""),
        card_number=str(data.get("card_number") or ""), status=str(data.get("status") or ""),
        customer_group=str(data.get("customer_group") or ""), level_name=str(data.get("level_name") or ""),
        purchases_total_minor=_int(data.get("purchases_total_minor"), "purchases_total_minor"),
        custom_fields=tuple(CustomValue(str(k), str(v)) for k, v in custom.items()),
        lots=tuple(ImportedLot(_int(x.get("points"), f"lots[{i}].points"),
                               _time(x.get("activate_time"), f"lots[{i}].activate_time"),
                               _time(x.get("expire_time"), f"lots[{i}].expire_time"))
                   for i, x in enumerate(_list(data.get("lots") or [], "lots"))),
        purchases=tuple(ImportedPurchase(str(x.get("order_id") or ""),
                                         _time(x.get("purchase_time"), f"purchases[{i}].purchase_time") or 0,
                                         _int(x.get("amount_minor"), f"purchases[{i}].amount_minor"),
                                         tuple(sorted((str(k), _int(v, f"purchases[{i}].by_category_minor"))
                                                      for k, v in (x.get("by_category_minor") or {}).items())))
                        for i, x in enumerate(_list(data.get("purchases") or [], "purchases"))),
        enrolled_at=_time(data.get("enrol_time"), "enrol_time") or 0,
    )


def _csv_object(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in row.items() if k and not k.startswith(CSV_CUSTOM_PREFIX)}
    for column in CSV_JSON_COLUMNS:
        if data.get(column):
            try:
                data[column] = json.loads(data[column])
            except json.JSONDecodeError:
                raise InvalidArgument("request_not_decodable", f"column {column} is not JSON", field=column) from None
    data["custom_fields"] = {k[len(CSV_CUSTOM_PREFIX):]: v for k, v in row.items()
                             if k and k.startswith(CSV_CUSTOM_PREFIX) and v}
    return data


def rows(source: IO[str], fmt: str) -> Iterator[tuple[int, ImportedMember | InvalidArgument]]:
    """(line, member) per data row of ``source``, or (line, why it cannot be read); blank lines skipped."""
    if fmt == "csv":
        reader = csv.DictReader(source)
        for row in reader:
            try:
                yield reader.line_num, member_of(_csv_object(row))
            except InvalidArgument as err:
                yield reader.line_num, err
        return
    for line_no, text in enumerate(source, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InvalidArgument("request_not_decodable", "a line is one JSON object")
            yield line_no, member_of(data)
        except json.JSONDecodeError as err:
            yield line_no, InvalidArgument("request_not_decodable", f"not JSON: {err.msg}")
        except InvalidArgument as err:
            yield line_no, err


def count_rows(source: IO[str], fmt: str) -> int:
    """How many rows ``rows`` will read (for the ETA): non-blank lines, less CSV's header."""
    n = sum(1 for text in source if text.strip())
    return max(0, n - 1) if fmt == "csv" else n


class Progress:
    """One line on a terminal (or one per update elsewhere): rows done of all, rows/s, ETA, refused."""

    def __init__(self, total: int, out: IO[str], every_s: float = 0.5) -> None:
        self.total, self.out, self.every_s = total, out, every_s
        self.started = self.shown = time.monotonic()
        self.done = self.refused = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        share = self.done / self.total if self.total else 1.0
        return (f"{self.done:,} of {self.total:,} rows ({share:.1%}) · {rate:,.0f} rows/s · "
                f"ETA {int(left // 60)}m{int(left % 60):02d}s · {self.refused:,} refused")

    def add(self, done: int, refused: int) -> None:
        self.done += done
        self.refused += refused
        now = time.monotonic()
        if now - self.shown >= self.every_s:
            self.shown = now
            self._show()

    def finish(self) -> None:
        self._show()
        if self.out.isatty():
            self.out.write("\n")

    def _show(self) -> None:
        self.out.write(("\r" if self.out.isatty() else "") + self.line() + ("" if self.out.isatty() else "\n"))
        self.out.flush()
