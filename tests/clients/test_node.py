"""The Node client (clients/node) as an integrator builds it: `npm ci`, types generated from protos/ and
type-checked (tsc), then its till example, retries and int64 safety against real servers (its
e-commerce example: test_integration_examples.py). node and npm are required: without them the
`node_client` fixture fails, it does not skip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.clients.conftest import NODE_CLIENT, TillCustomer, loyalty_v1_services, run_in_node_client


def node(script: str, *args: str) -> Any:
    """Run a CommonJS script with the built client as `client`; it prints one JSON value."""
    prelude = f"const client = require({json.dumps(str(NODE_CLIENT / 'dist/src'))});\n"
    return json.loads(run_in_node_client("node", "-e", prelude + script, *args).stdout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_till_example_runs_against_a_real_server(node_client: Path, till_customer: TillCustomer):
    ran = run_in_node_client("node", "dist/examples/till.js",
                             till_customer.address, till_customer.programme_id, till_customer.phone,
                             env={"LOYALTY_API_KEY": till_customer.key})
    seen = json.loads(ran.stdout)
    assert seen["member_id"] == till_customer.member_id
    # Points paid for the quote's share; all held points were spent; int64 fields came as strings.
    assert seen["held"] == seen["points_applied"] == seen["spent"] == "3", seen
    assert seen["refunded_lines"] == [["1", "1"]] and int(seen["refunded_money"]) > 0, seen
    assert seen["refused"] == {"code": "INVALID_ARGUMENT", "reason": "value_out_of_range",
                               "fields": ["lines[0].unit_price_minor"]}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_int64_past_its_range_is_refused_before_anything_is_sent(node_client: Path, flaky):
    server = flaky(failures=0)
    seen = node(
        """
        const c = new client.LoyaltyClient(process.argv[1]);
        const exact = client.points.AccruePointsRequest.decode(client.points.AccruePointsRequest.encode(
          client.points.AccruePointsRequest.fromPartial({ points: "9007199254740993" })).finish()).points;
        c.points.accruePoints({ points: "10000000000000000000" }).then(
          () => console.log(JSON.stringify({ exact, refused: null })),
          (err) => console.log(JSON.stringify({ exact, refused: err.message })),
        ).finally(() => c.close());
        """,
        f"127.0.0.1:{server.port}",
    )
    assert seen == {"exact": "9007199254740993", "refused": "invalid int64: 10000000000000000000"}
    assert server.seen == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_retries_keep_the_first_request_id_and_refusals_are_not_retried(node_client: Path, flaky):
    retried, refused = flaky(failures=2), flaky(failures=1, code=grpc.StatusCode.FAILED_PRECONDITION)
    seen = node(
        """
        const [retried, refused] = process.argv.slice(1).map(
          (target) => new client.LoyaltyClient(target, { apiKey: "k-7", sleep: async () => {} }));
        (async () => {
          const { movement } = await retried.points.accruePoints({ points: "7" });
          const code = await refused.points.accruePoints({ points: "1" }).then(() => null, (e) => client.refusal(e).codeName);
          console.log(JSON.stringify({ points: movement.points, code }));
          retried.close(); refused.close();
        })();
        """,
        f"127.0.0.1:{retried.port}", f"127.0.0.1:{refused.port}",
    )
    assert seen == {"points": "7", "code": "FAILED_PRECONDITION"}
    assert len(retried.seen) == 3 and len({rid for rid, _ in retried.seen}) == 1 and retried.seen[0][0]
    assert {auth for _, auth in retried.seen} == {"Bearer k-7"}
    assert len(refused.seen) == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_service_of_the_protos_is_wrapped(node_client: Path):
    wrapped = node("console.log(JSON.stringify(Object.values(client.SERVICES).map((s) => s.fullName)))")
    assert sorted(wrapped) == sorted(loyalty_v1_services() | {"grpc.health.v1.Health"})


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_over_tls_the_key_is_sent_and_health_answers(node_client: Path, tls_server, certificate, make_key):
    _name, key = make_key("read_only")
    seen = node(
        """
        const [target, key, pem] = process.argv.slice(1);
        const c = new client.LoyaltyClient(target, { apiKey: key, rootCertificates: Buffer.from(pem) });
        (async () => {
          const { status } = await c.health.check({ service: "" });
          const missing = await c.programmes.getProgramme({ programmeId: "00000000-0000-4000-8000-000000000000" })
            .then(() => null, (e) => client.refusal(e).codeName);
          console.log(JSON.stringify({ status: client.health.healthCheckResponse_ServingStatusToJSON(status), missing }));
          c.close();
        })();
        """,
        tls_server.address, key, certificate[2].decode(),
    )
    # NOT_FOUND, not UNAUTHENTICATED: the key went over TLS and was accepted.
    assert seen == {"status": "SERVING", "missing": "NOT_FOUND"}


def test_buf_is_pinned_at_the_version_the_tools_use():
    def buf_of(package: Path) -> str:
        return json.loads(package.read_text())["devDependencies"]["@bufbuild/buf"]

    assert buf_of(NODE_CLIENT / "package.json") == buf_of(NODE_CLIENT.parents[1] / "tools" / "package.json")
