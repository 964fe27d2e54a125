"""ProgrammeService: create, update by field mask, get, list."""

from __future__ import annotations

import dataclasses
from typing import Any

from grpc import aio

from loyalty.v1 import programme_pb2, programme_pb2_grpc
from loyalty_core import spending
from loyalty_core.errors import InvalidArgument
from loyalty_core.model import (
    PROGRAMME_MUTABLE_FIELDS, CategoryRule, CreateProgramme, CustomField, DiscountRange, Programme, StoreSender,
    UpdateProgramme,
)
from loyalty_core.service import programmes
from server.servicers.convert import enum_value, expiry, expiry_message, micros, timestamp, write_context

COMPATIBILITY = {
    programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS: "points_after_discounts",
    programme_pb2.COMPATIBILITY_POINTS_INSTEAD_OF_DISCOUNTS: "points_instead_of_discounts",
}
POLICY = {
    programme_pb2.NEGATIVE_BALANCE_POLICY_REFUSE: "refuse",
    programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE: "take_available",
    programme_pb2.NEGATIVE_BALANCE_POLICY_DEBT: "debt",
}
COUNTS_WHEN = {
    programme_pb2.PURCHASE_COUNTS_WHEN_CAPTURED: "captured",
    programme_pb2.PURCHASE_COUNTS_WHEN_COMPLETED: "completed",
}
REDEMPTION = {
    programme_pb2.CERTIFICATE_REDEMPTION_SINGLE_ORDER: "single_order",
    programme_pb2.CERTIFICATE_REDEMPTION_MULTIPLE_ORDERS: "multiple_orders",
}
CUSTOM_FIELD_TYPE = {
    programme_pb2.CUSTOM_FIELD_TYPE_TEXT: "text",
    programme_pb2.CUSTOM_FIELD_TYPE_INTEGER: "integer",
    programme_pb2.CUSTOM_FIELD_TYPE_BOOLEAN: "boolean",
    programme_pb2.CUSTOM_FIELD_TYPE_DATE: "date",
    programme_pb2.CUSTOM_FIELD_TYPE_CHOICE: "choice",
}
SPEND_IDENTIFICATION = {
    programme_pb2.SPEND_IDENTIFICATION_CARD_SECRET: spending.CARD_SECRET,
    programme_pb2.SPEND_IDENTIFICATION_CARD: spending.CARD,
    programme_pb2.SPEND_IDENTIFICATION_PHONE: spending.PHONE,
    programme_pb2.SPEND_IDENTIFICATION_SPEND_CODE: spending.SPEND_CODE,
    programme_pb2.SPEND_IDENTIFICATION_TRUSTED_MEMBER_ID: spending.TRUSTED_MEMBER_ID,
}
# Proto field names that differ from the domain's; the others are the same.
RENAMED = {"start_time": "starts_at", "end_time": "ends_at", "hold_ttl_seconds": "hold_ttl_s"}
# Unset enums (zero) and an unset hold lifetime take the domain's defaults on create.
DEFAULTS = Programme(name="", currency_code="", point_value_minor=0)
# Fields whose default is not their zero: on create, false or 0 is unset unless
# CreateProgrammeRequest.explicit_fields names the field.
ZERO_IS_UNSET_ON_CREATE = ("enabled", "order_pay_share_bps", "default_pay_share_bps")


def _enum(table: dict[int, str], value: int, field: str, default: str) -> str:
    return enum_value(table, value, f"programme.{field}", unset=default)


