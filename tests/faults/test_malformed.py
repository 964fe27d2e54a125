"""Random field values (negative, huge, empty, unknown enum numbers, wrong ids, over-long strings)
sent to every RPC of the running server: never INTERNAL, and a refused call never writes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import rights
from tests.faults.helpers import Stubs, accrue, checkout_request, create_programme, enrol
from tests.trust.test_rights import served_methods

# Answers a malformed request may get. INTERNAL, UNKNOWN, DEADLINE_EXCEEDED (a hang) and
# UNAVAILABLE (a lost connection) are failures; UNIMPLEMENTED is what a service not yet
# served answers, which is no crash either.
ACCEPTABLE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
              grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED}
# Every table a write changes. Refusals stored for idempotency ('refused' rows) and wrong
# confirmation codes counted against their limit (phone_confirmation.attempts) are writes by design.
SNAPSHOT = """SELECT (SELECT count(*) FROM programme), (SELECT count(*) FROM member), (SELECT count(*) FROM lot),
                     (SELECT sum(remaining) FROM lot), (SELECT count(*) FROM hold),
                     (SELECT count(*) FROM hold WHERE state = 'open'), (SELECT count(*) FROM orders),
                     (SELECT count(*) FROM refund), (SELECT count(*) FROM movement),
                     (SELECT count(*) FROM idempotency_key WHERE outcome = 'done'),
                     (SELECT coalesce(sum(personal_discount_bps), 0) FROM member),
                     (SELECT count(*) FROM member WHERE offboarded_at IS NOT NULL),
                     (SELECT string_agg(status || coalesce(level_id::text, '') || coalesce(card_number, '')
                                        || coalesce(card_secret_hash, ''), ',' ORDER BY member_id) FROM member),
                     (SELECT count(*) FROM level), (SELECT count(*) FROM purchase),
                     (SELECT coalesce(sum(amount_minor), 0) FROM purchase), (SELECT count(*) FROM member_event)"""
INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def field_values(field: FieldDescriptor, ids: list[str], depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_values(field.message_type, ids, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 40)  # unknown numbers included: proto3 enums are open
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.sampled_from(ids + ["", " ", "not-a-uuid", str(uuid.uuid4()), "x" * 257, "+1555", "\u0000", "💥" * 70,
                                   "-1", "9" * 40, "*", "programme.name"]),
            st.text(max_size=24),
        )
    if field.type in INT_EDGES:
        low, high = INT_EDGES[field.type]
        edges = [v for v in (low, high, -1, 0, 1, 499, 500, 501, 10_000, 10_001, 2**31, 2**53) if low <= v <= high]
        return st.one_of(st.sampled_from(edges), st.integers(low, high))
    return st.just(None)  # no float, double or bytes field in our requests


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def message_values(descriptor: Descriptor, ids: list[str], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of some of the message's fields with random values (nested messages as dicts)."""
    if depth > 3:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_map(field):
            entry = field.message_type.fields_by_name
            values = st.dictionaries(field_values(entry["key"], ids, depth), field_values(entry["value"], ids, depth),
                                     max_size=3)
        elif field.is_repeated:
            values = st.lists(field_values(field, ids, depth), max_size=3)
        else:
            values = field_values(field, ids, depth)
        fields[field.name] = values
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    """The message from a dict of values (a Timestamp may be far outside 0001..9999: the server
    must refuse it, not crash)."""
    msg = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(msg, name)[key].CopyFrom(build(GetMessageClass(value_field.message_type), item))
                else:
                    getattr(msg, name)[key] = item
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub_cls = GetMessageClass(field.message_type)
            if field.is_repeated:
                getattr(msg, name).extend(build(sub_cls, v) for v in value)
            else:
                getattr(msg, name).CopyFrom(build(sub_cls, value))
        elif field.is_repeated:
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


@pytest.fixture
def world(channel):
    """A real programme, member and order, so random requests also reach past the lookups."""
    stubs = Stubs(channel)
    programme = create_programme(stubs)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 1_000)
    stubs.checkout.Checkout(checkout_request(programme, member, "real-order", 500, 100), timeout=10)
    return [programme, member, "real-order", "1"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(data=st.data())
def test_random_requests_never_crash_and_refusals_never_write(channel, database_url, world, data):
    methods = served_methods()
    name = data.draw(st.sampled_from(sorted(rights.RULES)), label="method")
    method = methods[name]
    request_cls = GetMessageClass(method.input_type)
    response_cls = GetMessageClass(method.output_type)
    request = build(request_cls, data.draw(message_values(method.input_type, world), label="fields"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = conn.execute(SNAPSHOT).fetchone()
        try:
            _call(channel, name, method.server_streaming, request_cls, response_cls)(request)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            code, details = err.code(), err.details()
            assert code in ACCEPTABLE, f"{name} answered {code.name}: {details}\n{request}"
        if code != grpc.StatusCode.OK:
            assert conn.execute(SNAPSHOT).fetchone() == before, f"{name} refused ({code.name}) but wrote\n{request}"


def _call(channel, name, streaming, request_cls, response_cls):
    """A unary call, or a stream's first answer: a stream still open and waiting for events after
    a second is a stream that works (its deadline, not a refusal)."""
    if not streaming:
        return lambda request: channel.unary_unary(name, request_serializer=request_cls.SerializeToString,
                                                   response_deserializer=response_cls.FromString)(request, timeout=10)

    def first(request):
        stream = channel.unary_stream(name, request_serializer=request_cls.SerializeToString,
                                      response_deserializer=response_cls.FromString)(request, timeout=1)
        try:
            next(stream, None)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
    return first


def test_a_request_that_does_not_decode_is_invalid_argument_with_one_warning_and_no_traceback(
        channel, database_url, caplog):
    # AccruePointsRequest.request_id (field 1, a string) holding bytes that are not UTF-8.
    undecodable = bytes([0x0A, 0x02, 0xFF, 0xFE])
    call = channel.unary_unary("/loyalty.v1.PointsService/AccruePoints", request_serializer=None,
                               response_deserializer=None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = conn.execute(SNAPSHOT).fetchone()
        caplog.clear()
        with pytest.raises(grpc.RpcError) as refused:
            call(undecodable, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "request could not be decoded"
        assert conn.execute(SNAPSHOT).fetchone() == before
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, getattr(r, "event", None)) for r in warnings] == [(logging.WARNING, "rpc_undecodable")]
    assert all(r.exc_info is None for r in caplog.records)
