"""The ledger's request and result types: frozen dataclasses, times as int64 microseconds, no protobuf."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# Times are int64 microseconds since the Unix epoch (UTC), as in loyalty_core.calc.
US_PER_DAY = 86_400_000_000
US_PER_S = 1_000_000
ANONYMOUS = "anonymous"


# -- Who, where and why: recorded on every movement a write causes -----------------------------


@dataclass(frozen=True)
class WriteContext:
    """The caller (``actor``), the till, the reason and the correlation id of one write."""

    actor: str = ANONYMOUS
    store_id: str = ""
    terminal_id: str = ""
    reason_code: str = ""
    correlation_id: str = ""


# -- Programmes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryRule:
    category: str
    cashback_bps: int
    pay_share_bps: int


@dataclass(frozen=True)
class DiscountRange:
    customer_group: str
    min_purchases_minor: int
    discount_bps: int


@dataclass(frozen=True)
class CustomField:
    """A custom field a programme declares (loyalty_core.custom_fields): its name, its type (text,
    integer, boolean, date, choice), whether every member must have a value, a choice's choices."""

    name: str
    type: str
    required: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreSender:
    """The SMS sender name messages to a store's members go under."""

    store_id: str
    sender_name: str


@dataclass(frozen=True)
class CustomValue:
    """A member's value of one custom field, in its type's canonical text form; '' for none."""

    name: str
    value: str


@dataclass(frozen=True)
class Programme:
    """A programme's settings (see protos/loyalty/v1/programme.proto for each field's meaning)."""

    name: str
    currency_code: str
    point_value_minor: int
    enabled: bool = True
    starts_at: int | None = None
    ends_at: int | None = None
    store_ids: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    point_lifetime_days: int = 0
    activation_delay_days: int = 0
    order_pay_share_bps: int = 10_000
    default_cashback_bps: int = 0
    default_pay_share_bps: int = 10_000
    category_rules: tuple[CategoryRule, ...] = ()
    discounted_items_earn: bool = False
    compatibility: str = "points_after_discounts"
    refund_returns_spent_points: bool = False
    # Seed 004's redemption rule for certificates (loyalty_core.certificates): single_order | multiple_orders.
    certificate_redemption: str = "single_order"
    hold_ttl_s: int = 900
    negative_balance_policy: str = "refuse"
    debt_limit_points: int = 0
    welcome_bonus_points: int = 0
    welcome_bonus_lifetime_days: int = 0
    # How the welcome bonus expires; None: welcome_bonus_lifetime_days days, 0 meaning the
    # programme's point lifetime (the rule before this field existed).
    welcome_bonus_expiry: Expiry | None = None
    require_confirmation: bool = False
    purchase_counts_when: str = "captured"
    discount_ranges: tuple[DiscountRange, ...] = ()
    card_secret_required: bool = False
    # loyalty_core.spending's names; empty: the default that follows card_secret_required.
    spend_identifications: tuple[str, ...] = ()
    # "Points expiring soon" notices go out this many days before an expiry date (e.g. (30, 7)).
    expiry_notice_days: tuple[int, ...] = ()
    custom_fields: tuple[CustomField, ...] = ()
    # SMS sender names: per store (the member's store, loyalty_core.sms.sender_name), else the default.
    sms_senders: tuple[StoreSender, ...] = ()
    default_sms_sender: str = ""
    # Output only: set by the store.
    programme_id: str = ""
    created_at: int = 0
    updated_at: int = 0


# Fields an update may change; currency_code is immutable (amounts already stored are in it).
PROGRAMME_MUTABLE_FIELDS = frozenset(
    f.name for f in dataclasses.fields(Programme)
) - {"programme_id", "created_at", "updated_at", "currency_code"}


@dataclass(frozen=True)
class CreateProgramme:
    request_id: str
    programme: Programme
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class UpdateProgramme:
    request_id: str
    programme_id: str
    # The new values; only the fields named in ``fields`` are read.
    programme: Programme
    fields: tuple[str, ...]
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Page(typing.Generic[T]):
    items: tuple[T, ...]
    next_page_token: str = ""


