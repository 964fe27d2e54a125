"""Certificates and their movements (member-owned rows): issue, find by code, hold, spend, release, end."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core.certificates import Certificate
from loyalty_core.events import certificate_event
from loyalty_core.model import CertificatePayment, MemberRef
from loyalty_core.store import outbox
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later
from loyalty_core.store.members import member_key

_COLUMNS = ("c.certificate_id::text, c.member_id::text, c.programme_id::text, c.value_points, c.remaining_points,"
            " c.held_points, coalesce(c.held_order_id, '') AS held_order_id, c.multiple_orders, c.state,"
            " c.expires_at, c.note, c.issued_at, c.ended_at, c.end_reason, c.held_until")
_SELECT = f"SELECT {_COLUMNS} FROM certificate c"


def _row(row: dict[str, Any]) -> Certificate:
    return Certificate(**{**row, "expires_at": to_us(row["expires_at"]), "issued_at": to_us(row["issued_at"]),
                          "ended_at": to_us(row["ended_at"]), "held_until": to_us(row["held_until"])})


async def _rows(cur: Any) -> list[Certificate]:
    return [_row(r) for r in await cur.fetchall()]


@dataclass(frozen=True)
class CertificateMove:
    """One movement to append: ``points`` changes what is left, ``held_delta`` what is held."""

    certificate_id: str
    kind: str
    points: int
    held_delta: int = 0
    forfeited_points: int = 0
    order_id: str | None = None
    comment: str = ""


async def insert(conn: Any, c: Certificate, code_hash: bytes, actor: str) -> None:
    """The certificate and its issued movement."""
    await conn.execute(
        "INSERT INTO certificate (member_id, certificate_id, programme_id, code_hash, value_points,"
        " remaining_points, held_points, multiple_orders, state, expires_at, note, issued_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, 0, %s, 'active', %s, %s, %s)",
        (c.member_id, c.certificate_id, c.programme_id, code_hash, c.value_points, c.value_points,
         c.multiple_orders, to_dt(c.expires_at), c.note, to_dt(c.issued_at)),
    )
    await move(conn, c.member_id, c.issued_at, actor,
               [CertificateMove(c.certificate_id, "issued", c.value_points, comment=c.note)])


async def move(conn: Any, member_id: str, now: int, actor: str, moves: Sequence[CertificateMove]) -> None:
    """Append ``moves`` to the member's certificate ledger, each with its event in the outbox, in one
    statement (the rows' own columns are set by the caller)."""
    await conn.execute(
        f"""WITH moves AS (
                INSERT INTO certificate_movement (member_id, certificate_id, kind, points, held_delta,
                                                  forfeited_points, order_id, created_at, actor, comment)
                SELECT %(outbox_member)s, m.certificate_id, m.kind, m.points, m.held_delta, m.forfeited_points,
                       m.order_id, %(outbox_now)s, %(actor)s, m.comment
                FROM jsonb_to_recordset(%(moves)s) AS m(seq int, certificate_id uuid, kind text, points bigint,
                                                         held_delta bigint, forfeited_points bigint, order_id text,
                                                         comment text)
                ORDER BY m.seq
                RETURNING 1
            ), {outbox.CTE}
            SELECT (SELECT count(*) FROM moves), (SELECT count(*) FROM outbox_rows)""",
        {"moves": Jsonb([{"seq": i, "certificate_id": m.certificate_id, "kind": m.kind, "points": m.points,
                          "held_delta": m.held_delta, "forfeited_points": m.forfeited_points, "order_id": m.order_id,
                          "comment": m.comment} for i, m in enumerate(moves)]),
         "actor": actor,
         **outbox.params(member_id, now, [certificate_event(m.kind, m.certificate_id, m.points, m.held_delta,
                                                            m.forfeited_points, m.order_id, m.comment)
                                          for m in moves])},
    )


async def set_state(conn: Any, c: Certificate, held_until: int | None = None) -> None:
    """Write a certificate's balances, state, hold (until ``held_until`` when held) and end as ``c`` has them."""
    await conn.execute(
        "UPDATE certificate SET remaining_points = %s, held_points = %s, held_order_id = nullif(%s, ''),"
        " held_until = %s, state = %s, ended_at = %s, end_reason = %s"
        " WHERE member_id = %s AND certificate_id = %s",
        (c.remaining_points, c.held_points, c.held_order_id, to_dt(held_until), c.state, to_dt(c.ended_at),
         c.end_reason, c.member_id, c.certificate_id),
    )


async def get(conn: Any, programme_id: str, member_id: str, certificate_id: str) -> Certificate | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE programme_id = %s AND member_id = %s AND certificate_id = %s",
                      (programme_id, member_id, certificate_id))
    row = await cur.fetchone()
    return None if row is None else _row(row)


