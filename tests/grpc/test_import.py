"""Importing members (issue 17): ImportMembers over gRPC and `loyalty-core import`, idempotent per
row by its external id, each bad row refused in its place, the ledger verifying clean after."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import member_import_pb2, member_import_pb2_grpc, member_pb2
from tests.grpc.conftest import Rows, new_id
from tests.membership.conftest import Members

DAY_US = 86_400 * 10**6
# Times valid for the server's test clock and for the command line's real clock alike.
LONG_AGO, FAR_AHEAD = "2025-01-01T00:00:00Z", "2040-01-01T00:00:00Z"


def ts(us: int) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


def phone() -> str:
    return "+1555" + str(int(new_id().replace("-", "")[:12], 16) % 10**7).zfill(7)


def row(programme_id: str, line: int, external_id: str, **member: Any) -> member_import_pb2.ImportMembersRequest:
    member.setdefault("phone", phone())
    return member_import_pb2.ImportMembersRequest(programme_id=programme_id, line=line, member=member_import_pb2.ImportedMember(
        external_id=external_id, **member))


class Importer:
    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = member_import_pb2_grpc.MemberImportServiceStub(channel)

    def run(self, rows: list[member_import_pb2.ImportMembersRequest]) -> list[member_import_pb2.ImportMembersResponse]:
        return list(self.stub.ImportMembers(iter(rows), timeout=30))


def outcome(answer: member_import_pb2.ImportMembersResponse) -> tuple[int, str, str]:
    if answer.WhichOneof("outcome") == "imported":
        return answer.line, "replayed" if answer.imported.replayed else "imported", ""
    return answer.line, answer.refusal.reason, answer.refusal.field


@pytest.fixture
def api(channel_with: Callable[..., grpc.Channel]) -> Members:
    return Members(channel_with())


@pytest.fixture
def importer(channel_with: Callable[..., grpc.Channel]) -> Importer:
    return Importer(channel_with("member_import"))


def test_rows_become_members_with_their_lots_purchases_and_level_and_a_bad_row_is_refused_alone(
        api: Members, importer: Importer, clock: Any, database_url: str) -> None:
    p = api.programme()
    api.level(p.programme_id, "Bronze", 1)
    api.level(p.programme_id, "Silver", 2, spend_needed_minor=50_000, spend_period_days=365)
    api.level(p.programme_id, "Gold", 3, spend_needed_minor=10**9, spend_period_days=365)
    now = clock.now_us()
    lots = [member_import_pb2.ImportedLot(points=100, expire_time=ts(now + 10 * DAY_US)),
            member_import_pb2.ImportedLot(points=50),
            member_import_pb2.ImportedLot(points=30, activate_time=ts(now + 2 * DAY_US))]
    purchases = [member_import_pb2.ImportedPurchase(order_id="old-1", purchase_time=ts(now - 20 * DAY_US),
                                                    amount_minor=60_000)]
    answers = importer.run([
        row(p.programme_id, 1, "a-1", lots=lots, purchases=purchases, purchases_total_minor=250_000),
        row(p.programme_id, 2, "a-2", phone="12345"),
        row(p.programme_id, 3, "a-3", card_number="CARD0003", phone="", level_name="Gold",
            status=member_pb2.MEMBER_STATUS_DEACTIVATED),
        row(p.programme_id, 4, "a-4", lots=[member_import_pb2.ImportedLot(points=5, expire_time=ts(now - 1))]),
    ])

    assert [outcome(a) for a in answers] == [(1, "imported", ""), (2, "value_out_of_range", "member.phone"),
                                             (3, "imported", ""), (4, "value_out_of_range",
                                                                   "member.lots[0].expire_time")]
    first = answers[0].imported.member_id
    b = api.balance(p.programme_id, first)
    assert (b.active_points, b.pending_points, b.earned_total_points) == (150, 30, 180)
    assert [(x.expire_time.ToMicroseconds(), x.points) for x in b.burn_outs] == [(now + 10 * DAY_US, 100)]
    card = api.member(p.programme_id, first)
    assert card.purchases_total_minor == 250_000
    assert card.level_name == "Silver"  # the imported purchase reaches Silver's spend within its period
    # What the member publishes: its enrolment, then its opening balance in one movement.
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT seq, type, payload->>'points' FROM outbox_event WHERE member_id = %s ORDER BY seq",
                            (first,)).fetchall() == [(1, "member.enrolled", None), (2, "points.earned", "180")]
    third = api.member(p.programme_id, answers[2].imported.member_id)
    assert (third.level_name, third.status) == ("Gold", member_pb2.MEMBER_STATUS_DEACTIVATED)


def test_an_import_sent_again_replays_each_row_and_writes_nothing(api: Members, importer: Importer,
                                                                  rows: Rows) -> None:
    p = api.programme()
    sent = [row(p.programme_id, i, f"r-{i}", lots=[member_import_pb2.ImportedLot(points=10 * i)]) for i in range(1, 4)]
    first = importer.run(sent[:2])  # the import stopped after two rows
    written = rows.count()

    again = importer.run(sent)

    assert [outcome(a) for a in again] == [(1, "replayed", ""), (2, "replayed", ""), (3, "imported", "")]
    assert [a.imported.member_id for a in again[:2]] == [a.imported.member_id for a in first]
    assert rows.count()["lot"] == written["lot"] + 1
    changed = row(p.programme_id, 9, "r-1", phone=sent[0].member.phone, lots=[member_import_pb2.ImportedLot(points=99)])
    (refused,) = importer.run([changed])
    assert outcome(refused) == (9, "external_id_reused_with_different_row", "member.external_id")
    assert refused.refusal.metadata["member_id"] == first[0].imported.member_id


def test_a_phone_a_member_holds_is_refused_and_nothing_of_the_row_is_written(api: Members, importer: Importer,
                                                                              database_url: str) -> None:
    p = api.programme()
    holder = api.enrol(p.programme_id)
    taken = api.member(p.programme_id, holder.member_id).phone
    (answer,) = importer.run([row(p.programme_id, 1, "t-1", phone=taken,
                                  lots=[member_import_pb2.ImportedLot(points=10)])])
    assert outcome(answer) == (1, "phone_taken", "member.phone")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM member WHERE programme_id = %s", (p.programme_id,)).fetchone() == (1,)


def test_only_the_member_import_right_may_import(api: Members, channel_with: Callable[..., grpc.Channel]) -> None:
    p = api.programme()
    with pytest.raises(grpc.RpcError) as err:
        Importer(channel_with("programme_admin")).run([row(p.programme_id, 1, "x-1")])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", "import", *args], capture_output=True, text=True,
                          env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=120)


def test_the_import_command_reads_json_lines_reports_bad_lines_and_resumes_without_duplicates(
        api: Members, database_url: str, tmp_path: Path) -> None:
    p = api.programme()
    lines = [json.dumps({"external_id": f"c-{i}", "phone": phone(), "status": "active",
                         "lots": [{"points": 10, "activate_time": LONG_AGO, "expire_time": FAR_AHEAD},
                                  {"points": 5, "activate_time": LONG_AGO}],
                         "purchases": [{"order_id": f"o-{i}", "purchase_time": LONG_AGO, "amount_minor": 1_000}]})
             for i in range(5)]
    lines.insert(2, "{not json")
    source = tmp_path / "members.jsonl"
    source.write_text("\n".join(lines[:3]) + "\n")  # a first run that stopped early

    _cli(database_url, str(source), "--programme-id", p.programme_id)
    source.write_text("\n".join(lines) + "\n")
    done = _cli(database_url, str(source), "--programme-id", p.programme_id)

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == ["line 3: -: request_not_decodable: not JSON: Expecting property name "
                                        "enclosed in double quotes"]
    assert "5 of 6 rows" not in done.stderr and "6 of 6 rows (100.0%)" in done.stderr and "rows/s" in done.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT member_id) FROM member_import WHERE programme_id = %s",
                            (p.programme_id,)).fetchone() == (5, 5)
        assert conn.execute("SELECT count(*) FROM lot JOIN member USING (member_id) WHERE programme_id = %s",
                            (p.programme_id,)).fetchone() == (10,)
    verified = subprocess.run([sys.executable, "-m", "server", "verify", "--programme-id", p.programme_id],
                              capture_output=True, text=True, env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""},
                              timeout=60)
    assert verified.returncode == 0 and "no disagreements" in verified.stdout


def test_the_import_command_reads_csv_with_json_columns_and_custom_field_columns(
        api: Members, database_url: str, tmp_path: Path) -> None:
    p = api.programme()
    source = tmp_path / "members.csv"
    lots = json.dumps([{"points": 7, "activate_time": LONG_AGO}]).replace('"', '""')
    source.write_text("external_id,phone,card_number,status,lots\n"
                      f'v-1,{phone()},,active,"{lots}"\n'
                      "v-2,,CARD7777,not_confirmed,\n"
                      "v-3,,,active,\n")
    done = _cli(database_url, str(source), "--programme-id", p.programme_id, "--format", "csv")

    assert done.returncode == 1
    assert done.stdout.splitlines() == ["line 4: v-3: field_required (phone): a member needs a phone or a card number"]
    with psycopg.connect(database_url) as conn:
        # Not a join: on Citus member_import lives on other shards (by external id) than member.
        assert conn.execute("SELECT status, earned_total_points FROM member WHERE member_id IN"
                            " (SELECT member_id FROM member_import WHERE programme_id = %s) ORDER BY status",
                            (p.programme_id,)).fetchall() == [("active", 7), ("not_confirmed", 0)]
