"""EventBonusService: a programme's event types and RecordEvent."""

from __future__ import annotations

from typing import Any

from grpc import aio

from loyalty.v1 import event_bonus_pb2, event_bonus_pb2_grpc
from loyalty_core import event_bonus
from loyalty_core.event_bonus import EventType, EventTypeRecord, Grant, RecordEvent, SaveEventType
from loyalty_core.model import Expiry
from loyalty_core.service import event_bonus as cases
from server.servicers.convert import (
    enum_value, expiry, expiry_message, micros, movement, timestamp, write_context,
)

FREQUENCY = {event_bonus_pb2.EVENT_FREQUENCY_ONCE: event_bonus.ONCE,
             event_bonus_pb2.EVENT_FREQUENCY_EVERY_N_DAYS: event_bonus.EVERY_N_DAYS,
             event_bonus_pb2.EVENT_FREQUENCY_CALENDAR_YEAR: event_bonus.CALENDAR_YEAR}
FREQUENCY_VALUE = {name: value for value, name in FREQUENCY.items()}


def event_type_to_domain(p: event_bonus_pb2.EventType) -> EventType:
    return EventType(
        programme_id=p.programme_id, code=p.code, name=p.name, points=p.points,
        expiry=expiry(p.expiry) if p.HasField("expiry") else Expiry(),
        discount_bps=p.discount_bps, discount_days=p.discount_days,
        frequency=enum_value(FREQUENCY, p.frequency, "event_type.frequency"), frequency_days=p.frequency_days,
        active_from=micros(p, "active_start_time"), active_until=micros(p, "active_end_time"),
    )


def event_type_to_proto(r: EventTypeRecord) -> event_bonus_pb2.EventType:
    t = r.event_type
    return event_bonus_pb2.EventType(
        programme_id=t.programme_id, code=t.code, name=t.name, points=t.points, expiry=expiry_message(t.expiry),
        discount_bps=t.discount_bps, discount_days=t.discount_days, frequency=FREQUENCY_VALUE[t.frequency],
        frequency_days=t.frequency_days, active_start_time=timestamp(t.active_from),
        active_end_time=timestamp(t.active_until), create_time=timestamp(r.created_at),
        update_time=timestamp(r.updated_at),
    )


def grant_to_proto(g: Grant) -> event_bonus_pb2.EventGrant:
    return event_bonus_pb2.EventGrant(
        member_id=g.member_id, event_code=g.event_code, occurrence_key=g.occurrence_key, points=g.points,
        lot_id="" if g.lot_id is None else str(g.lot_id), discount_bps=g.discount_bps,
        discount_end_time=timestamp(g.discount_ends_at), discount_withheld=g.discount_withheld,
        grant_time=timestamp(g.granted_at),
    )


class EventBonusServicer(event_bonus_pb2_grpc.EventBonusServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def CreateEventType(self, request: Any, context: aio.ServicerContext) -> Any:
        req = SaveEventType(request.request_id, event_type_to_domain(request.event_type))
        record = await cases.create_type(self.db, self.clock, req)
        return event_bonus_pb2.CreateEventTypeResponse(event_type=event_type_to_proto(record))

    async def UpdateEventType(self, request: Any, context: aio.ServicerContext) -> Any:
        req = SaveEventType(request.request_id, event_type_to_domain(request.event_type))
        record = await cases.update_type(self.db, self.clock, req)
        return event_bonus_pb2.UpdateEventTypeResponse(event_type=event_type_to_proto(record))

    async def ListEventTypes(self, request: Any, context: aio.ServicerContext) -> Any:
        records = await cases.list_types(self.db, request.programme_id)
        return event_bonus_pb2.ListEventTypesResponse(event_types=[event_type_to_proto(r) for r in records])

    async def RecordEvent(self, request: Any, context: aio.ServicerContext) -> Any:
        req = RecordEvent(request.request_id, request.programme_id, request.member_id, request.event_code,
                          request.occurrence_key, write_context(request.context, context, request.request_id))
        recorded = await cases.record(self.db, self.clock, req)
        return event_bonus_pb2.RecordEventResponse(
            grant=grant_to_proto(recorded.grant),
            movement=None if recorded.movement is None else movement(recorded.movement),
            already_granted=recorded.already_granted,
        )