# -- Members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    member_id: str
    programme_id: str
    phone: str | None
    card_number: str | None
    status: str
    phone_confirmed: bool
    customer_group: str
    personal_discount_bps: int
    accumulative_discount_bps: int
    purchases_total_minor: int
    held_points: int
    debt_points: int
    earned_total_points: int
    spent_total_points: int
    expired_total_points: int
    enrolled_at: int
    offboarded_at: int | None
    has_card_secret: bool = False
    # The member's level (loyalty_core.levels) and since when; None without one.
    level_id: str | None = None
    level_assigned_at: int | None = None
    # When the member's personal data was erased (docs/trust.md "Members' data"); None while it is held.
    erased_at: int | None = None
    # The least purchase total of the range that gave accumulative_discount_bps when it was reached:
    # a refund or a void lowers the kept rate only below it.
    accumulative_from_minor: int = 0
    # The member's store: where they enrolled (WriteContext.store_id); '' for the back office.
    store_id: str = ""


@dataclass(frozen=True)
class MemberCard:
    """A member as the member card shows them: the row, the level's name and the way to the next one
    (filled by ``loyalty_core.membership.member_card``)."""

    member: Member
    level_name: str = ""
    next_level_name: str = ""
    next_level_spend_needed_minor: int = 0
    # category -> spend still needed there; only the categories that still lack some.
    next_level_category_spend_needed: dict[str, int] = field(default_factory=dict)
    next_level_visits_needed: int = 0
    # The custom field values (loyalty_core.custom_fields.shown), where the answer reads them.
    custom_fields: tuple[CustomValue, ...] = ()


@dataclass(frozen=True)
class CategoryPrivilege:
    """What a member gets in one category with a rule of its own (the programme's or the level's)."""

    category: str
    cashback_bps: int
    pay_share_bps: int


@dataclass(frozen=True)
class CardPrivileges:
    """The privileges the member card shows: the rates a sale would use now (GetMember)."""

    may_pay_with_points: bool
    earns: bool
    discount_bps: int
    discount_source: str
    # For categories without a rule of their own.
    cashback_bps: int
    pay_share_bps: int
    order_pay_share_bps: int
    categories: tuple[CategoryPrivilege, ...] = ()


@dataclass(frozen=True)
class ParticipationCard:
    """The whole member card in one answer (GetMember): member and level, balance, privileges."""

    card: MemberCard
    balance: Balance
    privileges: CardPrivileges


@dataclass(frozen=True)
class MemberFilter:
    """What ListMembers matches: every filter given must match (empty: any member)."""

    phone: str = ""
    card_number: str = ""
    status: str = ""
    level_id: str = ""
    # Members whose custom field (name) holds this value (canonical form); None for any.
    custom_field: CustomValue | None = None


@dataclass(frozen=True)
class MemberRef:
    """A member by exactly one of id, phone or card number (with the card's secret when given)."""

    member_id: str = ""
    phone: str = ""
    card_number: str = ""
    card_secret: str = ""


@dataclass(frozen=True)
class Enrol:
    request_id: str
    programme_id: str
    phone: str = ""
    card_number: str = ""
    generate_card_number: bool = False
    card_secret: str = ""
    customer_group: str = ""
    context: WriteContext = field(default_factory=WriteContext)
    custom_fields: tuple[CustomValue, ...] = ()


@dataclass(frozen=True)
class UpdateCustomFields:
    """Set the custom fields ``fields`` names (the update mask) to ``values``; a masked field without
    a value is cleared."""

    request_id: str
    programme_id: str
    member_id: str
    values: tuple[CustomValue, ...]
    fields: tuple[str, ...]
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Enrolled:
    member: MemberCard
    welcome_bonus_points: int
    # The card secret generated for the member, shown once: never stored, so empty on a replay.
    generated_card_secret: str = ""


@dataclass(frozen=True)
class Offboard:
    request_id: str
    programme_id: str
    member_id: str
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class BurnOut:
    expires_at: int
    points: int


@dataclass(frozen=True)
class PendingActivation:
    activates_at: int
    source: str
    points: int
    order_id: str