def to_domain(p: programme_pb2.Programme) -> Programme:
    return Programme(
        name=p.name, currency_code=p.currency_code, point_value_minor=p.point_value_minor, enabled=p.enabled,
        starts_at=micros(p, "start_time"), ends_at=micros(p, "end_time"), store_ids=tuple(p.store_ids),
        channels=tuple(p.channels), point_lifetime_days=p.point_lifetime_days,
        activation_delay_days=p.activation_delay_days, order_pay_share_bps=p.order_pay_share_bps,
        default_cashback_bps=p.default_cashback_bps, default_pay_share_bps=p.default_pay_share_bps,
        category_rules=tuple(CategoryRule(r.category, r.cashback_bps, r.pay_share_bps) for r in p.category_rules),
        discounted_items_earn=p.discounted_items_earn,
        compatibility=_enum(COMPATIBILITY, p.compatibility, "compatibility", DEFAULTS.compatibility),
        refund_returns_spent_points=p.refund_returns_spent_points,
        hold_ttl_s=p.hold_ttl_seconds or DEFAULTS.hold_ttl_s,
        negative_balance_policy=_enum(POLICY, p.negative_balance_policy, "negative_balance_policy",
                                      DEFAULTS.negative_balance_policy),
        debt_limit_points=p.debt_limit_points, welcome_bonus_points=p.welcome_bonus_points,
        welcome_bonus_lifetime_days=p.welcome_bonus_lifetime_days, require_confirmation=p.require_confirmation,
        purchase_counts_when=_enum(COUNTS_WHEN, p.purchase_counts_when, "purchase_counts_when",
                                   DEFAULTS.purchase_counts_when),
        discount_ranges=tuple(DiscountRange(r.customer_group, r.min_purchases_minor, r.discount_bps)
                              for r in p.discount_ranges),
        card_secret_required=p.card_secret_required,
        spend_identifications=tuple(enum_value(SPEND_IDENTIFICATION, value, f"programme.spend_identifications[{i}]",
                                               unset=None) for i, value in enumerate(p.spend_identifications)),
        expiry_notice_days=tuple(p.expiry_notice_days),
        programme_id=p.programme_id,
        welcome_bonus_expiry=expiry(p.welcome_bonus_expiry) if p.HasField("welcome_bonus_expiry") else None,
        custom_fields=tuple(
            CustomField(f.name, enum_value(CUSTOM_FIELD_TYPE, f.type, f"programme.custom_fields[{i}].type"),
                        f.required, tuple(f.choices)) for i, f in enumerate(p.custom_fields)),
        sms_senders=tuple(StoreSender(s.store_id, s.sender_name) for s in p.sms_senders),
        default_sms_sender=p.default_sms_sender,
        certificate_redemption=_enum(REDEMPTION, p.certificate_redemption, "certificate_redemption",
                                     DEFAULTS.certificate_redemption),
    )


def for_create(request: programme_pb2.CreateProgrammeRequest) -> Programme:
    """The programme to create: to_domain, with the defaults of the fields left unset."""
    explicit = list(request.explicit_fields.paths)
    for path in explicit:
        if path not in ZERO_IS_UNSET_ON_CREATE:
            raise InvalidArgument("value_out_of_range", f"explicit_fields may name only "
                                  f"{', '.join(ZERO_IS_UNSET_ON_CREATE)}, not {path!r}", field="explicit_fields")
    programme = to_domain(request.programme)
    unset = {name: getattr(DEFAULTS, name) for name in ZERO_IS_UNSET_ON_CREATE
             if not getattr(programme, name) and name not in explicit}
    return dataclasses.replace(programme, **unset)


def _name(table: dict[int, str], value: str) -> int:
    return next(k for k, v in table.items() if v == value)


