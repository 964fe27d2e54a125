"""The server as its own process: started as the README does, two at once, database outages."""

import os
import signal
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from loyalty.v1 import programme_pb2, programme_pb2_grpc
from loyalty_core.store import migrate
from tests.fixtures.keys import ALL_RIGHTS, create_key
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.server import ROOT, ServerProcess, health_status, wait_for

SCRIPT = Path(sys.executable).with_name("loyalty-core")


def list_programmes(address: str, key: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as ch:
        try:
            programme_pb2_grpc.ProgrammeServiceStub(ch).ListProgrammes(
                programme_pb2.ListProgrammesRequest(page_size=10), timeout=5,
                metadata=[("authorization", f"Bearer {key}")])
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                info = error_details_pb2.ErrorInfo()
                st = rpc_status.from_call(err)
                assert st is not None and st.details[0].Unpack(info)
                assert info.reason == "database_unavailable"
            return err.code()
    return grpc.StatusCode.OK


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def serve_data_dir():
    """The README's default, made per test run: an embedded PostgreSQL inside the project folder."""
    path = ROOT / ".loyalty-data" / "test-serve"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_readme_serve_answers_counts_and_stops_cleanly(serve_data_dir: Path):
    # Exactly the README's line 1 (./dev serve), with the embedded PostgreSQL it defaults to.
    env = {"LOYALTY_DATA_DIR": str(serve_data_dir)}
    server = ServerProcess(env, command=["./dev", "serve"]).start()
    try:
        server.wait_serving()
        assert server.wait_event("serving")["embedded"] is True
        # An operator's key, made as the README says, on the same embedded database.
        made = subprocess.run([str(SCRIPT), "keys", "create", "--name", "readme-test", "--rights", "read_only",
                               "--all-programmes"], cwd=ROOT, env={**server.env, **env},
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        key = made.stdout.split()[-1]
        assert list_programmes(server.address, key) == grpc.StatusCode.OK
        assert list_programmes(server.address, "lc_not-a-key") == grpc.StatusCode.UNAUTHENTICATED
        samples = scrape(server.metrics_port)
        for code in ("OK", "UNAUTHENTICATED"):
            labels = (("grpc_code", code), ("grpc_method", "ListProgrammes"),
                      ("grpc_service", "loyalty.v1.ProgrammeService"), ("grpc_type", "unary"))
            assert samples[("grpc_server_handled_total", labels)] == 1
        assert samples[("loyalty_db_up", ())] == 1
        def access_lines():
            lines = [e for e in server.events("rpc") if e["method"].endswith("/ListProgrammes")]
            return lines if len(lines) >= 2 else None

        # An access line is written just after its answer is sent: under load it can come later.
        access = wait_for(access_lines, 10, "both access log lines")
        assert [e["grpc_code"] for e in access] == ["OK", "UNAUTHENTICATED"] and "duration_ms" in access[0]
        assert key not in "".join(server.raw)  # the key itself is never logged
    finally:
        assert server.terminate() == 0
    assert server.events("stopped")
    # The embedded PostgreSQL was stopped with the server.
    assert not (serve_data_dir / "pg" / "postmaster.pid").exists()


def test_two_servers_on_one_empty_database_migrate_it_once(create_database):
    url = create_database()  # empty: not migrated
    servers = [ServerProcess({"LOYALTY_DATABASE_URL": url}).start() for _ in range(2)]
    try:
        for s in servers:
            s.wait_serving()
            assert health_status_of(s) == "SERVING"
        applied = [e["version"] for s in servers for e in s.events("migration_applied")]
        assert sorted(applied) == [m.version for m in migrate.discover()]
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [v for (v,) in rows] == [m.version for m in migrate.discover()]
    finally:
        codes = [s.terminate() for s in servers]
    assert codes == [0, 0]


def health_status_of(server: ServerProcess) -> str:
    with grpc.insecure_channel(server.address) as ch:
        return health_status(ch)


def test_database_outage_is_not_serving_unavailable_and_recovers(database_url: str):
    _name, key = create_key(database_url, ALL_RIGHTS)
    proxy = TcpProxy(database_url).start()
    server = ServerProcess({"LOYALTY_DATABASE_URL": proxy.url, "LOYALTY_POOL_TIMEOUT_S": "1",
                            "LOYALTY_POOL_RECONNECT_TIMEOUT_S": "1"}).start()
    try:
        server.wait_serving()
        assert list_programmes(server.address, key) == grpc.StatusCode.OK

        proxy.cut()
        wait_for(lambda: health_status_of(server) == "NOT_SERVING", 15, "NOT_SERVING while the database is away")
        assert list_programmes(server.address, key) == grpc.StatusCode.UNAVAILABLE

        proxy.restore()
        wait_for(lambda: health_status_of(server) == "SERVING", 30, "SERVING once the database is back")
        assert list_programmes(server.address, key) == grpc.StatusCode.OK
    finally:
        proxy.cut()
        assert server.terminate() == 0


def test_sigint_stops_cleanly_too(database_url: str):
    server = ServerProcess({"LOYALTY_DATABASE_URL": database_url}).start()
    server.wait_serving()
    assert server.terminate(sig=signal.SIGINT) == 0
    assert server.events("stopping") and server.events("stopped")


def test_migrate_command_migrates_an_empty_database(create_database):
    url = create_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    done = subprocess.run([str(SCRIPT), "migrate"], env={**env, "LOYALTY_DATABASE_URL": url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in migrate.discover()]
