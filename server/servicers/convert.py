"""Protobuf <-> domain for what every servicer shares: who writes (actor, context), times, members, movements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import timestamp_pb2
from grpc import aio

from loyalty.v1 import common_pb2, member_pb2, points_pb2
from loyalty_core import calc
from loyalty_core.errors import InvalidArgument
from loyalty_core.model import (
    ANONYMOUS, Balance, BurnOut, CardPrivileges, Expiry, Forecast, LotRecord, Member, MemberCard, MemberRef, Movement, WriteContext,
)
from server.auth import current_caller

CORRELATION_METADATA = "x-correlation-id"
# The trusted channels, that may spend naming the member by id alone: the e-shop, which logged the
# member in itself, and the back office, which may credit points at will anyway. Not the till's pos.
TRUSTED_RIGHTS = frozenset({"ecommerce", "manual_points"})

MEMBER_STATUS = {
    "active": member_pb2.MEMBER_STATUS_ACTIVE,
    "not_confirmed": member_pb2.MEMBER_STATUS_NOT_CONFIRMED,
    "deactivated": member_pb2.MEMBER_STATUS_DEACTIVATED,
}
MOVEMENT_KIND = {
    name.removeprefix("MOVEMENT_KIND_").lower(): value
    for name, value in points_pb2.MovementKind.items()
    if value != points_pb2.MOVEMENT_KIND_UNSPECIFIED
}


def enum_value(table: Mapping[int, str], value: int, field: str, *, unset: str | None = "") -> str:
    """The domain's name for a proto enum number. 0 (unset), when the table does not name it, gives
    ``unset`` (None: 0 is refused too); a number the table lacks (a newer client's value, or garbage)
    is refused with the one reason for that, ``enum_value_unknown``, naming the field."""
    if value == 0 and 0 not in table and unset is not None:
        return unset
    if value not in table:
        raise InvalidArgument("enum_value_unknown", f"{field} has no value {value}", field=field)
    return table[value]


def _metadata(context: aio.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


def actor(context: aio.ServicerContext) -> str:
    """Who is calling: the one place servicers learn it, the name of the API key the auth
    interceptor verified (never anything the caller merely claims in its metadata)."""
    caller = current_caller()
    return caller.name if caller else ANONYMOUS


def member_id_trusted() -> bool:
    """Whether the caller is a trusted channel (docs/trust.md "Who may spend points")."""
    caller = current_caller()
    return caller is not None and bool(TRUSTED_RIGHTS & caller.rights)


def write_context(
    proto: common_pb2.WriteContext | None, context: aio.ServicerContext, request_id: str
) -> WriteContext:
    """Actor, till, reason and correlation id of a write: the request's correlation id, else the
    ``x-correlation-id`` metadata, else the request_id."""
    proto = proto or common_pb2.WriteContext()
    return WriteContext(
        actor=actor(context),
        store_id=proto.store_id,
        terminal_id=proto.terminal_id,
        reason_code=proto.reason_code,
        correlation_id=proto.correlation_id or _metadata(context, CORRELATION_METADATA) or request_id,
    )


def timestamp(us: int | None) -> timestamp_pb2.Timestamp | None:
    """Microseconds to a Timestamp; None (and calc.NEVER) leave the field unset."""
    if us is None or us == calc.NEVER:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def micros(message: Any, field: str) -> int | None:
    """A Timestamp field as microseconds, None when unset."""
    return getattr(message, field).ToMicroseconds() if message.HasField(field) else None


def expiry(message: points_pb2.Expiry) -> Expiry:
    """An Expiry message (an accrual's, the welcome bonus's) as the domain's rule; unset: the programme's."""
    rule = message.WhichOneof("rule")
    if rule == "lifetime_days":
        return Expiry("lifetime_days", lifetime_days=message.lifetime_days)
    if rule == "expire_time":
        return Expiry("expire_at", expires_at=micros(message, "expire_time"))
    if rule == "never":
        return Expiry("never")
    return Expiry()


def expiry_message(rule: Expiry) -> points_pb2.Expiry:
    if rule.rule == "lifetime_days":
        return points_pb2.Expiry(lifetime_days=rule.lifetime_days)
    if rule.rule == "expire_at":
        return points_pb2.Expiry(expire_time=timestamp(rule.expires_at))
    if rule.rule == "never":
        return points_pb2.Expiry(never=True)
    return points_pb2.Expiry(programme_default=True)


def member_ref(proto: common_pb2.MemberRef) -> MemberRef:
    return MemberRef(
        member_id=proto.member_id, phone=proto.phone, card_number=proto.card_number, card_secret=proto.card_secret
    )


def member(m: Member) -> member_pb2.Member:
    return member_pb2.Member(
        member_id=m.member_id, programme_id=m.programme_id, phone=m.phone or "", card_number=m.card_number or "",
        status=MEMBER_STATUS[m.status], phone_confirmed=m.phone_confirmed, customer_group=m.customer_group,
        personal_discount_bps=m.personal_discount_bps, purchases_total_minor=m.purchases_total_minor,
        has_card_secret=m.has_card_secret, enrol_time=timestamp(m.enrolled_at),
        offboard_time=timestamp(m.offboarded_at), accumulative_discount_bps=m.accumulative_discount_bps,
        level_id=m.level_id or "", level_assign_time=timestamp(m.level_assigned_at),
        erase_time=timestamp(m.erased_at), store_id=m.store_id,
    )


def member_card(card: MemberCard) -> member_pb2.Member:
    """The member with the level's name and the way to the next level."""
    m = member(card.member)
    m.level_name = card.level_name
    m.next_level_name = card.next_level_name
    m.next_level_spend_needed_minor = card.next_level_spend_needed_minor
    m.next_level_category_spend_needed.extend(
        member_pb2.CategorySpendNeeded(category=c, spend_needed_minor=v)
        for c, v in card.next_level_category_spend_needed.items())
    m.next_level_visits_needed = card.next_level_visits_needed
    m.custom_fields.extend(member_pb2.CustomFieldValue(name=v.name, value=v.value) for v in card.custom_fields)
    return m


def privileges(p: CardPrivileges) -> member_pb2.MemberPrivileges:
    return member_pb2.MemberPrivileges(
        may_pay_with_points=p.may_pay_with_points, earns=p.earns, discount_bps=p.discount_bps,
        discount_source=p.discount_source, cashback_bps=p.cashback_bps, order_pay_share_bps=p.order_pay_share_bps,
        pay_share_bps=p.pay_share_bps,
        categories=[member_pb2.CategoryPrivilege(category=c.category, cashback_bps=c.cashback_bps,
                                                 pay_share_bps=c.pay_share_bps) for c in p.categories],
    )


def burn_outs(items: Sequence[BurnOut]) -> list[member_pb2.BurnOut]:
    return [member_pb2.BurnOut(expire_time=timestamp(x.expires_at), points=x.points) for x in items]


def forecast(f: Forecast) -> member_pb2.GetPointsForecastResponse:
    return member_pb2.GetPointsForecastResponse(
        burn_outs=burn_outs(f.burn_outs), as_of_time=timestamp(f.as_of), next_page_token=f.next_page_token,
        pending_activations=[member_pb2.PendingActivation(activate_time=timestamp(p.activates_at), source=p.source,
                                                          points=p.points, order_id=p.order_id) for p in f.pending],
    )


def lot(x: LotRecord) -> points_pb2.Lot:
    return points_pb2.Lot(
        lot_id=str(x.lot_id), source=x.source, amount=x.amount, remaining=x.remaining,
        activate_time=timestamp(x.activates_at), expire_time=timestamp(x.expires_at), order_id=x.order_id,
        create_time=timestamp(x.created_at), expired_time=timestamp(x.expired_at),
    )


def balance(b: Balance) -> member_pb2.Balance:
    return member_pb2.Balance(
        active_points=b.active_points, pending_points=b.pending_points, held_points=b.held_points,
        burning_points=b.burning_points, burn_outs=burn_outs(b.burn_outs),
        debt_points=b.debt_points, earned_total_points=b.earned_total_points,
        spent_total_points=b.spent_total_points, expired_total_points=b.expired_total_points,
        as_of_time=timestamp(b.as_of),
    )


def movement(m: Movement) -> points_pb2.Movement:
    return points_pb2.Movement(
        movement_id=str(m.movement_id), kind=MOVEMENT_KIND[m.kind], points=m.points, order_id=m.order_id,
        create_time=timestamp(m.created_at),
        lots=[points_pb2.LotAllocation(lot_id=str(a.lot_id), points=a.points) for a in m.lots],
        actor=m.actor, store_id=m.store_id, terminal_id=m.terminal_id, reason_code=m.reason_code,
        correlation_id=m.correlation_id, comment=m.comment,
    )
