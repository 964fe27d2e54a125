"""Generate loyalty/v1/*_pb2{,_grpc}.py{,i} from the repository's protos/ (build step only).

Both builds use it: this client's own (`pip install clients/python`) and the main project's
(setup.py at the repository root), so the stubs are made one way only.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent.resolve()
PROTOS = HERE.parent.parent / "protos"


def generate_stubs(protos: Path = PROTOS, out: Path = HERE) -> None:
    """protos/loyalty/v1/x.proto -> out/loyalty/v1/x_pb2{,_grpc}.py{,i}, imports untouched."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(protos)) for p in protos.glob("loyalty/v1/*.proto"))
    if not sources:
        raise SystemExit(f"no loyalty/v1/*.proto under {protos}: build from a checkout of the repository")
    # Only our own files: the google.rpc and grpc.health.v1 copies under protos/ (for other languages)
    # come to Python from googleapis-common-protos and grpcio-health-checking, which modules of the
    # same names generated here would shadow. google/protobuf/*.proto come with grpcio-tools.
    includes = [f"-I{protos}", f"-I{Path(grpc_tools.__file__).parent / '_proto'}"]
    args = [
        "grpc_tools.protoc",
        *includes,
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {sources}")