def to_proto(p: Programme) -> programme_pb2.Programme:
    return programme_pb2.Programme(
        programme_id=p.programme_id, name=p.name, enabled=p.enabled, start_time=timestamp(p.starts_at),
        end_time=timestamp(p.ends_at), store_ids=p.store_ids, channels=p.channels, currency_code=p.currency_code,
        point_value_minor=p.point_value_minor, point_lifetime_days=p.point_lifetime_days,
        activation_delay_days=p.activation_delay_days, order_pay_share_bps=p.order_pay_share_bps,
        default_cashback_bps=p.default_cashback_bps, default_pay_share_bps=p.default_pay_share_bps,
        category_rules=[programme_pb2.CategoryRule(category=r.category, cashback_bps=r.cashback_bps,
                                                   pay_share_bps=r.pay_share_bps) for r in p.category_rules],
        discounted_items_earn=p.discounted_items_earn, compatibility=_name(COMPATIBILITY, p.compatibility),
        refund_returns_spent_points=p.refund_returns_spent_points, hold_ttl_seconds=p.hold_ttl_s,
        negative_balance_policy=_name(POLICY, p.negative_balance_policy), debt_limit_points=p.debt_limit_points,
        welcome_bonus_points=p.welcome_bonus_points, welcome_bonus_lifetime_days=p.welcome_bonus_lifetime_days,
        require_confirmation=p.require_confirmation, purchase_counts_when=_name(COUNTS_WHEN, p.purchase_counts_when),
        discount_ranges=[programme_pb2.DiscountRange(customer_group=r.customer_group,
                                                     min_purchases_minor=r.min_purchases_minor,
                                                     discount_bps=r.discount_bps) for r in p.discount_ranges],
        card_secret_required=p.card_secret_required,
        spend_identifications=[_name(SPEND_IDENTIFICATION, name) for name in p.spend_identifications],
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at), expiry_notice_days=p.expiry_notice_days,
        welcome_bonus_expiry=None if p.welcome_bonus_expiry is None else expiry_message(p.welcome_bonus_expiry),
        custom_fields=[programme_pb2.CustomFieldDefinition(name=f.name, type=_name(CUSTOM_FIELD_TYPE, f.type),
                                                           required=f.required, choices=f.choices)
                       for f in p.custom_fields],
        sms_senders=[programme_pb2.StoreSmsSender(store_id=s.store_id, sender_name=s.sender_name)
                     for s in p.sms_senders],
        default_sms_sender=p.default_sms_sender,
        certificate_redemption=_name(REDEMPTION, p.certificate_redemption),
    )


def mask_fields(paths: list[str]) -> tuple[str, ...]:
    """Field-mask paths (proto names, or "*") as the domain's field names."""
    if paths == ["*"]:
        return tuple(sorted(PROGRAMME_MUTABLE_FIELDS))
    fields = []
    for path in paths:
        name = RENAMED.get(path, path)
        if name not in PROGRAMME_MUTABLE_FIELDS:
            raise InvalidArgument("value_out_of_range", f"{path!r} is not a field an update may change",
                                  field="update_mask")
        fields.append(name)
    return tuple(fields)


class ProgrammeServicer(programme_pb2_grpc.ProgrammeServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def CreateProgramme(self, request: Any, context: aio.ServicerContext) -> Any:
        req = CreateProgramme(request.request_id, for_create(request), write_context(None, context, request.request_id))
        return programme_pb2.CreateProgrammeResponse(programme=to_proto(await programmes.create(self.db, self.clock, req)))

    async def UpdateProgramme(self, request: Any, context: aio.ServicerContext) -> Any:
        req = UpdateProgramme(
            request.request_id, request.programme.programme_id, to_domain(request.programme),
            mask_fields(list(request.update_mask.paths)), write_context(None, context, request.request_id),
        )
        return programme_pb2.UpdateProgrammeResponse(programme=to_proto(await programmes.update(self.db, self.clock, req)))

    async def GetProgramme(self, request: Any, context: aio.ServicerContext) -> Any:
        return programme_pb2.GetProgrammeResponse(programme=to_proto(await programmes.get(self.db, request.programme_id)))

    async def ListProgrammes(self, request: Any, context: aio.ServicerContext) -> Any:
        page = await programmes.list_page(self.db, request.page_size, request.page_token)
        return programme_pb2.ListProgrammesResponse(programmes=[to_proto(p) for p in page.items],
                                                    next_page_token=page.next_page_token)
