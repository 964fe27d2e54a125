"""The client wrapper: retries reuse one request_id, refusals are not retried, the key is sent."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from loyalty.client import LoyaltyClient, RetryPolicy
from loyalty.v1 import points_pb2


class FlakyPointsServer:
    """A real gRPC server whose AccruePoints fails with a chosen code a few times, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures = failures
        self.code = code
        self.seen: list[tuple[str, str]] = []  # (request_id, authorization) per attempt
        handler = grpc.method_handlers_generic_handler(
            "loyalty.v1.PointsService",
            {
                "AccruePoints": grpc.unary_unary_rpc_method_handler(
                    self.accrue,
                    request_deserializer=points_pb2.AccruePointsRequest.FromString,
                    response_serializer=points_pb2.AccruePointsResponse.SerializeToString,
                )
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def accrue(self, request: points_pb2.AccruePointsRequest, context: grpc.ServicerContext):
        self.seen.append((request.request_id, dict(context.invocation_metadata()).get("authorization", "")))
        if len(self.seen) <= self.failures:
            context.abort(self.code, "try again")
        return points_pb2.AccruePointsResponse(movement=points_pb2.Movement(points=request.points))


@pytest.fixture
def flaky():
    servers: list[FlakyPointsServer] = []

    def start(failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> FlakyPointsServer:
        servers.append(FlakyPointsServer(failures, code))
        return servers[-1]

    yield start
    for server in servers:
        server.server.stop(None)


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
