"""Every certificate movement publishes its event in the outbox, in the member's order, as the
points' movements do; no event carries a certificate's code."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import psycopg
import pytest

from loyalty.v1 import checkout_pb2
from tests.grpc.conftest import new_id
from tests.membership.test_certificates import Certificates
from tests.membership.test_certificates_at_the_till import check_out, issued


@pytest.fixture
def api(channel_with: Callable[..., grpc.Channel]) -> Certificates:
    return Certificates(channel_with())


def _outbox(database_url: str, member_id: str) -> list[tuple[int, str, dict]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT seq, type, payload FROM outbox_event WHERE member_id = %s ORDER BY seq",
                            (member_id,)).fetchall()


def _movements(database_url: str, member_id: str) -> list[dict]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT certificate_id::text, kind, points, held_delta, forfeited_points, coalesce(order_id, ''), comment"
            " FROM certificate_movement WHERE member_id = %s ORDER BY movement_id", (member_id,)).fetchall()
    return [{"certificate_id": r[0], "movement_kind": r[1], "points": r[2], "held_points": r[3],
             "forfeited_points": r[4], "order_id": r[5], "comment": r[6]} for r in rows]


def test_each_certificate_movement_is_an_event_in_the_members_order_without_the_code(
        api: Certificates, database_url: str) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    spent, spent_code = issued(api, p.programme_id, m.member_id, 80)
    cancelled, _ = issued(api, p.programme_id, m.member_id, 30)
    released, released_code = issued(api, p.programme_id, m.member_id, 50)
    # Spent whole at a capture; held then released by a cancelled checkout; cancelled by hand.
    order = check_out(api, p.programme_id, m.member_id, [spent_code])
    api.capture(p.programme_id, order.order_id)
    open_order = check_out(api, p.programme_id, m.member_id, [released_code], lines=[("bar", 1, 2_000)])
    api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=open_order.order_id))
    api.cancel(p.programme_id, cancelled, reason="withdrawn")

    events = _outbox(database_url, m.member_id)
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    certificate_events = [(t, payload) for _, t, payload in events if t.startswith("certificate.")]
    assert [payload for _, payload in certificate_events] == _movements(database_url, m.member_id)
    assert [(t, payload["certificate_id"]) for t, payload in certificate_events] == [
        ("certificate.issued", spent.certificate_id), ("certificate.issued", cancelled.certificate_id),
        ("certificate.issued", released.certificate_id),
        ("certificate.held", spent.certificate_id), ("certificate.spent", spent.certificate_id),
        ("certificate.held", released.certificate_id), ("certificate.released", released.certificate_id),
        ("certificate.cancelled", cancelled.certificate_id)]
    assert certificate_events[-1][1]["comment"] == "withdrawn"
    assert certificate_events[4][1]["order_id"] == order.order_id
    stored = json.dumps([payload for _, _, payload in events])
    assert spent_code not in stored and released_code not in stored
