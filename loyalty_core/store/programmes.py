"""Programme rows: insert, update, read, list."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core.model import (
    CategoryRule, CustomField, DiscountRange, Expiry, Programme, StoreSender, from_json, to_json,
)
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later

# Every column but the id, named as the model's field.
_COLUMNS = (
    "name", "enabled", "starts_at", "ends_at", "store_ids", "channels", "currency_code",
    "point_value_minor", "point_lifetime_days", "activation_delay_days", "order_pay_share_bps",
    "default_cashback_bps", "default_pay_share_bps", "category_rules", "discounted_items_earn",
    "compatibility", "refund_returns_spent_points", "hold_ttl_s", "negative_balance_policy",
    "debt_limit_points", "welcome_bonus_points", "welcome_bonus_lifetime_days", "require_confirmation",
    "purchase_counts_when", "discount_ranges", "card_secret_required", "spend_identifications",
    "expiry_notice_days", "created_at", "updated_at", "welcome_bonus_expiry", "custom_fields", "sms_senders",
    "default_sms_sender", "certificate_redemption",
)
_TIMES = {"starts_at", "ends_at", "created_at", "updated_at"}
_SELECT = "SELECT programme_id::text, " + ", ".join(_COLUMNS) + ", revision FROM programme"


def _params(p: Programme) -> dict[str, Any]:
    values: dict[str, Any] = {"programme_id": p.programme_id}
    for c in _COLUMNS:
        v = getattr(p, c)
        if c in _TIMES:
            v = to_dt(v)
        elif c in ("store_ids", "channels", "spend_identifications", "expiry_notice_days"):
            v = list(v)
        elif c == "category_rules":
            v = Jsonb([{"category": r.category, "cashback_bps": r.cashback_bps, "pay_share_bps": r.pay_share_bps}
                       for r in v])
        elif c in ("custom_fields", "sms_senders"):
            v = Jsonb([to_json(item) for item in v])
        elif c == "welcome_bonus_expiry":
            v = None if v is None else Jsonb(to_json(v))
        elif c == "discount_ranges":
            v = Jsonb([{"customer_group": r.customer_group, "min_purchases_minor": r.min_purchases_minor,
                        "discount_bps": r.discount_bps} for r in v])
        values[c] = v
    return values


def row_to_programme(row: dict[str, Any]) -> Programme:
    values = dict(row)
    del values["revision"]
    for c in _TIMES:
        values[c] = to_us(values[c])
    values["store_ids"] = tuple(values["store_ids"])
    values["channels"] = tuple(values["channels"])
    values["spend_identifications"] = tuple(values["spend_identifications"])
    values["expiry_notice_days"] = tuple(values["expiry_notice_days"])
    values["category_rules"] = tuple(CategoryRule(**r) for r in values["category_rules"])
    values["discount_ranges"] = tuple(DiscountRange(**r) for r in values["discount_ranges"])
    values["welcome_bonus_expiry"] = from_json(Expiry, values["welcome_bonus_expiry"])
    values["custom_fields"] = tuple(from_json(CustomField, f) for f in values["custom_fields"])
    values["sms_senders"] = tuple(from_json(StoreSender, s) for s in values["sms_senders"])
    return Programme(**values)


async def insert(conn: Any, programme: Programme) -> None:
    """Insert; a taken name raises psycopg's UniqueViolation (the caller names the rule)."""
    await conn.execute(
        "INSERT INTO programme (programme_id, " + ", ".join(_COLUMNS) + ") VALUES (%(programme_id)s, "
        + ", ".join(f"%({c})s" for c in _COLUMNS) + ")",
        _params(programme),
    )


async def update(conn: Any, programme: Programme) -> None:
    """Overwrite the programme, raising its revision (reference tables carry no trigger to do it)."""
    await conn.execute(
        "UPDATE programme SET revision = revision + 1, "
        + ", ".join(f"{c} = %({c})s" for c in _COLUMNS if c != "created_at")
        + " WHERE programme_id = %(programme_id)s",
        _params(programme),
    )


async def _one(cur: Any) -> Programme | None:
    row = await cur.fetchone()
    return None if row is None else row_to_programme(row)


async def send_get(conn: Any, programme_id: str, *, for_update: bool = False) -> Later[Programme | None]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE programme_id = %s" + (" FOR UPDATE" if for_update else ""), (programme_id,))
    return Later(cur, _one)


async def _one_revised(cur: Any) -> tuple[Programme, int] | None:
    row = await cur.fetchone()
    return None if row is None else (row_to_programme(row), row["revision"])


async def send_get_revised(conn: Any, programme_id: str) -> Later[tuple[Programme, int] | None]:
    """The programme and its revision (which every change to it or its levels raises)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE programme_id = %s", (programme_id,))
    return Later(cur, _one_revised)


async def get(conn: Any, programme_id: str, *, for_update: bool = False) -> Programme | None:
    return await (await send_get(conn, programme_id, for_update=for_update)).get()


async def page(conn: Any, after: tuple[int, str] | None, limit: int) -> list[Programme]:
    """Programmes oldest first, after the (created_at, programme_id) of the previous page's last."""
    cur = conn.cursor(row_factory=dict_row)
    if after is None:
        await cur.execute(_SELECT + " ORDER BY created_at, programme_id LIMIT %s", (limit,))
    else:
        await cur.execute(
            _SELECT + " WHERE (created_at, programme_id) > (%s, %s) ORDER BY created_at, programme_id LIMIT %s",
            (to_dt(after[0]), after[1], limit),
        )
    return [row_to_programme(r) for r in await cur.fetchall()]