async def of_pairs(conn: Any, programme_id: str, pairs: Sequence[tuple[str, str]]) -> list[Certificate]:
    """The programme's certificates among (member_id, certificate_id) ``pairs``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _SELECT + " JOIN unnest(%s::uuid[], %s::uuid[]) AS p(mid, cid) ON c.member_id = p.mid AND c.certificate_id = p.cid"
        " WHERE c.programme_id = %s ORDER BY c.member_id, c.certificate_id",
        ([m for m, _ in pairs], [c for _, c in pairs], programme_id),
    )
    return await _rows(cur)


async def send_presented(conn: Any, programme_id: str, ref: MemberRef,
                         hashes: Sequence[bytes]) -> Later[dict[int, Certificate]]:
    """The member's certificates whose codes hash to ``hashes``, by the code's position (sent after
    the member's lock: what it reads is what the lock protects); ``hashes`` empty sends nothing."""
    if not hashes:
        return Later(None, _nothing)
    key, values = await member_key(conn, programme_id, ref)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS}, h.i - 1 AS position FROM certificate c"
        " JOIN unnest(%s::bytea[]) WITH ORDINALITY AS h(code_hash, i) ON c.code_hash = h.code_hash"
        f" WHERE c.member_id = {key}",
        (list(hashes), *values),
    )
    return Later(cur, _by_position)


async def _by_position(cur: Any) -> dict[int, Certificate]:
    rows = await cur.fetchall()
    return {row.pop("position"): _row(row) for row in rows}


async def _nothing(_: Any) -> dict[int, Certificate]:
    return {}


async def hold(conn: Any, member_id: str, order_id: str, payments: Sequence[CertificatePayment], until: int,
               now: int, actor: str) -> None:
    """Hold what each certificate pays for the order's open checkout, until ``until``."""
    paying = [p for p in payments if p.points]
    if not paying:
        return
    await conn.execute(
        "UPDATE certificate c SET remaining_points = c.remaining_points - p.points, held_points = p.points,"
        " state = 'held', held_order_id = %s, held_until = %s"
        " FROM unnest(%s::uuid[], %s::bigint[]) AS p(id, points)"
        " WHERE c.member_id = %s AND c.certificate_id = p.id",
        (order_id, to_dt(until), [p.certificate_id for p in paying], [p.points for p in paying], member_id),
    )
    await move(conn, member_id, now, actor, [CertificateMove(p.certificate_id, "held", -p.points, p.points,
                                                             order_id=order_id) for p in paying])


async def release(conn: Any, member_id: str, order_id: str, now: int, actor: str, comment: str = "") -> int:
    """Give back to its certificates what the order's checkout held of them; the points released."""
    held = await held_by(conn, member_id, order_id)
    if not held:
        return 0
    await conn.execute(
        "UPDATE certificate SET remaining_points = remaining_points + held_points, held_points = 0,"
        " state = 'active', held_order_id = NULL, held_until = NULL WHERE member_id = %s AND held_order_id = %s",
        (member_id, order_id),
    )
    await move(conn, member_id, now, actor, [CertificateMove(c.certificate_id, "released", c.held_points,
                                                             -c.held_points, order_id=order_id, comment=comment)
                                             for c in held])
    return sum(c.held_points for c in held)


async def release_holds(conn: Any, member_id: str, now: int, actor: str, *, lapsed_by: int | None = None,
                        comment: str = "") -> tuple[list[str], int]:
    """Release every certificate an open checkout of the member holds (only those whose hold ran out
    by ``lapsed_by`` when given): the orders they were held for, and how many certificates."""
    cur = await conn.execute(
        "SELECT held_order_id, count(*) FROM certificate WHERE member_id = %s AND state = 'held'"
        " AND (%s::timestamptz IS NULL OR held_until <= %s) GROUP BY 1 ORDER BY 1",
        (member_id, to_dt(lapsed_by), to_dt(lapsed_by)))
    held = await cur.fetchall()
    for order_id, _ in held:
        await release(conn, member_id, order_id, now, actor, comment=comment)
    return [order_id for order_id, _ in held], sum(int(n) for _, n in held)


