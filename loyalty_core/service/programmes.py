"""Programme use cases: create, update by field mask, get, list."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg.errors

from loyalty_core import currencies, custom_fields, spending
from loyalty_core.bounds import MAX_AMOUNT, at_most
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, InvalidArgument, NotFound
from loyalty_core.model import (
    PROGRAMME_MUTABLE_FIELDS, CreateProgramme, Page, Programme, UpdateProgramme,
)
from loyalty_core.service import checks
from loyalty_core.service.idempotent import PROGRAMMES_SCOPE, run_write
from loyalty_core.service.lots import MAX_LIFETIME_DAYS
from loyalty_core.store import programmes as store
from loyalty_core.store.convert import MAX_US
from loyalty_core.store.db import Database, savepoint

BPS_FIELDS = ("order_pay_share_bps", "default_cashback_bps", "default_pay_share_bps")
# Amounts of points or money a programme sets: within the bounds of every amount (loyalty_core.bounds).
AMOUNT_FIELDS = ("point_value_minor", "debt_limit_points", "welcome_bonus_points")
COUNT_FIELDS = ("point_lifetime_days", "activation_delay_days", "debt_limit_points", "welcome_bonus_points",
                "welcome_bonus_lifetime_days")
CHOICES = {
    "compatibility": ("points_after_discounts", "points_instead_of_discounts"),
    "negative_balance_policy": ("refuse", "take_available", "debt"),
    "purchase_counts_when": ("captured", "completed"),
    "certificate_redemption": ("single_order", "multiple_orders"),
}
# Put a limit on everything: lifetimes up to 100 years, at most 1000 stores, channels and rules.
MAX_DAYS = MAX_LIFETIME_DAYS
MAX_ITEMS = 1000
# An SMS sender name: gateways take short names (11 characters is the common alphanumeric limit).
MAX_SENDER = 64
EXPIRY_RULES = ("programme_default", "lifetime_days", "expire_at", "never")
# Expiring-points notices: a few windows, up to a year ahead.
MAX_NOTICE_WINDOWS = 5
MAX_NOTICE_DAYS = 366


def _bad(code: str, message: str, field: str) -> InvalidArgument:
    return InvalidArgument(code, message, field=f"programme.{field}")


def check(p: Programme) -> None:
    """Every setting within its domain; the database's CHECK constraints say the same again."""
    checks.text_arg(p.name, "programme.name", required=True)
    if not currencies.is_known(p.currency_code):
        raise _bad("value_out_of_range", "currency_code must be an ISO 4217 currency code such as EUR "
                   "(loyalty_core/currencies.py lists them)", "currency_code")
    if p.point_value_minor < 1:
        raise _bad("value_out_of_range", "point_value_minor must be at least 1", "point_value_minor")
    for name in AMOUNT_FIELDS:
        at_most(getattr(p, name), MAX_AMOUNT, f"programme.{name}")
    for name in BPS_FIELDS:
        if not 0 <= getattr(p, name) <= 10_000:
            raise _bad("value_out_of_range", f"{name} must be 0..10000 basis points", name)
    for name in COUNT_FIELDS:
        if getattr(p, name) < 0:
            raise _bad("value_out_of_range", f"{name} must not be negative", name)
    for name in ("point_lifetime_days", "activation_delay_days", "welcome_bonus_lifetime_days"):
        if getattr(p, name) > MAX_DAYS:
            raise _bad("value_out_of_range", f"{name} must be at most {MAX_DAYS}", name)
    _check_welcome_expiry(p)
    if not 1 <= p.hold_ttl_s <= 7 * 86_400:
        raise _bad("value_out_of_range", "hold_ttl_seconds must be 1..604800", "hold_ttl_seconds")
    for name, allowed in CHOICES.items():
        if getattr(p, name) not in allowed:
            raise _bad("field_required", f"{name} must be one of {', '.join(allowed)}", name)
    for name in ("starts_at", "ends_at"):
        value = getattr(p, name)
        if value is not None and not 0 <= value <= MAX_US:
            raise _bad("value_out_of_range", f"{name} must be between 1970 and 9999", name)
    if p.starts_at is not None and p.ends_at is not None and p.ends_at <= p.starts_at:
        raise _bad("value_out_of_range", "end_time must be after start_time", "end_time")
    for name in ("store_ids", "channels", "category_rules", "discount_ranges"):
        if len(getattr(p, name)) > MAX_ITEMS:
            raise _bad("too_many_items", f"{name} has at most {MAX_ITEMS} items", name)
    if len(p.expiry_notice_days) > MAX_NOTICE_WINDOWS:
        raise _bad("too_many_items", f"expiry_notice_days has at most {MAX_NOTICE_WINDOWS} items", "expiry_notice_days")
    for i, days in enumerate(p.expiry_notice_days):
        if not 1 <= days <= MAX_NOTICE_DAYS or days in p.expiry_notice_days[:i]:
            raise _bad("value_out_of_range", f"expiry_notice_days must be distinct days 1..{MAX_NOTICE_DAYS}",
                       f"expiry_notice_days[{i}]")
    for i, value in enumerate(p.store_ids):
        checks.text_arg(value, f"programme.store_ids[{i}]", max_len=checks.MAX_ID, required=True)
    for i, value in enumerate(p.channels):
        checks.text_arg(value, f"programme.channels[{i}]", max_len=checks.MAX_ID, required=True)
    seen = set()
    for i, rule in enumerate(p.category_rules):
        checks.text_arg(rule.category, f"programme.category_rules[{i}].category", max_len=checks.MAX_ID)
        if rule.category in seen:
            raise _bad("value_out_of_range", f"category {rule.category!r} has two rules", f"category_rules[{i}]")
        seen.add(rule.category)
        for name in ("cashback_bps", "pay_share_bps"):
            if not 0 <= getattr(rule, name) <= 10_000:
                raise _bad("value_out_of_range", f"{name} must be 0..10000", f"category_rules[{i}].{name}")
    for i, name in enumerate(p.spend_identifications):
        if name not in spending.IDENTIFICATIONS or name in p.spend_identifications[:i]:
            raise _bad("value_out_of_range", f"spend_identifications names {name!r} twice or is not one of "
                       f"{', '.join(spending.IDENTIFICATIONS)}", f"spend_identifications[{i}]")
    for i, r in enumerate(p.discount_ranges):
        checks.text_arg(r.customer_group, f"programme.discount_ranges[{i}].customer_group", max_len=checks.MAX_ID)
        if r.min_purchases_minor < 0 or not 0 <= r.discount_bps <= 10_000:
            raise _bad("value_out_of_range", "a range needs min_purchases_minor >= 0 and discount_bps 0..10000",
                       f"discount_ranges[{i}]")
        at_most(r.min_purchases_minor, MAX_AMOUNT, f"programme.discount_ranges[{i}].min_purchases_minor")
    custom_fields.check_declarations(p.custom_fields, "programme.custom_fields")
    _check_senders(p)


