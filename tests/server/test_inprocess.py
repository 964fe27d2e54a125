"""The server in-process: health, reflection, the error table applied to every RPC, metrics."""

import os

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from loyalty.v1 import member_pb2, programme_pb2, programme_pb2_grpc
from loyalty_core import errors
from server import services
from tests.fixtures.server import health_status


def test_health_is_serving_for_the_server_and_every_service(channel):
    assert health_status(channel) == "SERVING"
    for stub in services.declared_services():
        assert health_status(channel, stub.full_name) == "SERVING"


def test_reflection_lists_every_service_of_our_protos(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (resp,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    listed = {s.name for s in resp.list_services_response.service}
    assert {s.full_name for s in services.declared_services()} <= listed
    assert {"loyalty.v1.ProgrammeService", "loyalty.v1.MemberService", "loyalty.v1.CheckoutService",
            "loyalty.v1.PointsService", "grpc.health.v1.Health"} <= listed


class RaisingProgrammes(programme_pb2_grpc.ProgrammeServiceServicer):
    """Raises what the request's page_token names, like a servicer whose use case refuses."""

    def __init__(self, deps):
        self.deps = deps

    async def ListProgrammes(self, request, context):
        if request.page_token == "bad":
            raise errors.InvalidArgument("value_out_of_range", "page_size must be 1..500", field="page_size")
        if request.page_token == "boom":
            raise RuntimeError("secret internals")
        return programme_pb2.ListProgrammesResponse(next_page_token=str(self.deps.clock.now_us()))


@pytest.fixture
def raising_service(monkeypatch):
    monkeypatch.setattr(services, "SERVICES", [
        (programme_pb2_grpc.add_ProgrammeServiceServicer_to_server, RaisingProgrammes)])


def test_servicers_just_raise_domain_errors(raising_service, grpc_server, channel, clock):
    stub = programme_pb2_grpc.ProgrammeServiceStub(channel)
    assert stub.ListProgrammes(programme_pb2.ListProgrammesRequest()).next_page_token == str(clock.now_us())

    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProgrammes(programme_pb2.ListProgrammesRequest(page_token="bad"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    st = rpc_status.from_call(caught.value)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert st.details[0].Unpack(info) and info.reason == "value_out_of_range"
    assert st.details[1].Unpack(bad) and bad.field_violations[0].field == "page_size"

    with pytest.raises(grpc.RpcError) as caught:
        stub.ListProgrammes(programme_pb2.ListProgrammesRequest(page_token="boom"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()

    handled = grpc_server.registry.get_sample_value
    labels = {"grpc_type": "unary", "grpc_service": "loyalty.v1.ProgrammeService", "grpc_method": "ListProgrammes"}
    for code in ("OK", "INVALID_ARGUMENT", "INTERNAL"):
        assert handled("grpc_server_handled_total", {**labels, "grpc_code": code}) == 1
        assert handled("grpc_server_handling_seconds_count", {**labels, "grpc_code": code}) == 1
    assert handled("grpc_server_in_flight_requests", {"grpc_service": labels["grpc_service"],
                                                      "grpc_method": "ListProgrammes"}) == 0


@pytest.fixture
def no_servicers(monkeypatch):
    # Every service of ours is claimed now; unclaim them all to see the generated base servicers.
    monkeypatch.setattr(services, "SERVICES", [])


def test_an_unclaimed_service_answers_unimplemented(no_servicers, channel, grpc_server):
    from loyalty.v1 import member_pb2_grpc

    with pytest.raises(grpc.RpcError) as caught:
        member_pb2_grpc.MemberServiceStub(channel).GetMember(member_pb2.GetMemberRequest(member_id="m-1"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert grpc_server.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": "loyalty.v1.MemberService", "grpc_method": "GetMember",
        "grpc_code": "UNIMPLEMENTED"}) == 1


def test_build_info_and_pool_metrics(grpc_server):
    value = grpc_server.registry.get_sample_value
    # The label says what was loaded: what LOYALTY_CALC_IMPL forced, else the compiled twin when built.
    impl = os.environ.get("LOYALTY_CALC_IMPL") or ("cython" if _compiled() else "python")
    assert value("loyalty_build_info", {"version": _version(), "calc_impl": impl}) == 1
    assert value("loyalty_db_pool_max_connections") == 4
    assert value("loyalty_db_pool_connections") >= 1
    assert value("loyalty_db_up") == 1


def _compiled() -> bool:
    try:
        import loyalty_core._fastcalc  # noqa: F401
    except ImportError:
        return False
    return True


def _version() -> str:
    from server.metrics import version

    return version()