@dataclass(frozen=True)
class Forecast:
    """Burn-outs after ``as_of`` (one page), and what awaits activation then."""

    as_of: int
    burn_outs: tuple[BurnOut, ...]
    pending: tuple[PendingActivation, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class Balance:
    active_points: int
    pending_points: int
    held_points: int
    burning_points: int
    burn_outs: tuple[BurnOut, ...]
    debt_points: int
    earned_total_points: int
    spent_total_points: int
    expired_total_points: int
    as_of: int


# -- Baskets, orders and the checkout flow ------------------------------------------------------


@dataclass(frozen=True)
class BasketLine:
    line_id: str
    sku: str
    category: str
    quantity: int
    unit_price_minor: int
    line_discount_minor: int = 0


@dataclass(frozen=True)
class LinePricing:
    line_id: str
    sku: str
    category: str
    quantity: int
    unit_price_minor: int
    gross_minor: int
    line_discount_minor: int
    order_discount_minor: int
    net_minor: int
    points: int
    points_money_minor: int
    money_due_minor: int
    earned_points: int


@dataclass(frozen=True)
class PricingTerms:
    """The rates a basket was priced with, kept with the order so capture re-prices with the same ones."""

    discount_bps: int
    discount_source: str
    # One rate per category, in the order of ``categories``.
    categories: tuple[str, ...]
    cashback_bps: tuple[int, ...]
    pay_share_bps: tuple[int, ...]
    order_pay_share_bps: int
    point_value_minor: int
    discounted_items_earn: bool
    points_instead_of_discounts: bool


@dataclass(frozen=True)
class CertificatePayment:
    """What one presented certificate pays of an order (points' worth)."""

    certificate_id: str
    points: int
    expires_at: int | None


@dataclass(frozen=True)
class Pricing:
    """A priced basket. ``points_applied`` is what the member's points pay, ``certificate_points``
    what presented certificates pay (``certificates``: each one's part); the lines' ``points`` and
    ``points_money_minor`` are both together."""

    currency_code: str
    member_id: str
    lines: tuple[LinePricing, ...]
    gross_minor: int
    line_discount_minor: int
    order_discount_minor: int
    net_minor: int
    points_max: int
    points_applied: int
    points_money_minor: int
    money_due_minor: int
    earned_points: int
    terms: PricingTerms
    certificate_points: int = 0
    certificates: tuple[CertificatePayment, ...] = ()

    @property
    def discount_bps(self) -> int:
        """The order discount rate given: none where points replaced the discounts."""
        return 0 if self.terms.points_instead_of_discounts else self.terms.discount_bps

    @property
    def discount_source(self) -> str:
        """The rule that gave ``discount_bps`` ("none" where points replaced the discounts)."""
        return "none" if self.terms.points_instead_of_discounts else self.terms.discount_source


# Why points cannot pay for a quoted basket (points_max 0), most fundamental first; "" when they can.
POINTS_BLOCKED = ("member_deactivated", "member_not_confirmed", "no_points_available", "order_pay_share_zero",
                  "category_pay_share_zero", "nothing_payable")


@dataclass(frozen=True)
class Quoted:
    """A Quote's answer: the priced basket, and why points cannot pay for it (one of POINTS_BLOCKED,
    or "" when its points_max is above 0)."""

    pricing: Pricing
    points_blocked: str


@dataclass(frozen=True)
class Quote:
    programme_id: str
    member: MemberRef
    lines: tuple[BasketLine, ...]
    store_id: str = ""
    channel: str = ""
    requested_points: int = 0
    currency_code: str = ""
    # The codes of the certificates the member presents (loyalty_core.certificates); secrets.
    certificate_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checkout:
    request_id: str
    order_id: str
    quote: Quote
    context: WriteContext = field(default_factory=WriteContext)
    # The one-time code sent to the member's phone (SendSpendCode); a secret.
    spend_code: str = ""
    # The caller is a trusted channel (docs/trust.md "Who may spend points").
    member_id_trusted: bool = False


@dataclass(frozen=True)
class PostSale(Checkout):
    """A sale the till completed offline, checked out and captured in one call; ``sale_time`` is
    when it was made (µs since the epoch; 0 when the caller did not say)."""

    sale_time: int = 0


@dataclass(frozen=True)
class Capture:
    request_id: str
    programme_id: str
    order_id: str
    # None spends everything held.
    points: int | None = None
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Cancel:
    request_id: str
    programme_id: str
    order_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class RefundLine:
    line_id: str
    quantity: int


@dataclass(frozen=True)
class Refund:
    request_id: str
    programme_id: str
    order_id: str
    # Empty refunds everything not yet refunded.
    lines: tuple[RefundLine, ...] = ()
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Complete:
    request_id: str
    programme_id: str
    order_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Void:
    """Void a paid order: it stops counting; its points stay."""

    request_id: str
    programme_id: str
    order_id: str
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Hold:
    hold_id: str
    points: int
    state: str
    expires_at: int


@dataclass(frozen=True)
class RefundRecord:
    refund_id: str
    lines: tuple[RefundLine, ...]
    money_minor: int
    clawback_points: int
    returned_points: int
    shortfall_points: int
    debt_points: int
    created_at: int
    # Of what certificates paid, what came back to them (the programme returning spent points).
    certificate_returned_points: int = 0


@dataclass(frozen=True)
class Order:
    programme_id: str
    order_id: str
    member_id: str
    state: str
    store_id: str
    channel: str
    pricing: Pricing
    hold: Hold | None
    refunds: tuple[RefundRecord, ...]
    created_at: int
    captured_at: int | None
    spent_points: int = 0
    earned_points: int = 0


@dataclass(frozen=True)
class Captured:
    order: Order
    spent_points: int
    earned_points: int


@dataclass(frozen=True)
class Cancelled:
    order: Order
    released_points: int


@dataclass(frozen=True)
class Refunded:
    order: Order
    refund: RefundRecord


@dataclass(frozen=True)
class Voided:
    order: Order
    # What stopped counting towards the member's purchase total.
    uncounted_minor: int


# -- Manual points, history, expiry, verification ----------------------------------------------


@dataclass(frozen=True)
class Expiry:
    """How long accrued points live: exactly one of the rules."""

    rule: str = "programme_default"  # programme_default | lifetime_days | expire_at | never
    lifetime_days: int = 0
    expires_at: int = 0


@dataclass(frozen=True)
class Accrue:
    request_id: str
    programme_id: str
    member_id: str
    points: int
    expiry: Expiry = field(default_factory=Expiry)
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Redeem:
    request_id: str
    programme_id: str
    member_id: str
    points: int
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)
    # As Checkout's.
    spend_code: str = ""
    member_id_trusted: bool = False


