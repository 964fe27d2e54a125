"""The Python client as an integrator gets it: `pip install clients/python` from a clean clone, in a
fresh venv without the main project, then the README's till sequence against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.conftest import TillCustomer

ROOT = Path(__file__).resolve().parents[2]


def clean_clone(dest: Path) -> Path:
    """The files a fresh clone has (tracked, or new and not ignored): no generated stubs, no build."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "protos", "clients/python"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("standalone")
    clone = clean_clone(work / "clone")
    assert not list((clone / "clients/python/loyalty/v1").glob("*_pb2*")), "the clone must not carry stubs"
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(clone / "clients/python")],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    return venv


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_installed_client_has_no_server_code_and_is_typed(client_venv: Path):
    probe = subprocess.run(
        [str(client_venv / "bin/python"), "-c",
         "import importlib.util as u, pathlib, loyalty, loyalty.client, loyalty.errors, loyalty.v1.membership_pb2;"
         "print(u.find_spec('loyalty_core') is None, u.find_spec('server') is None,"
         " (pathlib.Path(loyalty.__file__).parent / 'py.typed').exists())"],
        capture_output=True, text=True, check=True, cwd=client_venv,
    )
    assert probe.stdout.split() == ["True", "True", "True"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_till_sequence_runs_from_the_installed_client(client_venv: Path, till_customer: TillCustomer):
    ran = subprocess.run(
        [str(client_venv / "bin/python"), str(ROOT / "clients/python/examples/till.py"),
         till_customer.address, till_customer.programme_id, till_customer.phone],
        capture_output=True, text=True, timeout=60, env={"LOYALTY_API_KEY": till_customer.key, "PATH": "/usr/bin:/bin"},
        cwd=client_venv,  # not the repository: only the installed distribution is importable
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["member_id"] == till_customer.member_id
    assert seen["held"] == seen["points_applied"] == seen["spent"] == 3, seen
    assert seen["refunded_lines"] == [["1", 1]] and seen["refunded_money"] > 0, seen
    assert seen["refused"] == {"code": "INVALID_ARGUMENT", "reason": "value_out_of_range",
                               "fields": ["lines[0].unit_price_minor"]}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_installed_client_leaves_google_rpc_and_health_to_their_packages(client_venv: Path):
    # protos/ carries copies of google/rpc and grpc/health for other languages; generated here, they
    # would shadow googleapis-common-protos' and grpcio-health-checking's modules.
    script = """
import json, pathlib, importlib.metadata as meta
import google.rpc.status_pb2
ours = sorted({str(f).split("/")[0] for f in meta.files("loyalty-client")})
theirs = meta.distribution("googleapis-common-protos").locate_file("google/rpc/status_pb2.py")
print(json.dumps([ours, pathlib.Path(google.rpc.status_pb2.__file__) == pathlib.Path(theirs)]))
"""
    probe = subprocess.run([str(client_venv / "bin/python"), "-c", script],
                           capture_output=True, text=True, check=True, cwd=client_venv)
    top_levels, status_from_its_package = json.loads(probe.stdout)
    assert not {"google", "grpc"} & set(top_levels), top_levels
    assert status_from_its_package
