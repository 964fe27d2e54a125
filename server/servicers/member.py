"""MemberService: enrol, get, look up at the till, balance, off-board, erase, export, edit (custom fields too) and find."""

from __future__ import annotations

from typing import Any

from grpc import aio

from loyalty.v1 import member_pb2, member_pb2_grpc
from loyalty_core.model import CustomValue, Enrol, MemberFilter, Offboard, UpdateCustomFields
from loyalty_core.service import custom_fields, member_data, members, participation, privacy
from server.servicers.convert import (
    balance, enum_value, forecast, member_card, member_ref, micros, privileges, timestamp, write_context,
)
from server.servicers.membership import STATUS


class MemberServicer(member_pb2_grpc.MemberServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def EnrolMember(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Enrol(
            request_id=request.request_id, programme_id=request.programme_id, phone=request.phone,
            card_number=request.card_number, generate_card_number=request.generate_card_number,
            card_secret=request.card_secret, customer_group=request.customer_group,
            context=write_context(request.context, context, request.request_id),
            custom_fields=custom_values(request.custom_fields),
        )
        enrolled = await members.enrol(self.db, self.clock, req)
        return member_pb2.EnrolMemberResponse(member=member_card(enrolled.member),
                                              welcome_bonus_points=enrolled.welcome_bonus_points,
                                              generated_card_secret=enrolled.generated_card_secret)

    async def GetMember(self, request: Any, context: aio.ServicerContext) -> Any:
        whole = await participation.get(self.db, self.clock, request.programme_id, request.member_id)
        return member_pb2.GetMemberResponse(member=member_card(whole.card), balance=balance(whole.balance),
                                            privileges=privileges(whole.privileges))

    async def LookupMember(self, request: Any, context: aio.ServicerContext) -> Any:
        card, points = await members.lookup(self.db, self.clock, request.programme_id, member_ref(request.member))
        return member_pb2.LookupMemberResponse(member=member_card(card), balance=balance(points))

    async def GetBalance(self, request: Any, context: aio.ServicerContext) -> Any:
        points = await members.balance(self.db, self.clock, request.programme_id, request.member_id)
        return member_pb2.GetBalanceResponse(balance=balance(points))

    async def GetPointsForecast(self, request: Any, context: aio.ServicerContext) -> Any:
        return forecast(await members.forecast(self.db, self.clock, request.programme_id, request.member_id,
                                               micros(request, "as_of_time"), micros(request, "end_time"),
                                               request.page_size, request.page_token))

    async def OffboardMember(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Offboard(request.request_id, request.programme_id, request.member_id, request.comment,
                       write_context(None, context, request.request_id))
        return member_pb2.OffboardMemberResponse(member=member_card(await members.offboard(self.db, self.clock, req)))

    async def EraseMember(self, request: Any, context: aio.ServicerContext) -> Any:
        erased = await privacy.erase(self.db, self.clock, _member_data_request(request, context))
        return member_pb2.EraseMemberResponse(member=member_card(erased.card), history_events_erased=erased.history_events,
                                              movements_erased=erased.movements,
                                              idempotency_keys_erased=erased.idempotency_keys)

    async def ExportMemberData(self, request: Any, context: aio.ServicerContext) -> Any:
        exported = await privacy.export(self.db, self.clock, _member_data_request(request, context))
        return member_pb2.ExportMemberDataResponse(document_json=exported.document,
                                                   export_time=timestamp(exported.exported_at))

    async def ChangeMemberPhone(self, request: Any, context: aio.ServicerContext) -> Any:
        req = member_data.ChangePhone(request.request_id, request.programme_id, request.member_id, request.phone,
                                      request.comment, write_context(None, context, request.request_id))
        return member_pb2.ChangeMemberPhoneResponse(
            member=member_card(await member_data.change_phone(self.db, self.clock, req)))

    async def ChangeMemberCard(self, request: Any, context: aio.ServicerContext) -> Any:
        req = member_data.ChangeCard(request.request_id, request.programme_id, request.member_id,
                                     request.card_number, request.card_secret, request.comment,
                                     write_context(None, context, request.request_id))
        return member_pb2.ChangeMemberCardResponse(
            member=member_card(await member_data.change_card(self.db, self.clock, req)))

    async def ChangeCustomerGroup(self, request: Any, context: aio.ServicerContext) -> Any:
        req = member_data.ChangeGroup(request.request_id, request.programme_id, request.member_id,
                                      request.customer_group, request.comment,
                                      write_context(None, context, request.request_id))
        return member_pb2.ChangeCustomerGroupResponse(
            member=member_card(await member_data.change_group(self.db, self.clock, req)))

    async def ListMembers(self, request: Any, context: aio.ServicerContext) -> Any:
        found = MemberFilter(phone=request.phone, card_number=request.card_number,
                             status=enum_value(STATUS, request.status, "status"), level_id=request.level_id,
                             custom_field=(CustomValue(request.custom_field.name, request.custom_field.value)
                                           if request.HasField("custom_field") else None))
        page = await member_data.find(self.db, request.programme_id, found, request.page_size, request.page_token)
        return member_pb2.ListMembersResponse(members=[member_card(c) for c in page.items],
                                              next_page_token=page.next_page_token)

    async def UpdateMemberCustomFields(self, request: Any, context: aio.ServicerContext) -> Any:
        req = UpdateCustomFields(request.request_id, request.programme_id, request.member_id,
                                 custom_values(request.custom_fields), tuple(request.update_mask.paths),
                                 request.comment, write_context(None, context, request.request_id))
        card = await custom_fields.update(self.db, self.clock, req)
        return member_pb2.UpdateMemberCustomFieldsResponse(member=member_card(card))


def custom_values(values: Any) -> tuple[CustomValue, ...]:
    return tuple(CustomValue(v.name, v.value) for v in values)


def _member_data_request(request: Any, context: aio.ServicerContext) -> privacy.MemberDataRequest:
    return privacy.MemberDataRequest(request.request_id, request.programme_id, request.member_id,
                                     write_context(None, context, request.request_id))
