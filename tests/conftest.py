"""Test configuration: fixtures are split by concern under tests/fixtures/."""

import os

# The tests start server processes while gRPC threads run in this one; gRPC's fork handlers are
# not needed for fork+exec and only log a warning about those threads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = [
    "tests.fixtures.citus",
    "tests.fixtures.clock",
    "tests.fixtures.database",
    "tests.fixtures.keys",
    "tests.fixtures.server",
    "tests.fixtures.tls",
]
