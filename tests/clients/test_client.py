"""The client wrapper: retries reuse one request_id, refusals are not retried, the key is sent."""

from __future__ import annotations

import grpc
import pytest

from loyalty.client import LoyaltyClient, RetryPolicy
from loyalty.v1 import points_pb2
from tests.clients.conftest import loyalty_v1_services


def test_retries_keep_the_first_request_id_and_send_the_key(flaky):
    server = flaky(failures=2)
    with LoyaltyClient(f"127.0.0.1:{server.port}", api_key="k-123", sleep=lambda s: None) as client:
        response = client.points.AccruePoints(points_pb2.AccruePointsRequest(points=7))
    assert response.movement.points == 7
    request_ids = {request_id for request_id, _ in server.seen}
    assert len(server.seen) == 3 and len(request_ids) == 1 and request_ids != {""}
    assert {auth for _, auth in server.seen} == {"Bearer k-123"}


def test_a_given_request_id_is_kept(flaky):
    server = flaky(failures=0)
    with LoyaltyClient(f"127.0.0.1:{server.port}") as client:
        client.points.AccruePoints(points_pb2.AccruePointsRequest(request_id="till-7-0001", points=1))
    assert server.seen == [("till-7-0001", "")]


def test_refusals_are_not_retried(flaky):
    server = flaky(failures=1, code=grpc.StatusCode.FAILED_PRECONDITION)
    with LoyaltyClient(f"127.0.0.1:{server.port}", sleep=lambda s: None) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.points.AccruePoints(points_pb2.AccruePointsRequest(points=1))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(server.seen) == 1


def test_retries_stop_after_the_policy_attempts(flaky):
    server = flaky(failures=10)
    policy = RetryPolicy(attempts=3)
    with LoyaltyClient(f"127.0.0.1:{server.port}", retry=policy, sleep=lambda s: None) as client:
        with pytest.raises(grpc.RpcError) as failed:
            client.points.AccruePoints(points_pb2.AccruePointsRequest(points=1))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(server.seen) == 3


def test_every_service_of_the_protos_is_wrapped():
    from loyalty.client import SERVICES

    assert {stub.__name__.removesuffix("Stub") for stub in SERVICES.values()} == {
        name.rsplit(".", 1)[1] for name in loyalty_v1_services()
    }


async def test_the_aio_client_retries_with_one_request_id(flaky):
    from loyalty.client import AsyncLoyaltyClient

    async def no_wait(_s: float) -> None:
        return None

    server = flaky(failures=2)
    async with AsyncLoyaltyClient(f"127.0.0.1:{server.port}", api_key="k-9", sleep=no_wait) as client:
        response = await client.points.AccruePoints(points_pb2.AccruePointsRequest(points=4))
    assert response.movement.points == 4
    assert len(server.seen) == 3 and len({request_id for request_id, _ in server.seen}) == 1
    assert {auth for _, auth in server.seen} == {"Bearer k-9"}


def test_refusal_reads_code_reason_and_proto_field_paths(grpc_server, make_key):
    from loyalty.errors import refusal
    from loyalty.v1 import checkout_pb2, common_pb2

    _name, key = make_key()
    with LoyaltyClient(grpc_server.address, api_key=key) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.checkout.Quote(checkout_pb2.QuoteRequest(
                programme_id="not-a-uuid", member=common_pb2.MemberRef(member_id="m"),
                lines=[checkout_pb2.BasketLine(sku="X", quantity=1, unit_price_minor=1)]))
    why = refusal(refused.value)
    assert why.code == grpc.StatusCode.INVALID_ARGUMENT and why.reason == "malformed_id"
    assert [v.field for v in why.field_violations] == ["programme_id"]


def test_refusal_of_a_call_without_details_has_an_empty_reason(flaky):
    from loyalty.errors import refusal

    server = flaky(failures=1, code=grpc.StatusCode.FAILED_PRECONDITION)
    with LoyaltyClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.points.AccruePoints(points_pb2.AccruePointsRequest(points=1))
    why = refusal(refused.value)
    assert (why.code, why.reason, why.field_violations) == (grpc.StatusCode.FAILED_PRECONDITION, "", ())