@dataclass(frozen=True)
class LotRecord:
    """A lot as operators see it; ``expires_at`` is calc's NEVER for points that do not expire."""

    lot_id: int
    source: str
    amount: int
    remaining: int
    activates_at: int
    expires_at: int
    order_id: str
    created_at: int
    expired_at: int | None


@dataclass(frozen=True)
class LotAllocation:
    lot_id: int
    points: int


@dataclass(frozen=True)
class Movement:
    movement_id: int
    kind: str
    # As the API shows it (see docs/ledger.md "Movements"): the signed change of the member's
    # points; held and released carry the amount moved between active and held.
    points: int
    order_id: str
    created_at: int
    lots: tuple[LotAllocation, ...]
    actor: str
    store_id: str
    terminal_id: str
    reason_code: str
    correlation_id: str
    comment: str


@dataclass(frozen=True)
class History:
    programme_id: str
    member_id: str
    start_at: int | None = None
    end_at: int | None = None
    kinds: tuple[str, ...] = ()
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class Accrued:
    """A manual accrual's movement and the lot it made."""

    movement: Movement
    lot: LotRecord


@dataclass(frozen=True)
class ExpiryRun:
    lots_expired: int = 0
    points_expired: int = 0
    lots_activated: int = 0
    points_activated: int = 0
    holds_released: int = 0
    points_released: int = 0
    # Members whose due work this run did.
    members: int = 0
    # Certificates past their expiry burnt, and what was left on them.
    certificates_expired: int = 0
    certificate_points_expired: int = 0
    # Certificates whose checkout's hold lifetime ran out, given back.
    certificate_holds_released: int = 0


@dataclass(frozen=True)
class Disagreement:
    programme_id: str
    member_id: str
    invariant: str
    detail: str


@dataclass(frozen=True)
class Verification:
    members_checked: int
    lots_checked: int
    disagreements: tuple[Disagreement, ...]


# -- JSON for stored results (idempotency replays, orders.pricing) ------------------------------


# Every write encodes its request (the idempotency fingerprint) and its result (stored for
# replays), and a capture decodes the order's pricing, so each dataclass gets an encoder and a
# decoder built once from its type hints: plain fields copied, nested ones by their own codec.
# A field whose type the hints do not pin down (a TypeVar, Any) is walked by its runtime value.
_PLAIN = frozenset({str, int, bool, float, type(None)})
_Codec = typing.Callable[[Any], Any]
_ENCODERS: dict[type, _Codec] = {}
_DECODERS: dict[type, _Codec] = {}


