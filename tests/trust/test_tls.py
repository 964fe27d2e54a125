"""TLS on the gRPC port, with a certificate the test makes: keys travel encrypted, plaintext is refused."""

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalty.v1 import programme_pb2, programme_pb2_grpc
from loyalty_core.settings import Settings
from server import tls
from tests.fixtures.server import make_test_settings


def test_a_tls_client_with_a_key_is_served(tls_server, certificate, make_key):
    _name, key = make_key("read_only")
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=certificate[2]),
        # Sends "authorization: Bearer <key>", as the server expects.
        grpc.access_token_call_credentials(key),
    )
    with grpc.secure_channel(tls_server.address, credentials) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)
        try:
            stub.GetProgramme(programme_pb2.GetProgrammeRequest(programme_id=str(uuid.uuid4())), timeout=10)
        except grpc.RpcError as err:
            assert err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                                      grpc.StatusCode.UNAVAILABLE)


def test_plaintext_is_refused_on_a_tls_port(tls_server):
    with grpc.insecure_channel(tls_server.address) as ch:
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_server):
    with grpc.secure_channel(tls_server.address, grpc.ssl_channel_credentials()) as ch:
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_half_a_tls_configuration_is_refused(certificate):
    with pytest.raises(ValueError, match="LOYALTY_TLS_KEY_FILE"):
        Settings.from_env({"LOYALTY_TLS_CERT_FILE": certificate[0]})
    with pytest.raises(ValueError, match="LOYALTY_TLS_KEY_FILE"):
        tls.server_credentials(make_test_settings(None, tls_cert_file=certificate[0]))
    assert tls.server_credentials(make_test_settings(None)) is None
