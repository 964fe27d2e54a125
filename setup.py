"""Build steps only: compile the Cython hot path and generate the gRPC stubs from protos/."""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
PROTOS = ROOT / "protos"
STUBS_OUT = ROOT / "clients" / "python"


def generate_stubs() -> None:
    """protos/loyalty/v1/x.proto -> clients/python/loyalty/v1/x_pb2{,_grpc}.py{,i}, imports untouched."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.glob("loyalty/v1/*.proto"))
    if not sources:
        return
    includes = [f"-I{PROTOS}", f"-I{Path(grpc_tools.__file__).parent / '_proto'}"]
    try:  # google/rpc, google/type, ... should a proto import them
        import google.rpc

        includes.append(f"-I{Path(google.rpc.__path__[0]).parent.parent}")
    except ImportError:
        pass
    args = [
        "grpc_tools.protoc",
        *includes,
        f"--python_out={STUBS_OUT}",
        f"--pyi_out={STUBS_OUT}",
        f"--grpc_python_out={STUBS_OUT}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {sources}")


class BuildPyWithStubs(build_py):
    """Generate the stubs before collecting modules, so they install like hand-written ones."""

    def run(self) -> None:
        generate_stubs()
        super().run()


setup(
    ext_modules=cythonize(
        [Extension("loyalty_core._fastcalc", ["loyalty_core/_fastcalc.pyx"])],
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_py": BuildPyWithStubs},
)
