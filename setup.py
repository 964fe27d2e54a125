"""Build steps only: compile the Cython hot path and generate the gRPC stubs from protos/."""

import importlib.util
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
# The client distribution's generator (clients/python/build_stubs.py) writes the stubs for both builds.
_spec = importlib.util.spec_from_file_location("build_stubs", ROOT / "clients" / "python" / "build_stubs.py")
build_stubs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_stubs)


class BuildPyWithStubs(build_py):
    """Generate the stubs before collecting modules, so they install like hand-written ones."""

    def run(self) -> None:
        build_stubs.generate_stubs()
        super().run()


setup(
    ext_modules=cythonize(
        [Extension("loyalty_core._fastcalc", ["loyalty_core/_fastcalc.pyx"])],
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_py": BuildPyWithStubs},
)
