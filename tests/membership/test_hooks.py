"""The purchase hooks the ledger calls, on the real database: an order counts once, however often."""

from __future__ import annotations

from typing import Any

from loyalty.v1 import membership_pb2
from loyalty_core import membership
from loyalty_core.clock import ManualClock
from loyalty_core.model import MemberRef
from loyalty_core.store import members, orders, programmes
from loyalty_core.store.db import Database
from tests.membership.conftest import Members


async def test_an_order_counts_once_however_often_the_hook_is_called(
        api: Members, db: Database, clock: ManualClock) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    order_id = api.buy(p.programme_id, m.member_id, [("bar", 2, 5_000)])

    async def count_again(conn: Any) -> None:
        member = await members.find(conn, p.programme_id, MemberRef(member_id=m.member_id), lock=True)
        programme = await programmes.get(conn, p.programme_id)
        stored = await orders.get(conn, p.programme_id, order_id)
        await membership.count_purchase(conn, programme, member, stored.order, clock.now_us())

    await db.run_in_transaction(count_again)
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 10_000
    counted = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_ORDERS).events
    assert [e.kind for e in counted if e.kind != "order"] == ["purchase_counted"]
