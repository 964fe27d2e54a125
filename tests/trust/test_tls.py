"""TLS on the gRPC port, with a certificate the test makes: keys travel encrypted, plaintext is refused."""

import datetime
import ipaddress
import uuid

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loyalty.v1 import programme_pb2, programme_pb2_grpc
from loyalty_core.settings import Settings
from server import tls
from tests.fixtures.server import ServerThread, make_test_settings


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost and 127.0.0.1: (cert path, key path, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path), cert_pem


@pytest.fixture
def tls_server(database_url, clock, certificate):
    cert_path, key_path, _ = certificate
    server = ServerThread(make_test_settings(database_url, tls_cert_file=cert_path, tls_key_file=key_path),
                          clock).start()
    yield server
    server.stop()


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
