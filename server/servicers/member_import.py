"""MemberImportService: members of a previous system streamed in, one answer per row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from loyalty.v1 import member_import_pb2, member_import_pb2_grpc, member_pb2
from loyalty_core.errors import LoyaltyError
from loyalty_core.model import ImportedLot, ImportedMember, ImportedPurchase, ImportRow
from loyalty_core.service import imports
from server.servicers.convert import micros, write_context
from server.servicers.member import custom_values
from server.servicers.streams import batches, item_refusal

STATUS = {member_pb2.MEMBER_STATUS_UNSPECIFIED: "", member_pb2.MEMBER_STATUS_ACTIVE: "active",
          member_pb2.MEMBER_STATUS_NOT_CONFIRMED: "not_confirmed", member_pb2.MEMBER_STATUS_DEACTIVATED: "deactivated"}


def imported_member(m: Any) -> ImportedMember:
    return ImportedMember(
        external_id=m.external_id, phone=m.phone, card_number=m.card_number,
        # An enum value this server does not know is refused by the domain's check, as text.
        status=STATUS.get(m.status, str(m.status)), customer_group=m.customer_group, level_name=m.level_name,
        purchases_total_minor=m.purchases_total_minor, custom_fields=custom_values(m.custom_fields),
        lots=tuple(ImportedLot(x.points, micros(x, "activate_time"), micros(x, "expire_time")) for x in m.lots),
        purchases=tuple(ImportedPurchase(x.order_id, micros(x, "purchase_time") or 0, x.amount_minor,
                                         tuple(sorted(x.by_category_minor.items()))) for x in m.purchases),
        enrolled_at=micros(m, "enrol_time") or 0,
    )


class MemberImportServicer(member_import_pb2_grpc.MemberImportServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def ImportMembers(self, requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
        """Each batch of the rows that arrived, imported in one transaction, answered in order; a row
        the guard refused (limits, programme) answered with its refusal in its place."""
        ctx = write_context(None, context, "")
        async for batch in batches(requests, imports.MAX_ROWS_PER_TRANSACTION):
            admitted = [r for r in batch if not isinstance(r, LoyaltyError)]
            done = iter(await imports.import_members(
                self.db, self.clock, [ImportRow(r.programme_id, r.line, imported_member(r.member)) for r in admitted],
                ctx))
            for request in batch:
                answer = member_import_pb2.ImportMembersResponse()
                if isinstance(request, LoyaltyError):
                    answer.refusal.CopyFrom(item_refusal(request, ""))
                    yield answer
                    continue
                answer.line, answer.external_id = request.line, request.member.external_id
                outcome = next(done)
                if isinstance(outcome, LoyaltyError):
                    answer.refusal.CopyFrom(item_refusal(outcome, "member."))
                else:
                    answer.imported.member_id, answer.imported.replayed = outcome.member_id, outcome.replayed
                yield answer
