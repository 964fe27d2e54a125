"""PointsService: accrue, redeem, history, the expiry run, ledger verification."""

from __future__ import annotations

from typing import Any

from grpc import aio

from loyalty.v1 import points_pb2, points_pb2_grpc
from loyalty_core.model import Accrue, Expiry, History, Redeem
from loyalty_core.service import points, verify
from server.servicers.convert import (
    MOVEMENT_KIND, enum_value, expiry, lot, member_id_trusted, micros, movement, write_context,
)

KIND_NAMES = {value: name for name, value in MOVEMENT_KIND.items()}


def kinds(values: Any) -> tuple[str, ...]:
    return tuple(enum_value(KIND_NAMES, v, f"kinds[{i}]", unset=None) for i, v in enumerate(values))


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def AccruePoints(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Accrue(request.request_id, request.programme_id, request.member_id, request.points,
                     expiry(request.expiry) if request.HasField("expiry") else Expiry(),
                     request.comment, write_context(request.context, context, request.request_id))
        accrued = await points.accrue(self.db, self.clock, req)
        return points_pb2.AccruePointsResponse(movement=movement(accrued.movement), lot=lot(accrued.lot))

    async def ListLots(self, request: Any, context: aio.ServicerContext) -> Any:
        page = await points.list_lots(self.db, request.programme_id, request.member_id, request.only_with_points_left,
                                      request.page_size, request.page_token)
        return points_pb2.ListLotsResponse(lots=[lot(x) for x in page.items], next_page_token=page.next_page_token)

    async def RedeemPoints(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Redeem(request.request_id, request.programme_id, request.member_id, request.points, request.comment,
                     write_context(request.context, context, request.request_id), request.spend_code,
                     member_id_trusted())
        return points_pb2.RedeemPointsResponse(movement=movement(await points.redeem(self.db, self.clock, req)))

    async def ListPointsHistory(self, request: Any, context: aio.ServicerContext) -> Any:
        req = History(request.programme_id, request.member_id, micros(request, "start_time"),
                      micros(request, "end_time"), kinds(request.kinds), request.page_size, request.page_token)
        page = await points.list_history(self.db, req)
        return points_pb2.ListPointsHistoryResponse(movements=[movement(m) for m in page.items],
                                                    next_page_token=page.next_page_token)

    async def RunExpiry(self, request: Any, context: aio.ServicerContext) -> Any:
        run = await points.run_expiry(self.db, self.clock, request.programme_id, micros(request, "as_of_time"))
        return points_pb2.RunExpiryResponse(
            lots_expired=run.lots_expired, points_expired=run.points_expired, lots_activated=run.lots_activated,
            points_activated=run.points_activated, holds_released=run.holds_released,
            points_released=run.points_released, certificates_expired=run.certificates_expired,
            certificate_points_expired=run.certificate_points_expired,
            certificate_holds_released=run.certificate_holds_released,
        )

    async def VerifyLedger(self, request: Any, context: aio.ServicerContext) -> Any:
        result = await verify.verify(self.db, request.programme_id)
        return points_pb2.VerifyLedgerResponse(
            members_checked=result.members_checked, lots_checked=result.lots_checked,
            disagreements=[points_pb2.LedgerDisagreement(programme_id=d.programme_id, member_id=d.member_id,
                                                         invariant=d.invariant, detail=d.detail)
                           for d in result.disagreements],
        )
