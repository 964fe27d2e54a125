"""MembershipService: statuses, phone confirmation, cards, personal discounts, levels, batch runs, history."""

from __future__ import annotations

from typing import Any

from grpc import aio

from loyalty.v1 import membership_pb2, membership_pb2_grpc
from loyalty_core import levels
from loyalty_core.errors import InvalidArgument
from loyalty_core.levels import Level, LevelCategoryRule
from loyalty_core.service import membership as cases
from server.servicers.convert import MEMBER_STATUS, enum_value, member_card, micros, timestamp, write_context

STATUS = {value: name for name, value in MEMBER_STATUS.items()}
PRIVILEGE = {membership_pb2.LEVEL_PRIVILEGE_CASHBACK: levels.CASHBACK,
             membership_pb2.LEVEL_PRIVILEGE_DISCOUNT: levels.DISCOUNT}
PRIVILEGE_VALUE = {name: value for value, name in PRIVILEGE.items()}
TAB = {membership_pb2.HISTORY_TAB_UNSPECIFIED: "all", membership_pb2.HISTORY_TAB_ALL: "all",
       membership_pb2.HISTORY_TAB_ORDERS: "orders", membership_pb2.HISTORY_TAB_PARTICIPATION: "participation",
       membership_pb2.HISTORY_TAB_MESSAGES: "messages", membership_pb2.HISTORY_TAB_POINTS: "points"}
TAB_VALUE = {"orders": membership_pb2.HISTORY_TAB_ORDERS, "participation": membership_pb2.HISTORY_TAB_PARTICIPATION,
             "messages": membership_pb2.HISTORY_TAB_MESSAGES, "points": membership_pb2.HISTORY_TAB_POINTS}
# Level fields an update mask may name: the proto's names are the domain's.
LEVEL_PATHS = sorted(cases.LEVEL_MUTABLE_FIELDS)


def level_to_domain(p: membership_pb2.Level) -> Level:
    spend: dict[str, int] = {}
    for i, part in enumerate(p.category_spend_needed):
        if not part.category or part.category in spend:
            raise InvalidArgument("value_out_of_range", "each category's spend needs its own category",
                                  field=f"level.category_spend_needed[{i}].category")
        spend[part.category] = part.spend_needed_minor
    privilege = enum_value(PRIVILEGE, p.privilege, "level.privilege")
    return Level(
        level_id=p.level_id, programme_id=p.programme_id, name=p.name, priority=p.priority,
        customer_group=p.customer_group, spend_needed_minor=p.spend_needed_minor, category_spend_needed=spend,
        spend_period_days=p.spend_period_days, visits_needed=p.visits_needed, visit_period_days=p.visit_period_days,
        privilege=privilege, cashback_bps=p.cashback_bps,
        category_rules=tuple(LevelCategoryRule(r.category, r.cashback_bps,
                                               r.pay_share_bps if r.HasField("pay_share_bps") else None)
                             for r in p.category_rules),
        discount_bps=p.discount_bps, pay_share_bps=p.pay_share_bps if p.HasField("pay_share_bps") else None,
    )


def level_to_proto(record: cases.LevelRecord) -> membership_pb2.Level:
    lv = record.level
    return membership_pb2.Level(
        level_id=lv.level_id, programme_id=lv.programme_id, name=lv.name, priority=lv.priority,
        customer_group=lv.customer_group, spend_needed_minor=lv.spend_needed_minor,
        category_spend_needed=[membership_pb2.CategorySpend(category=c, spend_needed_minor=v)
                               for c, v in lv.category_spend_needed.items()],
        spend_period_days=lv.spend_period_days, visits_needed=lv.visits_needed,
        visit_period_days=lv.visit_period_days, privilege=PRIVILEGE_VALUE[lv.privilege], cashback_bps=lv.cashback_bps,
        category_rules=[membership_pb2.LevelCategoryRule(category=r.category, cashback_bps=r.cashback_bps,
                                                         pay_share_bps=r.pay_share_bps)
                        for r in lv.category_rules],
        discount_bps=lv.discount_bps, pay_share_bps=lv.pay_share_bps, create_time=timestamp(record.created_at),
        update_time=timestamp(record.updated_at),
    )


def level_mask(paths: list[str]) -> tuple[str, ...]:
    if paths == ["*"]:
        return tuple(LEVEL_PATHS)
    for path in paths:
        if path not in cases.LEVEL_MUTABLE_FIELDS:
            raise InvalidArgument("value_out_of_range", f"{path!r} is not a level field an update may change",
                                  field="update_mask")
    return tuple(paths)


