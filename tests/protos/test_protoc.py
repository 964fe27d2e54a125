"""protos/ stands alone: protoc given only `-I protos` compiles every file in it (what a client in any
language does from a clean clone). grpc_tools.protoc adds only protoc's own well-known types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTOS = Path(__file__).resolve().parents[2] / "protos"


def test_protoc_with_only_protos_on_the_path_compiles_every_file(tmp_path: Path):
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out = tmp_path / "all.binpb"
    compiled = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}", *sources],
        capture_output=True, text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    files = {f.name for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    # What a client needs beside our API: the Status in grpc-status-details-bin, its details, health.
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto", "grpc/health/v1/health.proto"} <= files
    assert {s for s in sources if s.startswith("loyalty/v1/")} <= files