def _check_senders(p: Programme) -> None:
    """Sender names: the default and one per store at most, each store one the programme applies in."""
    checks.text_arg(p.default_sms_sender, "programme.default_sms_sender", max_len=MAX_SENDER)
    if len(p.sms_senders) > MAX_ITEMS:
        raise _bad("too_many_items", f"sms_senders has at most {MAX_ITEMS} items", "sms_senders")
    stores = [s.store_id for s in p.sms_senders]
    for i, sender in enumerate(p.sms_senders):
        checks.text_arg(sender.store_id, f"programme.sms_senders[{i}].store_id", max_len=checks.MAX_ID, required=True)
        if sender.store_id in stores[:i] or (p.store_ids and sender.store_id not in p.store_ids):
            raise _bad("value_out_of_range", f"store {sender.store_id!r} is named twice or is not one of the "
                       "programme's store_ids", f"sms_senders[{i}].store_id")
        checks.text_arg(sender.sender_name, f"programme.sms_senders[{i}].sender_name", max_len=MAX_SENDER,
                        required=True)


def _check_welcome_expiry(p: Programme) -> None:
    """The welcome bonus's expiry rule, when one is set, and the older lifetime field beside it."""
    rule = p.welcome_bonus_expiry
    if rule is None:
        return
    if rule.rule not in EXPIRY_RULES:
        raise _bad("value_out_of_range", f"welcome_bonus_expiry must be one of {', '.join(EXPIRY_RULES)}",
                   "welcome_bonus_expiry")
    if rule.rule == "lifetime_days" and not 1 <= rule.lifetime_days <= MAX_DAYS:
        raise _bad("value_out_of_range", f"welcome_bonus_expiry.lifetime_days must be 1..{MAX_DAYS}",
                   "welcome_bonus_expiry.lifetime_days")
    if rule.rule == "expire_at" and not 0 < rule.expires_at <= MAX_US:
        raise _bad("value_out_of_range", "welcome_bonus_expiry.expire_time must be between 1970 and 9999",
                   "welcome_bonus_expiry.expire_time")
    if p.welcome_bonus_lifetime_days not in (0, rule.lifetime_days if rule.rule == "lifetime_days" else 0):
        raise _bad("value_out_of_range", "welcome_bonus_lifetime_days must be 0 (or the same term) beside "
                   "welcome_bonus_expiry, which decides; set one of them", "welcome_bonus_lifetime_days")


