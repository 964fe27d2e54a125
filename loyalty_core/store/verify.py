"""The ledger's invariants as set-based queries: every member and lot at once, disagreements as rows."""

from __future__ import annotations

from typing import Any

from loyalty_core.model import Disagreement
from loyalty_core.store.ledger import TOTALS_SQL

_SCOPE = "(%(p)s::uuid IS NULL OR mem.programme_id = %(p)s::uuid)"
# The details are built with || on ::text, not format(): Citus runs these queries on every shard at
# once only when the functions in their VALUES lists are immutable (format() is only stable).

_MEMBERS = f"""
WITH mv AS (
    SELECT member_id, coalesce(sum(points), 0) AS points,
           {", ".join(f"{expr} AS {name}" for name, expr in TOTALS_SQL.items())}
    FROM movement GROUP BY member_id
), lt AS (
    SELECT member_id, sum(remaining) AS remaining FROM lot GROUP BY member_id
), hd AS (
    SELECT member_id, sum(points) AS points FROM hold WHERE state = 'open' GROUP BY member_id
)
SELECT mem.programme_id::text, mem.member_id::text, c.invariant, c.detail
FROM member mem
LEFT JOIN mv ON mv.member_id = mem.member_id
LEFT JOIN lt ON lt.member_id = mem.member_id
LEFT JOIN hd ON hd.member_id = mem.member_id
CROSS JOIN LATERAL (VALUES
    ('balance_equals_sum_of_lots', coalesce(mv.points, 0) = coalesce(lt.remaining, 0),
     ('movements sum to ' || (coalesce(mv.points, 0))::text || ' points, lots hold ' || (coalesce(lt.remaining, 0))::text)),
    ('held_equals_open_holds', mem.held_points = coalesce(hd.points, 0),
     ('member holds ' || (mem.held_points)::text || ' points, open holds ' || (coalesce(hd.points, 0))::text)),
    {",".join(f'''
    ('{name}_equals_movements', mem.{name} = coalesce(mv.{name}, 0),
     ('member says ' || (mem.{name})::text || ', movements ' || (coalesce(mv.{name}, 0))::text))''' for name in TOTALS_SQL)}
) AS c(invariant, ok, detail)
WHERE NOT c.ok AND {_SCOPE}
ORDER BY 1, 2, 3
"""

_LOTS = f"""
WITH alloc AS (
    SELECT m.member_id, a.lot_id, sum(a.points) AS total,
           coalesce(sum(a.points) FILTER (WHERE m.kind IN ('earned', 'welcome', 'manual_accrual', 'event_bonus')), 0)
               AS created
    FROM movement m, unnest(m.lot_ids, m.lot_points) AS a(lot_id, points)
    GROUP BY m.member_id, a.lot_id
)
SELECT mem.programme_id::text, mem.member_id::text, c.invariant, format('lot %%s: ', l.lot_id) || c.detail
FROM lot l
JOIN member mem ON mem.member_id = l.member_id
LEFT JOIN alloc a ON a.member_id = l.member_id AND a.lot_id = l.lot_id
CROSS JOIN LATERAL (VALUES
    ('lot_remaining_equals_allocations', coalesce(a.total, 0) = l.remaining,
     ('remaining ' || (l.remaining)::text || ', allocations sum to ' || (coalesce(a.total, 0))::text)),
    ('lot_amount_equals_its_credit', coalesce(a.created, 0) = l.amount,
     ('amount ' || (l.amount)::text || ', credited ' || (coalesce(a.created, 0))::text)),
    ('lot_remaining_not_negative', l.remaining >= 0, ('remaining ' || (l.remaining)::text))
) AS c(invariant, ok, detail)
WHERE NOT c.ok AND {_SCOPE}
UNION ALL
SELECT mem.programme_id::text, mem.member_id::text, 'open_hold_equals_its_lots',
       format('hold %%s holds %%s points, its lots %%s', h.hold_id, h.points,
              (SELECT coalesce(sum(x), 0) FROM unnest(h.lot_points) AS x))
FROM hold h JOIN member mem ON mem.member_id = h.member_id
WHERE h.state = 'open' AND h.points <> (SELECT coalesce(sum(x), 0) FROM unnest(h.lot_points) AS x) AND {_SCOPE}
ORDER BY 1, 2, 3
"""

# Every certificate's balances are the sums of its movements, its value its issued movement, and a
# certificate that ended holds nothing.
_CERTIFICATES = f"""
WITH mv AS (
    SELECT member_id, certificate_id, sum(points) AS points, sum(held_delta) AS held,
           coalesce(sum(points) FILTER (WHERE kind = 'issued'), 0) AS issued
    FROM certificate_movement GROUP BY member_id, certificate_id
)
SELECT mem.programme_id::text, mem.member_id::text, c.invariant, 'certificate ' || x.certificate_id::text || ': ' || c.detail
FROM certificate x
JOIN member mem ON mem.member_id = x.member_id
LEFT JOIN mv ON mv.member_id = x.member_id AND mv.certificate_id = x.certificate_id
CROSS JOIN LATERAL (VALUES
    ('certificate_remaining_equals_movements', x.remaining_points = coalesce(mv.points, 0),
     ('remaining ' || (x.remaining_points)::text || ', movements sum to ' || (coalesce(mv.points, 0))::text)),
    ('certificate_held_equals_movements', x.held_points = coalesce(mv.held, 0),
     ('held ' || (x.held_points)::text || ', movements sum to ' || (coalesce(mv.held, 0))::text)),
    ('certificate_value_equals_its_issue', x.value_points = coalesce(mv.issued, 0),
     ('value ' || (x.value_points)::text || ', issued ' || (coalesce(mv.issued, 0))::text))
) AS c(invariant, ok, detail)
WHERE NOT c.ok AND {_SCOPE}
ORDER BY 1, 2, 3
"""

_COUNTS = f"""
SELECT (SELECT count(*) FROM member mem WHERE {_SCOPE}),
       (SELECT count(*) FROM lot l JOIN member mem ON mem.member_id = l.member_id WHERE {_SCOPE})
"""


async def disagreements(conn: Any, programme_id: str | None) -> list[Disagreement]:
    found = []
    for query in (_MEMBERS, _LOTS, _CERTIFICATES):
        cur = await conn.execute(query, {"p": programme_id})
        found += [Disagreement(*r) for r in await cur.fetchall()]
    return found


async def counts(conn: Any, programme_id: str | None) -> tuple[int, int]:
    """(members, lots) in scope."""
    cur = await conn.execute(_COUNTS, {"p": programme_id})
    members, lots = await cur.fetchone()
    return members, lots
