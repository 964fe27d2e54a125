"""Every metric the Grafana dashboard and the Prometheus rules query is one a running server exports
(or a rule of deploy/prometheus records): a server process is started, called the way a till calls it
(so the metrics that appear on first use appear), scraped, and each name looked up among the samples.
Sample names carry the suffixes the queries use (``_total``, ``_bucket``, ``_count``, ``_sum``)."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from loyalty.v1 import checkout_pb2, common_pb2, events_pb2, events_pb2_grpc
from tests.events.conftest import MASTER_KEY, Receiver
from tests.faults.helpers import Stubs, accrue, basket, capture_request, checkout_request, create_programme, enrol
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ServerProcess, wait_for
from tests.grpc.conftest import new_id

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "loyalty-core.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "loyalty-core.json"

# PromQL words that are not metric names: operators, modifiers, and the special float literals.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
            "bool", "inf", "nan", "le"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded rule) names a PromQL expression reads."""
    expr = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", expr)  # Grafana's variable query
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges: [5m], [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name not in KEYWORDS:
            names.add(name)
    return names


def test_the_name_extraction_finds_metrics_and_only_them():
    assert metric_names('histogram_quantile(0.99, sum by (le, grpc_method) (rate(x_bucket{grpc_code=~"A|B"}[5m])))'
                        ' > 1.2 * (y:z offset 1h) and on () time() - w') == {"x_bucket", "y:z", "w"}
    assert metric_names("label_values(loyalty_outstanding_points, programme_id)") == {"loyalty_outstanding_points"}


def rule_exprs() -> tuple[set[str], list[str]]:
    """(names the rules record, every expression of the rules file)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return {r["record"] for r in rules if "record" in r}, [r["expr"] for r in rules]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    exprs += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def scrape(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def exercised_server(create_database):
    """A server process after a till's calls: a programme with a webhook subscribed to it (the
    outbox's metrics are per subscription), a member with points, a quote, a checkout and its
    capture, and the capture retried (an idempotent replay)."""
    url = create_database(migrated=True)
    _name, key = create_key(url, ALL_RIGHTS)
    receiver = Receiver().start()
    server = ServerProcess({"LOYALTY_DATABASE_URL": url, "LOYALTY_LEDGER_GAUGES_MAX_AGE_S": "0",
                            "LOYALTY_WEBHOOK_MASTER_KEY": MASTER_KEY}).start()
    try:
        server.wait_serving()
        with grpc.insecure_channel(server.address) as ch:
            channel = grpc.intercept_channel(ch, BearerKey(key))
            stubs = Stubs(channel)
            programme_id = create_programme(stubs)
            receiver.secret = events_pb2_grpc.EventServiceStub(channel).CreateWebhook(events_pb2.CreateWebhookRequest(
                request_id=new_id(), webhook=events_pb2.Webhook(programme_id=programme_id, url=receiver.url)),
                timeout=10).signing_secret
            member_id = enrol(stubs, programme_id)
            accrue(stubs, programme_id, member_id, 500)
            stubs.checkout.Quote(checkout_pb2.QuoteRequest(
                programme_id=programme_id, member=common_pb2.MemberRef(member_id=member_id), lines=basket(1000),
                requested_points=100), timeout=10)
            order_id = uuid.uuid4().hex
            stubs.checkout.Checkout(checkout_request(programme_id, member_id, order_id, 1000, 100), timeout=10)
            stubs.checkout.Checkout(checkout_request(programme_id, member_id, uuid.uuid4().hex, 500, 50), timeout=10)
            for _ in range(2):
                stubs.checkout.Capture(capture_request(programme_id, order_id), timeout=10)
        yield server
    finally:
        receiver.stop()
        assert server.terminate() == 0


@pytest.mark.slow
def test_every_metric_the_dashboard_and_the_rules_query_is_exported(exercised_server):
    recorded, exprs = rule_exprs()
    wanted = set().union(*(metric_names(e) for e in exprs + dashboard_exprs()))
    # A recorded name must be one of the rules'; every other name must be exported.
    assert {n for n in wanted if ":" in n} <= recorded
    exported_wanted = {n for n in wanted if ":" not in n}
    assert len(exported_wanted) >= 20, exported_wanted  # the extraction found the queries' metrics

    def missing() -> set[str]:
        return exported_wanted - scrape(exercised_server.metrics_port)

    # The scheduler's first runs (job metrics) come within a tick or two of start-up.
    try:
        wait_for(lambda: not missing(), 20, "every queried metric")
    except TimeoutError:
        pass
    assert missing() == set()