async def _save(conn: Any, write: Callable[[Any, Programme], Awaitable[None]], programme: Programme) -> None:
    """Insert or update in a savepoint, so a taken name leaves the idempotency key's transaction usable."""
    try:
        async with savepoint(conn):
            await write(conn, programme)
    except psycopg.errors.UniqueViolation:
        raise AlreadyExists("programme_name_taken", f"a programme named {programme.name!r} exists",
                            field="programme.name") from None


async def create(db: Database, clock: Clock, req: CreateProgramme) -> Programme:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    check(req.programme)
    now = clock.now_us()
    programme = dataclasses.replace(req.programme, programme_id=str(uuid.uuid4()), created_at=now, updated_at=now)

    async def effect(conn: Any) -> tuple[Programme, None]:
        await _save(conn, store.insert, programme)
        return programme, None

    return await run_write(db, method="CreateProgramme", scope=PROGRAMMES_SCOPE, request=req,
                           result_type=Programme, now=now, effect=effect)


async def update(db: Database, clock: Clock, req: UpdateProgramme) -> Programme:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme.programme_id")
    if not req.fields:
        raise InvalidArgument("field_required", "update_mask names no field", field="update_mask")
    for name in req.fields:
        if name not in PROGRAMME_MUTABLE_FIELDS:
            raise InvalidArgument("value_out_of_range", f"{name} cannot be changed", field="update_mask")
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Programme, None]:
        current = await store.get(conn, programme_id, for_update=True)
        if current is None:
            raise NotFound("programme_not_found", "no such programme")
        changed = dataclasses.replace(
            current, **{name: getattr(req.programme, name) for name in req.fields}, updated_at=now
        )
        check(changed)
        await _save(conn, store.update, changed)
        return changed, None

    try:
        return await run_write(db, method="UpdateProgramme", scope=programme_id, request=req,
                               result_type=Programme, now=now, effect=effect)
    finally:
        db.programmes.forget(programme_id)  # this process's quotes see the change at once


async def get(db: Database, programme_id: str) -> Programme:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    async with db.connection() as conn:
        programme = await store.get(conn, programme_id)
    if programme is None:
        raise NotFound("programme_not_found", "no such programme")
    return programme


async def list_page(db: Database, page_size: int, page_token: str) -> Page[Programme]:
    size = checks.page_size(page_size)
    after = checks.decode_token(page_token, 2)
    async with db.connection() as conn:
        items = await store.page(conn, tuple(after) if after else None, size + 1)
    more = len(items) > size
    items = items[:size]
    token = checks.encode_token(items[-1].created_at, items[-1].programme_id) if more else ""
    return Page(tuple(items), token)
