"""loyalty-client, the operator's command line, run as a process against a real server: a call's answer
as JSON, a refusal's code, reason and bad fields with a non-zero exit, and TLS with a private CA and
a server name that is not the target's host."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.server import ServerThread, make_test_settings
from tests.fixtures.certificates import self_signed

CLI = Path(sys.executable).with_name("loyalty-client")


def run(target: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "--target", target, *args], env={"LOYALTY_API_KEY": key},
                          capture_output=True, text=True, timeout=60)


def create_programme(**fields: object) -> str:
    return json.dumps({"requestId": uuid.uuid4().hex, "programme": {
        "name": f"cli {uuid.uuid4().hex}", "currencyCode": "EUR", "pointValueMinor": "1", **fields}})


def test_a_call_prints_the_answer_as_json(grpc_server, make_key):
    _name, key = make_key("programme_admin")
    done = run(grpc_server.address, key, "call", "ProgrammeService.CreateProgramme", create_programme())
    assert done.returncode == 0, done.stderr
    programme = json.loads(done.stdout)["programme"]
    assert (programme["enabled"], programme["orderPayShareBps"]) == (True, 10_000)


def test_a_refusal_prints_its_code_reason_and_fields_and_exits_non_zero(grpc_server, make_key):
    _name, key = make_key("programme_admin")
    done = run(grpc_server.address, key, "call", "ProgrammeService.CreateProgramme",
               create_programme(pointValueMinor="0"))
    assert done.returncode == 1 and done.stdout == ""
    first, *fields = done.stderr.splitlines()
    assert first.startswith("loyalty-client: INVALID_ARGUMENT value_out_of_range: point_value_minor must be")
    assert fields == ["  programme.point_value_minor: value_out_of_range: point_value_minor must be at least 1"]


def test_a_key_without_the_right_is_refused_with_its_reason(grpc_server, make_key):
    _name, key = make_key("read_only")
    done = run(grpc_server.address, key, "call", "ProgrammeService.CreateProgramme", create_programme())
    assert done.returncode == 1
    assert done.stderr.startswith("loyalty-client: PERMISSION_DENIED right_not_granted: ")


@pytest.fixture
def tls_server(database_url, clock, tmp_path):
    """A TLS server whose certificate names only loyalty.internal, not the address it is reached at."""
    certificate = self_signed(tmp_path, "loyalty.internal")
    server = ServerThread(make_test_settings(database_url, tls_cert_file=certificate.cert_path,
                                             tls_key_file=certificate.key_path), clock).start()
    yield server, certificate
    server.stop()


def test_over_tls_with_the_servers_ca_and_name(tls_server, make_key):
    server, certificate = tls_server
    _name, key = make_key("programme_admin")
    done = run(server.address, key, "--ca-file", certificate.cert_path, "--server-name", "loyalty.internal",
               "call", "ProgrammeService.CreateProgramme", create_programme())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["programme"]["enabled"] is True
    # Refusals read the same over TLS.
    refused = run(server.address, key, "--ca-file", certificate.cert_path, "--server-name", "loyalty.internal",
                  "call", "ProgrammeService.GetProgramme", json.dumps({"programmeId": "not-a-uuid"}))
    assert refused.returncode == 1
    assert refused.stderr.startswith("loyalty-client: INVALID_ARGUMENT ")
    assert "\n  programme_id: " in refused.stderr


@pytest.mark.parametrize("tls_args", [
    [],  # plaintext to a TLS port
    ["--tls"],  # the system's roots do not know a self-signed certificate
    ["--ca-file", "CERT"],  # trusted, but 127.0.0.1 is not the name the certificate carries
], ids=["plaintext", "system-roots", "wrong-name"])
def test_a_tls_server_is_not_reached_without_the_right_roots_and_name(tls_server, make_key, tls_args):
    server, certificate = tls_server
    _name, key = make_key("read_only")
    args = [certificate.cert_path if a == "CERT" else a for a in tls_args]
    done = run(server.address, key, "--timeout-s", "3", *args, "call", "ProgrammeService.ListProgrammes")
    assert done.returncode == 1
    # gRPC's own log line about the failed handshake may come first: it says why, so it stays.
    assert done.stderr.splitlines()[-1].startswith("loyalty-client: UNAVAILABLE: ")


def test_an_unreadable_ca_file_is_said_so(grpc_server, tmp_path):
    done = run(grpc_server.address, "", "--ca-file", str(tmp_path / "missing.pem"), "call",
               "ProgrammeService.ListProgrammes")
    assert done.returncode == 1
    assert done.stderr.startswith("loyalty-client: cannot read --ca-file: ")


def test_the_client_library_refuses_a_server_name_on_a_plaintext_channel():
    from loyalty.client import open_aio_channel, open_channel
    for open_ in (open_channel, open_aio_channel):
        with pytest.raises(ValueError, match="needs TLS"):
            open_("127.0.0.1:1", server_name="loyalty.internal")