async def burn_expired(conn: Any, member_id: str, as_of: int, actor: str) -> list[Certificate]:
    """Burn what is left on the member's active certificates past their expiry by ``as_of``; the
    certificates as they were."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE member_id = %s AND state = 'active' AND expires_at <= %s"
                      " ORDER BY certificate_id", (member_id, to_dt(as_of)))
    due = await _rows(cur)
    if not due:
        return []
    await move(conn, member_id, as_of, actor, [CertificateMove(c.certificate_id, "expired", -c.remaining_points)
                                               for c in due])
    await conn.execute(
        "UPDATE certificate SET remaining_points = 0, state = 'expired', ended_at = %s"
        " WHERE member_id = %s AND certificate_id = ANY(%s::uuid[])",
        (to_dt(as_of), member_id, [c.certificate_id for c in due]))
    return due


async def spend(conn: Any, held: Sequence[Certificate], order_id: str, now: int, actor: str) -> None:
    """Spend what the order's checkout held of ``held``: a single-order certificate forfeits what is
    left and is used; a multiple-order one keeps what is left, and is used when nothing is."""
    for c in held:
        forfeited = 0 if c.multiple_orders else c.remaining_points
        left = c.remaining_points - forfeited
        await move(conn, c.member_id, now, actor, [CertificateMove(c.certificate_id, "spent", -forfeited,
                                                                   -c.held_points, forfeited, order_id)])
        await set_state(conn, dataclasses.replace(
            c, remaining_points=left, held_points=0, held_order_id="", state="active" if left else "used",
            ended_at=None if left else now))


async def returned_of(conn: Any, member_id: str, order_id: str) -> dict[str, int]:
    """What refunds of the order gave back to each certificate so far."""
    cur = await conn.execute(
        "SELECT certificate_id::text, sum(points) FROM certificate_movement WHERE member_id = %s AND order_id = %s"
        " AND kind = 'returned' GROUP BY 1", (member_id, order_id))
    return {cid: int(points) for cid, points in await cur.fetchall()}


async def give_back(conn: Any, member_id: str, order_id: str, parts: Sequence[tuple[str, int]], now: int,
                    actor: str) -> None:
    """Return ``parts`` (certificate id, points) to their certificates, which become active again
    with what came back (their expiry unchanged)."""
    if not parts:
        return
    await conn.execute(
        "UPDATE certificate c SET remaining_points = c.remaining_points + p.points, state = 'active',"
        " ended_at = NULL FROM unnest(%s::uuid[], %s::bigint[]) AS p(id, points)"
        " WHERE c.member_id = %s AND c.certificate_id = p.id",
        ([cid for cid, _ in parts], [p for _, p in parts], member_id),
    )
    await move(conn, member_id, now, actor, [CertificateMove(cid, "returned", p, order_id=order_id)
                                             for cid, p in parts])


async def send_held_by_order(conn: Any, member: tuple[str, tuple[str, ...]],
                             order_id: str) -> Later[list[Certificate]]:
    """The certificates the order's open checkout holds (sent after the lock of the order's member,
    ``member`` its ``members.order_member``)."""
    sql, values = member
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + f" WHERE c.member_id = {sql} AND c.held_order_id = %s ORDER BY c.certificate_id",
                      (*values, order_id))
    return Later(cur, _rows)


async def held_by(conn: Any, member_id: str, order_id: str) -> list[Certificate]:
    """The certificates the order holds."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE member_id = %s AND held_order_id = %s ORDER BY certificate_id",
                      (member_id, order_id))
    return await _rows(cur)


async def held_by_any(conn: Any, member_id: str) -> bool:
    """Whether an open checkout holds one of the member's certificates."""
    cur = await conn.execute("SELECT EXISTS (SELECT FROM certificate WHERE member_id = %s AND state = 'held')",
                             (member_id,))
    return bool((await cur.fetchone())[0])


async def of_ids(conn: Any, member_id: str, certificate_ids: Sequence[str]) -> list[Certificate]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE member_id = %s AND certificate_id = ANY(%s::uuid[]) ORDER BY certificate_id",
                      (member_id, list(certificate_ids)))
    return await _rows(cur)


async def page(conn: Any, programme_id: str, member_id: str, states: Sequence[str], expires_from: int | None,
               expires_before: int | None, after: tuple[int, str] | None, limit: int) -> list[Certificate]:
    """One page of the programme's (or one member's) certificates, oldest issued first."""
    where = ["c.programme_id = %(p)s"]
    if member_id:
        where.append("c.member_id = %(m)s")
    if states:
        where.append("c.state = ANY(%(states)s)")
    if expires_from is not None:
        where.append("c.expires_at >= %(from)s")
    if expires_before is not None:
        where.append("c.expires_at < %(before)s")
    if after is not None:
        where.append("(c.issued_at, c.certificate_id) > (%(at)s, %(id)s)")
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _SELECT + " WHERE " + " AND ".join(where) + " ORDER BY c.issued_at, c.certificate_id LIMIT %(limit)s",
        {"p": programme_id, "m": member_id or None, "states": list(states), "from": to_dt(expires_from),
         "before": to_dt(expires_before), "at": to_dt(after[0]) if after else None, "id": after[1] if after else None,
         "limit": limit},
    )
    return await _rows(cur)