class MembershipServicer(membership_pb2_grpc.MembershipServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.deps = deps
        self.db, self.clock = deps.db, deps.clock
        self.policy = cases.ConfirmationPolicy.from_settings(deps.settings)

    async def ChangeMemberStatus(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.ChangeStatus(request.request_id, request.programme_id, request.member_id,
                                 enum_value(STATUS, request.status, "status"), request.comment,
                                 write_context(None, context, request.request_id))
        card = await cases.change_status(self.db, self.clock, req)
        return membership_pb2.ChangeMemberStatusResponse(member=member_card(card))

    async def _send_code(self, request: Any, context: aio.ServicerContext, send: Any, answer: Any) -> Any:
        """StartPhoneConfirmation and SendSpendCode: a one-time code to the member's phone."""
        req = cases.StartConfirmation(request.request_id, request.programme_id, request.member_id,
                                      write_context(None, context, request.request_id))
        # Read at each call: the sender is part of the process's dependencies, not of this servicer.
        sent = await send(self.db, self.clock, self.deps.sms, self.policy, req)
        return answer(expire_time=timestamp(sent.expires_at), resend_time=timestamp(sent.resend_at),
                      attempts_left=sent.attempts_left)

    async def StartPhoneConfirmation(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._send_code(request, context, cases.start_confirmation,
                                     membership_pb2.StartPhoneConfirmationResponse)

    async def SendSpendCode(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._send_code(request, context, cases.send_spend_code, membership_pb2.SendSpendCodeResponse)

    async def ConfirmPhone(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.ConfirmPhone(request.request_id, request.programme_id, request.member_id, request.code,
                                 write_context(None, context, request.request_id))
        return membership_pb2.ConfirmPhoneResponse(member=member_card(await cases.confirm_phone(self.db, self.clock, req)))

    def _card_change(self, request: Any, context: aio.ServicerContext) -> cases.CardChange:
        return cases.CardChange(request.request_id, request.programme_id, request.member_id,
                                write_context(None, context, request.request_id))

    async def RegenerateCardSecret(self, request: Any, context: aio.ServicerContext) -> Any:
        issued = await cases.regenerate_card_secret(self.db, self.clock, self._card_change(request, context))
        return membership_pb2.RegenerateCardSecretResponse(member=member_card(issued.card),
                                                           card_secret=issued.card_secret)

    async def GenerateVirtualCard(self, request: Any, context: aio.ServicerContext) -> Any:
        issued = await cases.generate_virtual_card(self.db, self.clock, self._card_change(request, context))
        return membership_pb2.GenerateVirtualCardResponse(member=member_card(issued.card),
                                                          card_secret=issued.card_secret)

    async def UnlockCard(self, request: Any, context: aio.ServicerContext) -> Any:
        unlocked = await cases.unlock_card(self.db, self.clock, self._card_change(request, context))
        return membership_pb2.UnlockCardResponse(member=member_card(unlocked.card), was_locked=unlocked.was_locked)

    async def SetPersonalDiscount(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.SetPersonalDiscount(request.request_id, request.programme_id, request.member_id,
                                        request.discount_bps, request.comment,
                                        write_context(None, context, request.request_id))
        card = await cases.set_personal_discount(self.db, self.clock, req)
        return membership_pb2.SetPersonalDiscountResponse(member=member_card(card))

    async def ChangeMemberLevel(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.ChangeLevel(request.request_id, request.programme_id, request.member_id, request.level_id,
                                request.comment, write_context(None, context, request.request_id))
        card = await cases.change_level(self.db, self.clock, req)
        return membership_pb2.ChangeMemberLevelResponse(member=member_card(card))

    async def CreateLevel(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.CreateLevel(request.request_id, level_to_domain(request.level),
                                write_context(None, context, request.request_id))
        return membership_pb2.CreateLevelResponse(level=level_to_proto(await cases.create_level(self.db, self.clock, req)))

    async def UpdateLevel(self, request: Any, context: aio.ServicerContext) -> Any:
        req = cases.UpdateLevel(request.request_id, level_to_domain(request.level),
                                level_mask(list(request.update_mask.paths)),
                                write_context(None, context, request.request_id))
        return membership_pb2.UpdateLevelResponse(level=level_to_proto(await cases.update_level(self.db, self.clock, req)))

    async def ListLevels(self, request: Any, context: aio.ServicerContext) -> Any:
        page = await cases.list_levels(self.db, request.programme_id, request.page_size, request.page_token)
        return membership_pb2.ListLevelsResponse(levels=[level_to_proto(r) for r in page.items],
                                                 next_page_token=page.next_page_token)

    async def RunLevelReview(self, request: Any, context: aio.ServicerContext) -> Any:
        run = await cases.run_level_review(self.db, self.clock, request.programme_id, micros(request, "as_of_time"),
                                           request.batch_size)
        return membership_pb2.RunLevelReviewResponse(members_reviewed=run.members_reviewed,
                                                     members_dropped=run.members_dropped)

    async def RecalculateDiscounts(self, request: Any, context: aio.ServicerContext) -> Any:
        run = await cases.recalculate_discounts(self.db, self.clock, request.programme_id, request.batch_size)
        return membership_pb2.RecalculateDiscountsResponse(members_recalculated=run.members_recalculated,
                                                           members_changed=run.members_changed)

    async def ListMemberHistory(self, request: Any, context: aio.ServicerContext) -> Any:
        page = await cases.list_history(self.db, request.programme_id, request.member_id,
                                        enum_value(TAB, request.tab, "tab"),
                                        request.page_size, request.page_token, micros(request, "start_time"),
                                        micros(request, "end_time"))
        return membership_pb2.ListMemberHistoryResponse(
            events=[membership_pb2.HistoryEvent(event_id=e.event_id, tab=TAB_VALUE[e.tab], kind=e.kind,
                                                create_time=timestamp(e.created_at), actor=e.actor,
                                                comment=e.comment, details=e.details) for e in page.items],
            next_page_token=page.next_page_token)
