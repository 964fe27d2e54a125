"""API keys: create, list, revoke and look up callers' keys, storing only each key's sha256."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors

from loyalty_core import errors

# The rights a key may carry (docs/spec.md "Rights"); the migration's CHECK lists the same names.
RIGHTS: tuple[str, ...] = (
    "pos",
    "ecommerce",
    "programme_admin",
    "personal_discount",
    "manual_points",
    "level_status",
    "read_only",
    # Unlocking a card locked after wrong secrets (the service desk, once it has checked the caller).
    "card_unlock",
    # Erasing and exporting a member's personal data (docs/trust.md "Members' data"): the data protection desk's.
    "privacy",
    # Managing webhook subscriptions and reading the event stream (WatchEvents): every member's
    # changes of a programme, so neither the till's nor the SREs' read-only right.
    "webhook_admin",
    # Recording events that grant event bonuses (RecordEvent): the internal services that see them
    # happen (a birthday job, the app, reviews), not a till.
    "event_bonus",
    # Voiding a paid order (it stops counting; points stay): the back office's, not the till's.
    "order_void",
    # Changing a member's phone, card or customer group (docs/membership.md "Editing a member").
    "member_edit",
    # Importing members with their balances and past purchases from a previous system
    # (ImportMembers, `loyalty-core import`): a migration's right, in no everyday key.
    "member_import",
    # Issuing and cancelling bonus certificates (docs/certificates.md): the back office's, not the till's.
    "certificate_issue",
)
KEY_PREFIX = "lck_"
# 32 random bytes, base64url: 43 characters after the prefix.
KEY_LENGTH = len(KEY_PREFIX) + 43
# Shown by `keys list` so an operator can tell which key a client holds, without revealing it.
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 6
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A caller: its name (recorded as the actor of its writes), rights and programmes.

    ``programme_ids`` is None for a key valid on every programme, present and future.
    """

    name: str
    rights: frozenset[str]
    programme_ids: frozenset[str] | None
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def all_programmes(self) -> bool:
        return self.programme_ids is None

    def may_act_on(self, programme_id: str) -> bool:
        if self.programme_ids is None:
            return True
        try:
            # The canonical form, so an id written in capitals is the same programme.
            return str(uuid.UUID(programme_id)) in self.programme_ids
        except ValueError:
            return False


def generate_key() -> str:
    """A new key: high entropy, so its plain sha256 is a safe thing to store."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def validate(name: str, rights: Iterable[str], programme_ids: Iterable[str] | None) -> tuple[
    list[str], list[uuid.UUID] | None
]:
    """Check a new key's name, rights and programmes; return them in stored form."""
    if not NAME.match(name):
        raise errors.InvalidArgument(
            "value_out_of_range",
            "a key name is 1..64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
            field="name",
        )
    rights = sorted(set(rights))
    if not rights:
        raise errors.InvalidArgument("field_required", "a key needs at least one right", field="rights")
    unknown = [r for r in rights if r not in RIGHTS]
    if unknown:
        raise errors.InvalidArgument(
            "value_out_of_range", f"unknown rights {unknown}; known: {', '.join(RIGHTS)}", field="rights"
        )
    if programme_ids is None:
        return rights, None
    try:
        ids = sorted({uuid.UUID(p) for p in programme_ids})
    except ValueError:
        raise errors.InvalidArgument("malformed_id", "programme ids must be UUIDs", field="programmes") from None
    if not ids:
        raise errors.InvalidArgument(
            "field_required", "name at least one programme, or give every programme", field="programmes"
        )
    return rights, ids


async def create(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    rights: Iterable[str],
    programme_ids: Iterable[str] | None,
    now_us: int,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with the key itself, which exists nowhere else afterwards."""
    stored_rights, ids = validate(name, rights, programme_ids)
    key = generate_key()
    try:
        cur = await conn.execute(
            """INSERT INTO api_key (name, key_hash, key_prefix, rights, all_programmes, programme_ids, created_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s)
               RETURNING name, rights, all_programmes, programme_ids, key_prefix, created_at, revoked_at""",
            (name, hash_key(key), key[:SHOWN_PREFIX_LENGTH], stored_rights, ids is None, ids or [], _ts(now_us)),
        )
    except psycopg.errors.UniqueViolation:
        # Names are never reused, even after revocation: a movement's actor must name one key.
        raise errors.AlreadyExists("api_key_name_taken", f"a key named {name!r} exists or existed") from None
    row = await cur.fetchone()
    assert row is not None
    return _key(row), key


async def list_all(conn: psycopg.AsyncConnection[Any]) -> list[ApiKey]:
    """Every key, revoked ones included, by name."""
    cur = await conn.execute(
        """SELECT name, rights, all_programmes, programme_ids, key_prefix, created_at, revoked_at
           FROM api_key ORDER BY name"""
    )
    return [_key(row) for row in await cur.fetchall()]


async def revoke(conn: psycopg.AsyncConnection[Any], name: str, now_us: int) -> ApiKey:
    """Mark a key revoked (the first revocation time is kept); servers stop honouring it within
    their key cache's TTL."""
    cur = await conn.execute(
        """UPDATE api_key SET revoked_at = coalesce(revoked_at, %s) WHERE name = %s
           RETURNING name, rights, all_programmes, programme_ids, key_prefix, created_at, revoked_at""",
        (_ts(now_us), name),
    )
    row = await cur.fetchone()
    if row is None:
        raise errors.NotFound("api_key_not_found", f"no key named {name!r}")
    return _key(row)


async def find_by_hash(conn: psycopg.AsyncConnection[Any], key_hash: bytes) -> ApiKey | None:
    """The unrevoked key with this ``hash_key``, or None: one index probe."""
    cur = await conn.execute(
        """SELECT name, rights, all_programmes, programme_ids, key_prefix, created_at, revoked_at
           FROM api_key WHERE key_hash = %s AND revoked_at IS NULL""",
        (key_hash,),
    )
    row = await cur.fetchone()
    return _key(row) if row else None


def _key(row: tuple[Any, ...]) -> ApiKey:
    name, rights, all_programmes, programme_ids, key_prefix, created_at, revoked_at = row
    return ApiKey(
        name=name,
        rights=frozenset(rights),
        programme_ids=None if all_programmes else frozenset(str(p) for p in programme_ids),
        key_prefix=key_prefix,
        created_at=created_at,
        revoked_at=revoked_at,
    )


def _ts(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
