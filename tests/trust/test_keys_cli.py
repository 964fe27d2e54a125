"""`loyalty-core keys create|list|revoke`: the key is printed once, only its hash is stored."""

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import psycopg

from loyalty.v1 import programme_pb2, programme_pb2_grpc
from loyalty_core.store import keys

SCRIPT = Path(sys.executable).with_name("loyalty-core")


def keys_cmd(database_url, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env["LOYALTY_DATABASE_URL"] = database_url
    return subprocess.run([str(SCRIPT), "keys", *args], env=env, capture_output=True, text=True, timeout=60)


def test_create_list_revoke(database_url, grpc_server):
    name = f"till-{uuid.uuid4().hex[:8]}"
    programme = str(uuid.uuid4())
    created = keys_cmd(database_url, "create", "--name", name, "--rights", "pos,read_only",
                       "--programmes", programme)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith(keys.KEY_PREFIX) and len(key) == keys.KEY_LENGTH
    assert "shown only this once" in created.stderr

    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT key_hash, rights, programme_ids::text[] FROM api_key WHERE name = %s",
                              (name,)).fetchone()
        dump = conn.execute("SELECT row_to_json(k)::text FROM api_key k WHERE name = %s", (name,)).fetchone()[0]
    assert bytes(stored[0]) == hashlib.sha256(key.encode()).digest()
    assert sorted(stored[1]) == ["pos", "read_only"] and stored[2] == [programme]
    assert key not in dump and key[len(keys.KEY_PREFIX):] not in dump

    listed = keys_cmd(database_url, "list")
    assert listed.returncode == 0
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(name + "\t"))
    assert row[1] == key[: keys.SHOWN_PREFIX_LENGTH] and row[2] == "pos,read_only" and row[3] == programme
    assert row[5] == ""
    assert key not in listed.stdout

    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = programme_pb2_grpc.ProgrammeServiceStub(ch)
        request = programme_pb2.GetProgrammeRequest(programme_id=programme)
        metadata = [("authorization", f"Bearer {key}")]
        try:
            stub.GetProgramme(request, metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            assert err.code() != grpc.StatusCode.UNAUTHENTICATED

        revoked = keys_cmd(database_url, "revoke", name)
        assert revoked.returncode == 0, revoked.stderr
        listed = keys_cmd(database_url, "list")
        assert next(line for line in listed.stdout.splitlines() if line.startswith(name + "\t")).split("\t")[5]


def test_a_name_is_never_reused_even_after_revocation(database_url):
    name = f"web-{uuid.uuid4().hex[:8]}"
    assert keys_cmd(database_url, "create", "--name", name, "--rights", "ecommerce", "--all-programmes").returncode == 0
    assert keys_cmd(database_url, "revoke", name).returncode == 0
    again = keys_cmd(database_url, "create", "--name", name, "--rights", "ecommerce", "--all-programmes")
    assert again.returncode == 2 and "api_key_name_taken" in again.stderr and again.stdout == ""


def test_bad_input_is_refused_with_the_rule(database_url):
    bad_right = keys_cmd(database_url, "create", "--name", "x1", "--rights", "pos,root", "--all-programmes")
    assert bad_right.returncode == 2 and "root" in bad_right.stderr
    bad_name = keys_cmd(database_url, "create", "--name", "Has Space", "--rights", "pos", "--all-programmes")
    assert bad_name.returncode == 2 and "value_out_of_range" in bad_name.stderr
    bad_id = keys_cmd(database_url, "create", "--name", "x2", "--rights", "pos", "--programmes", "nope")
    assert bad_id.returncode == 2 and "malformed_id" in bad_id.stderr
    no_scope = keys_cmd(database_url, "create", "--name", "x3", "--rights", "pos")
    assert no_scope.returncode == 2  # argparse: --programmes or --all-programmes is required
    unknown = keys_cmd(database_url, "revoke", "no-such-key")
    assert unknown.returncode == 2 and "api_key_not_found" in unknown.stderr
