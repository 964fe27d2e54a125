"""The expiry run expires members whose only due work is lots in batches, a transaction for several
members, and does for each exactly what a member's own transaction does."""

import psycopg

from loyalty.v1 import points_pb2
from loyalty_core.service import points
from loyalty_core.store.db import Database
from tests.fixtures import citus


def _expiry_transactions(database_url: str, member_ids: list[str]) -> dict[str, str]:
    """By member, the transaction that wrote its expiry's movements (their xmin)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT DISTINCT member_id::text, xmin::text FROM movement"
                            " WHERE member_id = ANY(%s::uuid[]) AND kind IN ('expired', 'activated')",
                            (member_ids,)).fetchall()
    assert len(rows) == len({m for m, _ in rows}), "one member's expiry in one transaction"
    return dict(rows)


def _event_seqs(database_url: str, member_id: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT seq, type FROM outbox_event WHERE member_id = %s ORDER BY seq",
                            (member_id,)).fetchall()


def test_members_with_only_lots_due_expire_in_batches_and_each_as_on_its_own(api, clock, database_url,
                                                                            monkeypatch):
    monkeypatch.setattr(points, "LOTS_BATCH", 3)
    p = api.programme(activation_delay_days=5, point_lifetime_days=365, hold_ttl_seconds=600)
    # Seven members with a lot that burns and one that never does; two of them also earn points
    # that become usable in five days; one member with a lot that burns and nothing else.
    burning = [api.enrol(p.programme_id) for _ in range(7)]
    for i, m in enumerate(burning):
        api.accrue(p.programme_id, m.member_id, 10 + i, expiry={"lifetime_days": 1})
        api.accrue(p.programme_id, m.member_id, 3, expiry={"never": True})
    activating = burning[:2]
    earned = [api.capture(p.programme_id, api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 5_000)])
                          .order_id).earned_points for m in activating]
    assert all(earned)
    # A member with a hold past its lifetime: its own transaction (the hold goes back, then burns).
    holding = api.enrol(p.programme_id)
    api.accrue(p.programme_id, holding.member_id, 20, expiry={"lifetime_days": 1})
    api.checkout_order(p.programme_id, holding.member_id, [("bar", 1, 5_000)], points=5)
    # Nothing due.
    idle = api.enrol(p.programme_id)
    api.accrue(p.programme_id, idle.member_id, 4, expiry={"never": True})
    events_before = {m.member_id: len(_event_seqs(database_url, m.member_id)) for m in burning}
    clock.advance(days=6)

    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))

    assert (run.lots_expired, run.points_expired) == (8, sum(10 + i for i in range(7)) + 20)
    assert (run.lots_activated, run.points_activated) == (2, sum(earned))
    assert (run.holds_released, run.points_released) == (1, 5)
    for i, m in enumerate(burning):
        b = api.balance(p.programme_id, m.member_id)
        assert (b.active_points, b.pending_points, b.expired_total_points) == (
            3 + (earned[activating.index(m)] if m in activating else 0), 0, 10 + i)
        [expired] = api.history(p.programme_id, m.member_id, "EXPIRED")
        assert (expired.points, expired.actor) == (-(10 + i), points.EXPIRY_CONTEXT.actor)
        # The events follow the member's own sequence, with no gap.
        seqs = _event_seqs(database_url, m.member_id)
        assert [s for s, _ in seqs] == list(range(1, len(seqs) + 1))
        assert "points.expired" in [t for _, t in seqs[events_before[m.member_id]:]]
    b = api.balance(p.programme_id, holding.member_id)
    assert (b.active_points, b.held_points, b.expired_total_points) == (0, 0, 20)
    assert api.balance(p.programme_id, idle.member_id).active_points == 4
    if not citus.CITUS_MODE:
        # Seven members in batches of three: three transactions; the member with a hold in its own.
        # (On Citus each member's transaction stays on its shard, and a worker's xids are its own.)
        transactions = _expiry_transactions(database_url, [m.member_id for m in burning] + [holding.member_id])
        assert len(set(transactions[m.member_id] for m in burning)) == 3
        assert transactions[holding.member_id] not in {transactions[m.member_id] for m in burning}
    assert not api.verify().disagreements
    again = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (again.lots_expired, again.lots_activated, again.holds_released) == (0, 0, 0)


async def test_a_bounded_run_stops_inside_a_batch_and_the_next_run_takes_up_the_rest(api, clock, database_url,
                                                                                   monkeypatch):
    monkeypatch.setattr(points, "LOTS_BATCH", 4)
    p = api.programme()
    members = [api.enrol(p.programme_id) for _ in range(10)]
    for m in members:
        api.accrue(p.programme_id, m.member_id, 6, expiry={"lifetime_days": 1})
    clock.advance(days=2)
    async with Database(database_url, pool_min_size=1, pool_max_size=2) as db:
        first = await points.run_expiry(db, clock, p.programme_id, None, members_max=6)
        rest = await points.run_expiry(db, clock, p.programme_id, None, members_max=6)
        none = await points.run_expiry(db, clock, p.programme_id, None, members_max=6)
    assert [(r.members, r.lots_expired) for r in (first, rest, none)] == [(6, 6), (4, 4), (0, 0)]
    assert sum(api.balance(p.programme_id, m.member_id).expired_total_points for m in members) == 10 * 6
