"""Authentication and rights against the running server: keys in metadata, rights, programmes,
the key cache and revocation."""

import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from loyalty.v1 import checkout_pb2, checkout_pb2_grpc, points_pb2, points_pb2_grpc, programme_pb2, programme_pb2_grpc
from tests.fixtures.keys import revoke_key
from tests.fixtures.server import ServerThread, make_test_settings, wait_for

REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def call(fn, request):
    """(code, ErrorInfo reason) of one call; (OK, "") when it succeeds."""
    try:
        fn(request, timeout=10)
    except grpc.RpcError as err:
        st = rpc_status.from_call(err)
        info = error_details_pb2.ErrorInfo()
        if st is not None and st.details:
            st.details[0].Unpack(info)
        return err.code(), info.reason
    return grpc.StatusCode.OK, ""


def get_programme(ch, programme_id):
    return call(programme_pb2_grpc.ProgrammeServiceStub(ch).GetProgramme,
                programme_pb2.GetProgrammeRequest(programme_id=programme_id))


def test_a_call_without_a_key_is_unauthenticated(channel_with):
    assert get_programme(channel_with(key=""), str(uuid.uuid4())) == (
        grpc.StatusCode.UNAUTHENTICATED, "credential_missing")


@pytest.mark.parametrize("key", ["nonsense", "lck_" + "A" * 43, "x" * 5000])
def test_an_unknown_key_is_unauthenticated(channel_with, key):
    assert get_programme(channel_with(key=key), str(uuid.uuid4())) == (
        grpc.StatusCode.UNAUTHENTICATED, "credential_unknown")


def test_the_header_must_say_bearer(grpc_server, make_key):
    _name, key = make_key()
    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)
        for value in (key, f"Basic {key}", f"bearer {key}"):
            try:
                stub.GetProgramme(programme_pb2.GetProgrammeRequest(programme_id=str(uuid.uuid4())),
                                  metadata=[("authorization", value)], timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
            # The scheme is case-insensitive (RFC 7235); anything else is no credential at all.
            assert (code == grpc.StatusCode.UNAUTHENTICATED) == (not value.lower().startswith("bearer ")), value


def test_health_and_reflection_need_no_key(channel_with):
    ch = channel_with(key="")
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    (listed,) = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    assert any(s.name == "loyalty.v1.PointsService" for s in listed.list_services_response.service)


def test_a_right_not_granted_is_permission_denied(channel_with):
    programme = str(uuid.uuid4())
    read_only = channel_with("read_only")
    pos = checkout_pb2_grpc.CheckoutServiceStub(read_only)
    assert call(pos.Quote, checkout_pb2.QuoteRequest(programme_id=programme)) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    points = points_pb2_grpc.PointsServiceStub(channel_with("pos", "ecommerce", "programme_admin"))
    assert call(points.AccruePoints, points_pb2.AccruePointsRequest(programme_id=programme, points=1)) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    # The right that does allow it gets past the guard (to the servicer's own answer).
    code, _ = call(points_pb2_grpc.PointsServiceStub(channel_with("manual_points")).AccruePoints,
                   points_pb2.AccruePointsRequest(programme_id=programme, points=1))
    assert code not in REFUSED


def test_a_key_acts_only_on_its_programmes(channel_with):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    ch = channel_with("read_only", programmes=[mine])
    assert get_programme(ch, other) == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    assert get_programme(ch, "") == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    assert get_programme(ch, "not-a-uuid") == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    assert get_programme(ch, mine)[0] not in REFUSED
    assert get_programme(ch, mine.upper())[0] not in REFUSED
    # VerifyLedger with no programme means every programme: not for a key limited to some.
    verify = points_pb2_grpc.PointsServiceStub(ch).VerifyLedger
    assert call(verify, points_pb2.VerifyLedgerRequest())[0] == grpc.StatusCode.PERMISSION_DENIED
    assert call(verify, points_pb2.VerifyLedgerRequest(programme_id=mine))[0] not in REFUSED


def test_programme_in_the_body_of_an_update_is_checked(channel_with):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    stub = programme_pb2_grpc.ProgrammeServiceStub(channel_with("programme_admin", programmes=[mine]))
    update = programme_pb2.UpdateProgrammeRequest(request_id="r1", programme=programme_pb2.Programme(programme_id=other))
    assert call(stub.UpdateProgramme, update) == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    update.programme.programme_id = mine
    assert call(stub.UpdateProgramme, update)[0] not in REFUSED


def test_creating_and_listing_programmes_need_every_programme(channel_with):
    scoped = programme_pb2_grpc.ProgrammeServiceStub(channel_with("programme_admin", programmes=[str(uuid.uuid4())]))
    create = programme_pb2.CreateProgrammeRequest(request_id="r1", programme=programme_pb2.Programme(name="x"))
    assert call(scoped.CreateProgramme, create) == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    assert call(scoped.ListProgrammes, programme_pb2.ListProgrammesRequest()) == (
        grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    everything = programme_pb2_grpc.ProgrammeServiceStub(channel_with("read_only"))
    assert call(everything.ListProgrammes, programme_pb2.ListProgrammesRequest())[0] not in REFUSED


def test_refusals_are_counted_like_any_call(channel_with, grpc_server):
    get_programme(channel_with(key=""), str(uuid.uuid4()))
    # The server counts the call just after the client has its answer.
    wait_for(lambda: grpc_server.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": "loyalty.v1.ProgrammeService", "grpc_method": "GetProgramme",
        "grpc_code": "UNAUTHENTICATED"}), timeout_s=5, what="UNAUTHENTICATED counted")


