"""Build step only: generate the gRPC stubs from ../../protos before collecting the package."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).parent.resolve()))
from build_stubs import generate_stubs  # noqa: E402


class BuildPyWithStubs(build_py):
    """Generate the stubs first, so they install like hand-written modules."""

    def run(self) -> None:
        generate_stubs()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
