"""Generates the ceiling stubs at run time into a temporary folder (stubs are never committed)."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PROTO = "ceiling.proto"


def generate(out_dir: str | Path | None = None) -> Path:
    """Run protoc on benchmarks/ceiling.proto into ``out_dir`` (a new temp dir when None)."""
    from grpc_tools import protoc  # imported here: only the runner generates

    out = Path(out_dir or tempfile.mkdtemp(prefix="loyalty-bench-stubs-"))
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    rc = protoc.main(["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(HERE / PROTO)])
    if rc != 0:
        raise RuntimeError(f"protoc failed on {HERE / PROTO} (exit {rc})")
    return out


def load(stub_dir: str | Path) -> tuple[ModuleType, ModuleType]:
    """Import ``ceiling_pb2`` and ``ceiling_pb2_grpc`` from a folder made by ``generate``."""
    path = str(stub_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("ceiling_pb2"), importlib.import_module("ceiling_pb2_grpc")
