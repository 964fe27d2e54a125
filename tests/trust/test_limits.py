"""Limits on what a caller controls: over a limit is INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the
transport's message size), a call is cut at the server's time limit, and nothing crashes."""

import asyncio
import time
import uuid

import grpc
import pytest

from loyalty.v1 import checkout_pb2, checkout_pb2_grpc, common_pb2, points_pb2, points_pb2_grpc, programme_pb2, programme_pb2_grpc
from server import auth, limits, services
from server.app import MAX_MESSAGE_BYTES
from tests.fixtures.server import ServerThread, make_test_settings, wait_for
from tests.trust.test_auth import call

PROGRAMME = str(uuid.uuid4())


def line(i: int) -> checkout_pb2.BasketLine:
    return checkout_pb2.BasketLine(line_id=str(i), sku="sku", category="bar", quantity=1, unit_price_minor=100)


@pytest.fixture
def checkout(channel):
    return checkout_pb2_grpc.CheckoutServiceStub(channel)


def test_a_basket_over_500_lines_is_invalid(checkout):
    ok = checkout_pb2.QuoteRequest(programme_id=PROGRAMME, lines=[line(i) for i in range(limits.MAX_REPEATED)])
    assert call(checkout.Quote, ok)[1] != "too_many_items"
    over = checkout_pb2.QuoteRequest(programme_id=PROGRAMME, lines=[line(i) for i in range(limits.MAX_REPEATED + 1)])
    assert call(checkout.Quote, over) == (grpc.StatusCode.INVALID_ARGUMENT, "too_many_items")


@pytest.mark.parametrize("request_", [
    checkout_pb2.QuoteRequest(programme_id=PROGRAMME, store_id="s" * 257),
    checkout_pb2.QuoteRequest(programme_id=PROGRAMME, lines=[checkout_pb2.BasketLine(sku="k" * 1000)]),
    checkout_pb2.QuoteRequest(programme_id=PROGRAMME, member=common_pb2.MemberRef(phone="1" * 300)),
    checkout_pb2.QuoteRequest(programme_id="p" * 100_000),
], ids=["store_id", "nested sku", "member phone", "programme_id"])
def test_an_over_long_string_is_invalid(checkout, request_):
    assert call(checkout.Quote, request_) == (grpc.StatusCode.INVALID_ARGUMENT, "value_too_long")


def test_nul_characters_are_invalid(checkout):
    # PostgreSQL text cannot hold them: refused at the door rather than failing in the database.
    request = checkout_pb2.QuoteRequest(programme_id=PROGRAMME, lines=[checkout_pb2.BasketLine(sku="a\x00b")])
    assert call(checkout.Quote, request) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")


@pytest.mark.parametrize("seconds,nanos", [(-(2**63), 0), (limits.MAX_TIMESTAMP_S + 1, 0), (0, -1),
                                           (limits.MIN_TIMESTAMP_S - 1, 0)])
def test_a_time_outside_years_1_to_9999_is_invalid(channel, seconds, nanos):
    stub = points_pb2_grpc.PointsServiceStub(channel)
    request = points_pb2.RunExpiryRequest(programme_id=PROGRAMME)
    request.as_of_time.seconds, request.as_of_time.nanos = seconds, nanos
    assert call(stub.RunExpiry, request) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    nested = points_pb2.AccruePointsRequest(request_id="r", programme_id=PROGRAMME, points=1)
    nested.expiry.expire_time.seconds, nested.expiry.expire_time.nanos = seconds, nanos
    assert call(stub.AccruePoints, nested) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")


def test_free_text_has_a_longer_limit(channel):
    stub = points_pb2_grpc.PointsServiceStub(channel)
    request = points_pb2.AccruePointsRequest(request_id="r", programme_id=PROGRAMME, points=1, comment="c" * 2000)
    assert call(stub.AccruePoints, request)[1] != "value_too_long"
    request.comment += "c"
    assert call(stub.AccruePoints, request) == (grpc.StatusCode.INVALID_ARGUMENT, "value_too_long")


@pytest.mark.parametrize("page_size", [-1, limits.MAX_PAGE_SIZE + 1, 2**31 - 1])
def test_a_page_over_500_is_invalid(channel, page_size):
    stub = programme_pb2_grpc.ProgrammeServiceStub(channel)
    assert call(stub.ListProgrammes, programme_pb2.ListProgrammesRequest(page_size=page_size)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")


def test_a_message_over_the_transport_limit_is_resource_exhausted(checkout):
    huge = checkout_pb2.QuoteRequest(programme_id=PROGRAMME, currency_code="x" * (MAX_MESSAGE_BYTES + 1))
    assert call(checkout.Quote, huge)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


class SlowProgrammes(programme_pb2_grpc.ProgrammeServiceServicer):
    """Answers with the caller's name, after as many seconds as the page token says."""

    def __init__(self, deps):
        self.deps = deps

    async def ListProgrammes(self, request, context):
        await asyncio.sleep(float(request.page_token or 0))
        caller = auth.current_caller()
        return programme_pb2.ListProgrammesResponse(next_page_token=caller.name if caller else "")


@pytest.fixture
def slow_server(monkeypatch, database_url, clock):
    monkeypatch.setattr(services, "SERVICES", [
        (programme_pb2_grpc.add_ProgrammeServiceServicer_to_server, SlowProgrammes)])
    server = ServerThread(make_test_settings(database_url, rpc_time_limit_s=0.3), clock).start()
    yield server
    server.stop()


def test_the_servicer_sees_the_authenticated_caller(slow_server, make_key):
    name, key = make_key("read_only")
    with grpc.insecure_channel(slow_server.address) as ch:
        resp = programme_pb2_grpc.ProgrammeServiceStub(ch).ListProgrammes(
            programme_pb2.ListProgrammesRequest(), metadata=[("authorization", f"Bearer {key}")], timeout=10)
    assert resp.next_page_token == name


def test_a_call_is_cut_at_the_servers_time_limit_whatever_the_clients_deadline(slow_server, make_key):
    _name, key = make_key("read_only")
    with grpc.insecure_channel(slow_server.address) as ch:
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListProgrammes(programme_pb2.ListProgrammesRequest(page_token="5"),
                                metadata=[("authorization", f"Bearer {key}")], timeout=30)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
    # The server counts the call just after the client has its answer.
    wait_for(lambda: slow_server.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": "loyalty.v1.ProgrammeService", "grpc_method": "ListProgrammes",
        "grpc_code": "DEADLINE_EXCEEDED"}) == 1, timeout_s=5, what="DEADLINE_EXCEEDED counted")
