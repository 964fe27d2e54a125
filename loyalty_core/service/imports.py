"""Importing members from a previous system: each row checked on its own, then a batch of rows
written set-based in one transaction, idempotent per row by its external id (docs/membership.md
"Importing members")."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core import levels, membership
from loyalty_core.bounds import MAX_AMOUNT, at_most
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, IdempotencyConflict, InvalidArgument, LoyaltyError
from loyalty_core.levels import Level, Purchase
from loyalty_core.model import Imported, ImportedMember, ImportRow, Programme, WriteContext, to_json
from loyalty_core.service import checks
from loyalty_core.service.custom_fields import enrolment_values
from loyalty_core.service.members import check_card_number, check_phone, programme_of
from loyalty_core.store import imports as store
from loyalty_core.store.db import UNIQUE_VIOLATIONS, Database, violated_constraint
from loyalty_core.store.membership import levels_of

# Rows per transaction: large enough that a COPY's and a transaction's fixed costs vanish per row,
# small enough that a batch's answer comes within a second and a crash loses little work.
MAX_ROWS_PER_TRANSACTION = 1_000
MAX_LOTS = 100
MAX_PURCHASES = 1_000
# A batch meeting a phone, card or external id that another transaction took meanwhile is re-run
# (its checks then see the row that took it); this many times at most.
ATTEMPTS = 3


@dataclass(frozen=True)
class _Rules:
    programme: Programme
    levels: list[Level]


def _fingerprint(member: ImportedMember) -> bytes:
    return hashlib.sha256(json.dumps(to_json(member), sort_keys=True, separators=(",", ":")).encode()).digest()


def _check_lots(m: ImportedMember, now: int) -> list[tuple[int, int, int | None]]:
    if len(m.lots) > MAX_LOTS:
        raise InvalidArgument("too_many_items", f"at most {MAX_LOTS} lots", field="lots")
    lots = []
    for i, lot in enumerate(m.lots):
        if lot.points < 1:
            raise InvalidArgument("value_out_of_range", "a lot's points must be at least 1", field=f"lots[{i}].points")
        at_most(lot.points, MAX_AMOUNT, f"lots[{i}].points")
        starts = now if lot.activates_at is None else lot.activates_at
        if lot.expires_at is not None and lot.expires_at <= max(starts, now):
            raise InvalidArgument("value_out_of_range", "a lot's expire_time must be after its activate_time and now",
                                  field=f"lots[{i}].expire_time")
        lots.append((lot.points, starts, lot.expires_at))
    at_most(sum(points for points, _, _ in lots), MAX_AMOUNT, "lots")
    return lots


def _check_purchases(m: ImportedMember, now: int) -> list[tuple[str, int, int, dict[str, int]]]:
    if len(m.purchases) > MAX_PURCHASES:
        raise InvalidArgument("too_many_items", f"at most {MAX_PURCHASES} purchases", field="purchases")
    seen: set[str] = set()
    purchases = []
    for i, p in enumerate(m.purchases):
        path = f"purchases[{i}]"
        checks.text_arg(p.order_id, f"{path}.order_id", max_len=checks.MAX_ID, required=True)
        if p.order_id in seen:
            raise InvalidArgument("value_out_of_range", f"order {p.order_id!r} appears twice", field=f"{path}.order_id")
        seen.add(p.order_id)
        if not 0 < p.at <= now:
            raise InvalidArgument("value_out_of_range", "purchase_time is required and not in the future",
                                  field=f"{path}.purchase_time")
        if p.amount_minor < 0:
            raise InvalidArgument("value_out_of_range", "amount_minor must not be negative", field=f"{path}.amount_minor")
        at_most(p.amount_minor, MAX_AMOUNT, f"{path}.amount_minor")
        parts = dict(p.by_category)
        if any(v < 0 for v in parts.values()) or sum(parts.values()) > p.amount_minor:
            raise InvalidArgument("category_share_must_not_exceed_total",
                                  "a purchase's parts by category are not negative and add up to at most its amount",
                                  field=f"{path}.by_category_minor")
        purchases.append((p.order_id, p.at, p.amount_minor, parts))
    return purchases


def _level(rules: _Rules, m: ImportedMember, status: str, purchases: Sequence[Purchase], now: int) -> str | None:
    """The level named (on the member's ladder), else the highest the purchases reach; none for a
    deactivated member (no levels) unless one is named."""
    rungs = levels.ladder(rules.levels, m.customer_group)
    if m.level_name:
        named = next((lv for lv in rungs if lv.name == m.level_name), None)
        if named is None:
            raise InvalidArgument("level_not_on_members_ladder",
                                  f"no level {m.level_name!r} open to the member's group", field="level_name")
        return named.level_id
    if status == membership.DEACTIVATED:
        return None
    reached = levels.level_after_purchase(rungs, None, purchases, now)
    return None if reached is None else reached.level_id


def _checked(rules: _Rules, m: ImportedMember, now: int) -> store.NewMember:
    """The row as it will be written, every rule checked; InvalidArgument naming the field otherwise."""
    checks.text_arg(m.external_id, "external_id", max_len=128, required=True)
    if m.phone:
        check_phone(m.phone)
    if m.card_number:
        check_card_number(m.card_number)
    if not (m.phone or m.card_number):
        raise InvalidArgument("field_required", "a member needs a phone or a card number", field="phone")
    checks.text_arg(m.customer_group, "customer_group", max_len=checks.MAX_ID)
    if m.status and m.status not in membership.STATUSES:
        raise InvalidArgument("value_out_of_range", "status is active, not_confirmed or deactivated", field="status")
    status = m.status or (membership.NOT_CONFIRMED if rules.programme.require_confirmation else membership.ACTIVE)
    if not 0 <= m.enrolled_at <= now:
        raise InvalidArgument("value_out_of_range", "enrol_time must not be in the future", field="enrol_time")
    lots = _check_lots(m, now)
    purchases = _check_purchases(m, now)
    counted = sum(amount for _, _, amount, _ in purchases)
    at_most(m.purchases_total_minor, MAX_AMOUNT, "purchases_total_minor")
    if m.purchases_total_minor and m.purchases_total_minor < counted:
        raise InvalidArgument("purchases_total_below_purchases",
                              f"purchases_total_minor {m.purchases_total_minor} is below the {counted} listed",
                              field="purchases_total_minor")
    total = m.purchases_total_minor or at_most(counted, MAX_AMOUNT, "purchases")
    values = enrolment_values(rules.programme, m.custom_fields)
    level_id = _level(rules, m, status, [Purchase(at, amount, parts) for _, at, amount, parts in purchases], now)
    earned = sum(points for points, _, _ in lots)
    return store.NewMember(
        member_id=str(uuid.uuid4()), external_id=m.external_id, fingerprint=_fingerprint(m),
        phone=m.phone or None, card_number=m.card_number or None, status=status,
        # The previous system confirmed an active member's phone (or had nothing to confirm).
        phone_confirmed=bool(m.phone) and status == membership.ACTIVE, customer_group=m.customer_group,
        level_id=level_id,
        accumulative_discount_bps=membership.accumulative_rate(rules.programme.discount_ranges, m.customer_group,
                                                               total),
        purchases_total_minor=total, earned_total_points=earned, enrolled_at=m.enrolled_at or now, lots=lots,
        purchases=purchases, custom_values=values,
        history={"external_id": m.external_id, "status": status, "level_id": level_id, "lots": len(lots),
                 "points": earned, "purchases": len(purchases), "purchases_total_minor": total},
    )


async def _rules(db: Database, programme_id: str) -> _Rules:
    async with db.connection() as conn:
        programme = await programme_of(conn, programme_id)
        return _Rules(programme, [s.level for s in await levels_of(conn, programme_id)])


def _reused(external_id: str, member_id: str) -> IdempotencyConflict:
    return IdempotencyConflict("external_id_reused_with_different_row",
                               f"external_id {external_id!r} was imported before with another row",
                               field="external_id", member_id=member_id)


async def _write_batch(db: Database, programme_id: str, ready: list[tuple[int, store.NewMember]], now: int,
                       actor: str) -> dict[int, Imported | LoyaltyError]:
    """One transaction: the rows imported before answered from their record, rows whose phone or
    card a member holds refused, the rest written; each row's outcome by its index."""

    async def attempt(conn: Any) -> dict[int, Imported | LoyaltyError]:
        before = await store.imported(conn, programme_id, [m.external_id for _, m in ready])
        phones, cards = await store.taken(conn, programme_id, [m.phone for _, m in ready if m.phone],
                                          [m.card_number for _, m in ready if m.card_number])
        outcomes: dict[int, Imported | LoyaltyError] = {}
        first: dict[str, store.NewMember] = {}
        new: list[store.NewMember] = []
        for i, m in ready:
            earlier = before.get(m.external_id) or (
                (first[m.external_id].member_id, first[m.external_id].fingerprint) if m.external_id in first else None)
            if earlier is not None:
                member_id, fingerprint = earlier
                outcomes[i] = Imported(member_id, replayed=True) if fingerprint == m.fingerprint else (
                    _reused(m.external_id, member_id) if m.external_id in before else InvalidArgument(
                        "external_id_repeated_in_batch", f"another row of the batch has external_id {m.external_id!r}",
                        field="external_id"))
                continue
            if m.phone in phones:
                outcomes[i] = AlreadyExists("phone_taken", "another member of the programme has this phone",
                                            field="phone")
            elif m.card_number in cards:
                outcomes[i] = AlreadyExists("card_number_taken", "another member of the programme has this card",
                                            field="card_number")
            else:
                outcomes[i] = Imported(m.member_id)
                first[m.external_id] = m
                new.append(m)
                phones.update([m.phone] if m.phone else [])
                cards.update([m.card_number] if m.card_number else [])
        await store.write(conn, programme_id, new, now, actor)
        return outcomes

    for attempt_no in range(1, ATTEMPTS + 1):
        try:
            return await db.run_in_transaction(attempt)
        except UNIQUE_VIOLATIONS as err:
            # A phone, card or external id another import or enrolment took since this one read them.
            if violated_constraint(err) is None or attempt_no == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def import_members(db: Database, clock: Clock, rows: Sequence[ImportRow],
                         context: WriteContext) -> list[Imported | LoyaltyError]:
    """Import a batch of rows (at most MAX_ROWS_PER_TRANSACTION): per row, in order, the member it
    made (or made before: ``replayed``) or the domain error that refused it, nothing of it written."""
    if len(rows) > MAX_ROWS_PER_TRANSACTION:
        raise ValueError(f"at most {MAX_ROWS_PER_TRANSACTION} rows per call")
    now = clock.now_us()
    outcomes: list[Imported | LoyaltyError | None] = [None] * len(rows)
    by_programme: dict[str, list[tuple[int, store.NewMember]]] = {}
    rules: dict[str, _Rules | LoyaltyError] = {}
    for i, row in enumerate(rows):
        try:
            programme_id = checks.uuid_arg(row.programme_id, "programme_id")
            if programme_id not in rules:
                try:
                    rules[programme_id] = await _rules(db, programme_id)
                except LoyaltyError as err:
                    rules[programme_id] = err
            found = rules[programme_id]
            if isinstance(found, LoyaltyError):
                raise found
            by_programme.setdefault(programme_id, []).append((i, _checked(found, row.member, now)))
        except LoyaltyError as err:
            outcomes[i] = err
    for programme_id, ready in by_programme.items():
        for i, outcome in (await _write_batch(db, programme_id, ready, now, context.actor)).items():
            outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]
