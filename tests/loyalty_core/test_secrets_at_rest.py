"""No stored row confirms a guess of a secret: a 6-digit confirmation code, a 6-digit spend code and
a generated card secret, all sent in requests, are brute-forced against every value of every table
and not found."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from loyalty_core import cards
from loyalty_core.clock import ManualClock
from loyalty_core.model import (
    Accrue, BasketLine, Checkout, CreateProgramme, Enrol, MemberRef, Programme, Quote, to_json,
)
from loyalty_core.service import checkout, members, membership, points, programmes
from loyalty_core.settings import Settings
from loyalty_core.sms import RecordingSender
from loyalty_core.store.db import Database

CODE_SPACE = range(10**6)  # every 6-digit code
CARD_SECRET_WINDOW = 200_000  # card secrets tried, a window around the real one
BUDGET_S = 60.0


def canonical_digests(method: str, request: Any, field: str, candidates: list[str]) -> dict[bytes, str]:
    """sha256 of the request as main fingerprinted it (canonical JSON of method and request, without
    request_id and correlation id), for each candidate in ``field``: the attack on the old fingerprint."""
    placeholder = "guess-placeholder"
    data = to_json(replace(request, **{field: placeholder}))
    data.pop("request_id", None)
    data["context"].pop("correlation_id", None)
    prefix, suffix = json.dumps([method, data], sort_keys=True, separators=(",", ":")).split(placeholder)
    head = hashlib.sha256(prefix.encode())
    suffix_bytes = suffix.encode()
    found = {}
    for guess in candidates:
        h = head.copy()
        h.update(guess.encode() + suffix_bytes)
        found[h.digest()] = guess
    return found


def every_stored_value(conn: psycopg.Connection) -> tuple[set[bytes], list[str]]:
    """Every bytea value (and its hex) and every text-like value (text, jsonb, ...) in the public schema."""
    raw: set[bytes] = set()
    texts: list[str] = []
    columns = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE table_schema = 'public' AND t.table_type = 'BASE TABLE'").fetchall()
    for table, column, data_type in columns:
        query = f'SELECT "{column}"{"" if data_type == "bytea" else "::text"} FROM "{table}" WHERE "{column}" IS NOT NULL'
        for (value,) in conn.execute(query):
            if data_type == "bytea":
                raw.add(bytes(value))
                texts.append(bytes(value).hex())
            else:
                texts.append(value)
    return raw, texts


def guesses_confirmed(stored: set[bytes], texts: list[str], digests: dict[bytes, str]) -> set[str]:
    """The guesses whose digest is stored, as bytes or as hex anywhere in a text."""
    hex_runs = {bytes.fromhex(run) for text in texts for run in re.findall(r"[0-9a-fA-F]{64}", text)}
    return {guess for digest, guess in digests.items() if digest in stored or digest in hex_runs}


@pytest.fixture
def own_database_url(create_database) -> str:
    """A database of its own: everything in it is this test's."""
    return create_database(migrated=True)


async def test_a_code_and_a_card_secret_cannot_be_recovered_from_any_stored_row(own_database_url, clock) -> None:
    async with Database(own_database_url, pool_min_size=1, pool_max_size=2) as db:
        await attack(db, clock, own_database_url)


async def attack(db: Database, clock: ManualClock, database_url: str) -> None:
    programme = await programmes.create(db, clock, CreateProgramme(str(uuid.uuid4()), Programme(
        name=f"p-{uuid.uuid4()}", currency_code="EUR", point_value_minor=1, require_confirmation=True)))
    card_secret = cards.generate_card_secret()
    enrol = Enrol(str(uuid.uuid4()), programme.programme_id, phone="+447700900777",
                  card_number=cards.generate_card_number(), card_secret=card_secret)
    member = (await members.enrol(db, clock, enrol)).member.member
    sender = RecordingSender()
    policy = membership.ConfirmationPolicy.from_settings(Settings())
    await membership.start_confirmation(db, clock, sender, policy, membership.StartConfirmation(
        str(uuid.uuid4()), programme.programme_id, member.member_id))
    code = sender.last_to("+447700900777").text.split(": ")[1][:6]
    confirm = membership.ConfirmPhone(str(uuid.uuid4()), programme.programme_id, member.member_id, code)
    await membership.confirm_phone(db, clock, confirm)
    await points.accrue(db, clock, Accrue(str(uuid.uuid4()), programme.programme_id, member.member_id, 50))
    await membership.send_spend_code(db, clock, sender, policy, membership.StartConfirmation(
        str(uuid.uuid4()), programme.programme_id, member.member_id))
    spend_code = sender.last_to("+447700900777").text.split(": ")[1][:6]
    spend = Checkout(str(uuid.uuid4()), "order-1", Quote(
        programme.programme_id, MemberRef(phone="+447700900777"), (BasketLine("1", "sku", "bar", 1, 1000),),
        requested_points=10), spend_code=spend_code)
    assert (await checkout.checkout(db, clock, spend)).hold.points == 10

    started = time.monotonic()
    code_digests = canonical_digests("ConfirmPhone", confirm, "code", [f"{n:06d}" for n in CODE_SPACE])
    spend_code_digests = canonical_digests("Checkout", spend, "spend_code", [f"{n:06d}" for n in CODE_SPACE])
    low = max(0, int(card_secret) - CARD_SECRET_WINDOW // 2)
    secret_digests = canonical_digests("EnrolMember", enrol, "card_secret",
                                       [f"{n:08d}" for n in range(low, low + CARD_SECRET_WINDOW)])
    # By construction the attack works: on the fingerprint main stored, each secret is found.
    for digests, secret, (method, request, field) in (
            (code_digests, code, ("ConfirmPhone", confirm, "code")),
            (spend_code_digests, spend_code, ("Checkout", spend, "spend_code")),
            (secret_digests, card_secret, ("EnrolMember", enrol, "card_secret"))):
        old = next(iter(canonical_digests(method, request, field, [secret])))
        assert guesses_confirmed({old}, [], digests) == {secret}
        # A bare sha256 of the secret is tried too.
        digests[hashlib.sha256(secret.encode()).digest()] = secret

    with psycopg.connect(database_url) as conn:
        stored, texts = every_stored_value(conn)
    assert guesses_confirmed(stored, texts, code_digests) == set()
    assert guesses_confirmed(stored, texts, spend_code_digests) == set()
    assert guesses_confirmed(stored, texts, secret_digests) == set()
    assert not [t for t in texts if card_secret in t], "the card secret is stored in clear"
    assert time.monotonic() - started < BUDGET_S