@pytest.fixture
def server_with(database_url, clock):
    started = []

    def start(**overrides):
        server = ServerThread(make_test_settings(database_url, **overrides), clock).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_verified_keys_are_cached_so_a_revocation_lands_within_the_ttl(server_with, make_key, database_url):
    server = server_with(auth_cache_ttl_s=0.5)
    name, key = make_key("read_only")
    with grpc.insecure_channel(server.address) as ch:
        metadata = [("authorization", f"Bearer {key}")]
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)

        def code():
            try:
                stub.ListProgrammes(programme_pb2.ListProgrammesRequest(), metadata=metadata, timeout=10)
            except grpc.RpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        assert code() not in REFUSED
        revoked_at = time.monotonic()
        revoke_key(database_url, name)
        # Within the TTL the cached key still works: no database round trip per call...
        if time.monotonic() - revoked_at < 0.4:
            assert code() not in REFUSED
        # ...and after it the revocation holds.
        time.sleep(max(0.0, 0.6 - (time.monotonic() - revoked_at)))
        assert code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_zero_ttl_looks_every_key_up(server_with, make_key, database_url):
    server = server_with(auth_cache_ttl_s=0)
    name, key = make_key("read_only")
    with grpc.insecure_channel(server.address) as ch:
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)
        metadata = [("authorization", f"Bearer {key}")]
        stub_call = lambda: call(lambda r, timeout: stub.ListProgrammes(r, metadata=metadata, timeout=timeout),
                                 programme_pb2.ListProgrammesRequest())
        assert stub_call()[0] not in REFUSED
        revoke_key(database_url, name)
        assert stub_call() == (grpc.StatusCode.UNAUTHENTICATED, "credential_unknown")


def test_every_write_records_the_keys_name_as_its_actor(grpc_server, make_key, channel):
    from tests.faults.helpers import Stubs, create_programme, enrol

    admin = Stubs(channel)
    programme = create_programme(admin)
    member = enrol(admin, programme)
    name, key = make_key("manual_points", programmes=[programme])
    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = points_pb2_grpc.PointsServiceStub(ch)
        # A name the caller merely claims in its metadata is not who it is.
        metadata = [("authorization", f"Bearer {key}"), ("caller", "someone-else"), ("actor", "someone-else")]
        moved = stub.AccruePoints(points_pb2.AccruePointsRequest(
            request_id=str(uuid.uuid4()), programme_id=programme, member_id=member, points=5),
            metadata=metadata, timeout=10).movement
    assert moved.actor == name
    (history,) = admin.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
        programme_id=programme, member_id=member), timeout=10).movements
    assert history.actor == name