def to_json(value: Any) -> Any:
    """A dataclass (or a value inside one) as plain JSON types, field by field."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    encode = _ENCODERS.get(kind)
    if encode is None:
        if not (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            return [to_json(v) for v in value] if isinstance(value, tuple | list) else value
        encode = _dataclass_codec(kind, _field_encoder, _ENCODERS, "encode")
    return encode(value)


def from_json(cls: type[T], data: Any) -> T:
    """The inverse of :func:`to_json` for the dataclass ``cls``."""
    if data is None:
        return None  # type: ignore[return-value]
    decode = _DECODERS.get(cls) or _dataclass_codec(cls, _field_decoder, _DECODERS, "decode")
    try:
        return decode(data)  # type: ignore[no-any-return]
    except KeyError:
        # Stored before a field with a default was added: that field takes its default.
        hints = typing.get_type_hints(cls)
        return cls(**{name: _decode_field(hints[name], value) for name, value in data.items()})


def _decode_field(tp: Any, value: Any) -> Any:
    """A field's JSON value as the type ``tp`` declares (``from_json`` for one field)."""
    decode = _field_decoder(tp)
    return value if decode is None or value is None else decode(value)


def _dataclass_codec(cls: type, field_codec: typing.Callable[[Any], _Codec | None], codecs: dict[type, _Codec],
                     direction: str) -> _Codec:
    """Generated like dataclasses' own methods: one dict display (encode) or one call (decode),
    each field read once and passed through its codec when it has one."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if direction == "encode" or f.init]
    env: dict[str, Any] = {"cls": cls}
    parts = []
    for i, name in enumerate(names):
        codec = field_codec(hints[name])
        if direction == "encode":
            read = f"v.{name}"
        else:
            read = f"v[{name!r}]"
        if codec is not None:
            env[f"c{i}"] = codec
            read = f"c{i}({read})"
        parts.append(f"{name!r}: {read}" if direction == "encode" else f"{name}={read}")
    body = "{" + ", ".join(parts) + "}" if direction == "encode" else "cls(" + ", ".join(parts) + ")"
    exec(f"def {direction}(v):\n    return {body}\n", env)  # noqa: S102 - our own field names only
    codec = codecs[cls] = env[direction]
    return codec


def _field_encoder(tp: Any) -> _Codec | None:
    """How to encode a field declared ``tp``; None when its value is already plain JSON."""
    if tp in _PLAIN:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [_field_encoder(a) for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return None if inner[0] is None else _or_none(inner[0])
        return to_json
    if origin is tuple and len(args := typing.get_args(tp)) == 2 and args[1] is Ellipsis:
        item = _field_encoder(args[0])
        return list if item is None else (lambda v: [item(x) for x in v])
    if dataclasses.is_dataclass(tp):
        return lambda v: (_ENCODERS.get(tp) or _dataclass_codec(tp, _field_encoder, _ENCODERS, "encode"))(v)
    return to_json


def _field_decoder(tp: Any) -> _Codec | None:
    """How to decode a field declared ``tp``; None when the JSON value is the field's value."""
    if tp in _PLAIN:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        decode = _field_decoder(inner[0])
        return None if decode is None else _or_none(decode)
    if origin is tuple:
        item = _field_decoder(typing.get_args(tp)[0])
        return tuple if item is None else (lambda v: tuple([item(x) for x in v]))
    if dataclasses.is_dataclass(tp):
        return lambda v: from_json(tp, v)
    return None


def _or_none(codec: _Codec) -> _Codec:
    return lambda v: None if v is None else codec(v)


@dataclass(frozen=True)
class ImportedLot:
    """An opening balance as one lot: its points, activation (None: at the import) and expiry (None: never)."""

    points: int
    activates_at: int | None = None
    expires_at: int | None = None


@dataclass(frozen=True)
class ImportedPurchase:
    """A past purchase from the previous system: its order id there, time, amount and parts by category."""

    order_id: str
    at: int
    amount_minor: int
    by_category: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ImportedMember:
    """One member of the previous system (docs/membership.md "Importing members"); status "" is
    enrolment's, level_name "" the one the purchases reach, purchases_total_minor 0 their sum,
    enrolled_at 0 the import's time."""

    external_id: str
    phone: str = ""
    card_number: str = ""
    status: str = ""
    customer_group: str = ""
    level_name: str = ""
    purchases_total_minor: int = 0
    custom_fields: tuple[CustomValue, ...] = ()
    lots: tuple[ImportedLot, ...] = ()
    purchases: tuple[ImportedPurchase, ...] = ()
    enrolled_at: int = 0


@dataclass(frozen=True)
class ImportRow:
    """One row of an import: its programme, where it is in its source (0 for nowhere) and the member."""

    programme_id: str
    line: int
    member: ImportedMember


@dataclass(frozen=True)
class Imported:
    """A row imported: its member, and whether an earlier import made it (nothing written now)."""

    member_id: str
    replayed: bool = False
