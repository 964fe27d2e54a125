"""Fixtures of the client tests: a flaky stand-in server for retries, a member at a real server, and
the Node client built."""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

import loyalty.v1
from loyalty.v1 import member_pb2, member_pb2_grpc, points_pb2, points_pb2_grpc, programme_pb2, programme_pb2_grpc
from tests.fixtures.keys import BearerKey

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node"
# `npm ci` is skipped while node_modules was installed from this very lock file.
LOCK_STAMP = NODE_CLIENT / "node_modules" / ".loyalty-lock-sha256"


def run_in_node_client(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in clients/node with this environment plus ``env``; it must succeed."""
    done = subprocess.run(list(args), cwd=NODE_CLIENT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def node_client() -> Path:
    """clients/node installed (npm ci, when the lock changed) and built: generated types, then tsc."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    assert not missing, f"the Node client test needs {' and '.join(missing)} (Node 20 or later) on PATH"
    lock_hash = hashlib.sha256((NODE_CLIENT / "package-lock.json").read_bytes()).hexdigest()
    # npm ci builds too (the prepare script): buf generate (ts-proto), then tsc, which type-checks
    # src/ and examples/. Without it, the build still runs, for protos or sources changed since.
    if not LOCK_STAMP.exists() or LOCK_STAMP.read_text() != lock_hash:
        run_in_node_client("npm", "ci", "--no-audit", "--no-fund")
        LOCK_STAMP.write_text(lock_hash)
    else:
        run_in_node_client("npm", "run", "build")
    return NODE_CLIENT


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
def flaky() -> Iterator[Callable[..., FlakyPointsServer]]:
    servers: list[FlakyPointsServer] = []

    def start(failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> FlakyPointsServer:
        servers.append(FlakyPointsServer(failures, code))
        return servers[-1]

    yield start
    for server in servers:
        server.server.stop(None)


def loyalty_v1_services() -> set[str]:
    """The full name of every service the generated loyalty.v1 modules declare."""
    return {
        service.full_name
        for info in pkgutil.iter_modules(loyalty.v1.__path__) if info.name.endswith("_pb2")
        for service in importlib.import_module(f"loyalty.v1.{info.name}").DESCRIPTOR.services_by_name.values()
    }


@dataclass(frozen=True)
class TillCustomer:
    """A key with every right, a programme whose points may pay whole orders, and one member in it
    with ``balance`` points."""

    balance = 100

    address: str
    key: str
    programme_id: str
    phone: str
    member_id: str


@pytest.fixture
def till_customer(grpc_server: Any, make_key: Callable[..., tuple[str, str]]) -> TillCustomer:
    _name, key = make_key()
    with grpc.insecure_channel(grpc_server.address) as plain:
        channel = grpc.intercept_channel(plain, BearerKey(key))
        programme = programme_pb2_grpc.ProgrammeServiceStub(channel).CreateProgramme(
            programme_pb2.CreateProgrammeRequest(request_id=str(uuid.uuid4()), programme=programme_pb2.Programme(
                name=f"till {uuid.uuid4()}", enabled=True, currency_code="EUR", point_value_minor=100,
                order_pay_share_bps=10_000, default_cashback_bps=1_000, default_pay_share_bps=10_000,
                hold_ttl_seconds=600,
            ))).programme
        phone = f"+1555{uuid.uuid4().int % 10**7:07d}"
        member = member_pb2_grpc.MemberServiceStub(channel).EnrolMember(member_pb2.EnrolMemberRequest(
            request_id=str(uuid.uuid4()), programme_id=programme.programme_id, phone=phone)).member
        points_pb2_grpc.PointsServiceStub(channel).AccruePoints(points_pb2.AccruePointsRequest(
            request_id=str(uuid.uuid4()), programme_id=programme.programme_id, member_id=member.member_id,
            points=TillCustomer.balance, comment="welcome"))
    return TillCustomer(grpc_server.address, key, programme.programme_id, phone, member.member_id)
