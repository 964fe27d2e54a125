"""Members' personal data over gRPC: erased (phone and card free again, amounts and verify kept, nothing
personal left in any table) and exported as one JSON document; both need the privacy right, both are
idempotent and in history."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import grpc
import psycopg

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2
from loyalty_core.sms import RecordingSender
from loyalty_core.store import keys
from loyalty_core.store.idempotency import ERASED_FINGERPRINT
from tests.grpc.conftest import Api, Rows, basket, new_id
from tests.loyalty_core.test_secrets_at_rest import every_stored_value
from tests.membership.conftest import Members, refused
from tests.membership.test_cards_api import lookup, other_than
from tests.membership.test_confirmation import code_sent, confirm, start


def erase_request(programme_id: str, member_id: str, request_id: str | None = None) -> member_pb2.EraseMemberRequest:
    return member_pb2.EraseMemberRequest(request_id=request_id or new_id(), programme_id=programme_id,
                                         member_id=member_id)


def export_request(programme_id: str, member_id: str, request_id: str | None = None) -> member_pb2.ExportMemberDataRequest:
    return member_pb2.ExportMemberDataRequest(request_id=request_id or new_id(), programme_id=programme_id,
                                              member_id=member_id)


def new_phone() -> str:
    return f"+4477009{uuid.uuid4().int % 10**5:05d}"


def new_card() -> str:
    return f"{uuid.uuid4().int % 10**16:016d}"


def texts_holding(database_url: str, *needles: str) -> list[str]:
    """Every stored value (any column of any table, bytea as hex) that contains one of ``needles``."""
    with psycopg.connect(database_url) as conn:
        _raw, texts = every_stored_value(conn)
    return [t for t in texts if any(n in t for n in needles)]


def enrol_by_phone_and_card(api: Members, programme_id: str, phone: str, card: str,
                            request_id: str | None = None) -> member_pb2.EnrolMemberResponse:
    return api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=request_id or new_id(), programme_id=programme_id, phone=phone, card_number=card))


def checkout_by(ref: common_pb2.MemberRef, programme_id: str, points: int = 0) -> checkout_pb2.CheckoutRequest:
    return checkout_pb2.CheckoutRequest(request_id=new_id(), programme_id=programme_id, order_id=new_id(),
                                        member=ref, lines=basket([("bar", 2, 1_500)]), requested_points=points)


def a_member_with_a_life(api: Members, sms: RecordingSender, programme_id: str, phone: str, card: str,
                         enrol_id: str) -> dict[str, Any]:
    """A member who did what members do, leaving their phone and cards in every place they go: an
    enrolment, a confirmation SMS, comments, a purchase by phone, a refused checkout by card, wrong
    secrets, a new virtual card, a spend code. Returns the member, the cards and the refused checkout's request id."""
    enrolled = enrol_by_phone_and_card(api, programme_id, phone, card, enrol_id)
    member_id, secret = enrolled.member.member_id, enrolled.generated_card_secret
    start(api, programme_id, member_id)
    confirm(api, programme_id, member_id, code_sent(sms, phone))
    api.accrue(programme_id, member_id, 40, comment=f"goodwill for {phone}")
    api.set_status(programme_id, member_id, member_pb2.MEMBER_STATUS_DEACTIVATED, comment=f"called from {phone}")
    api.set_status(programme_id, member_id, member_pb2.MEMBER_STATUS_ACTIVE, comment=f"called back on {phone}")
    order = api.checkout.Checkout(checkout_by(common_pb2.MemberRef(phone=phone), programme_id, points=10)).order
    api.capture(programme_id, order.order_id)
    too_many = checkout_by(common_pb2.MemberRef(card_number=card, card_secret=secret), programme_id, points=10_000)
    assert refused(lambda: api.checkout.Checkout(too_many)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")
    refused(lambda: lookup(api, programme_id, card, other_than(secret)))
    virtual = api.membership.GenerateVirtualCard(membership_pb2.GenerateVirtualCardRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id)).member.card_number
    api.membership.SendSpendCode(membership_pb2.SendSpendCodeRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id))
    return {"member_id": member_id, "cards": (card, virtual), "refused_request_id": too_many.request_id}


def test_an_erased_member_leaves_no_personal_data_and_the_amounts_and_verify_stay(
        api: Members, channel_with: Any, sms: RecordingSender, database_url: str) -> None:
    p = api.programme(welcome_bonus_points=25)
    phone, card = new_phone(), new_card()
    enrol_id = new_id()
    enrol_by_phone_and_card(api, p.programme_id, new_phone(), new_card())  # a neighbour, left alone
    life = a_member_with_a_life(api, sms, p.programme_id, phone, card, enrol_id)
    member_id, cards = life["member_id"], life["cards"]
    before = api.balance(p.programme_id, member_id)
    assert texts_holding(database_url, phone, *cards)  # the scan does see them while they are held

    desk = Members(channel_with("privacy"))
    request = erase_request(p.programme_id, member_id)
    erased = desk.members.EraseMember(request)
    assert erased.member.HasField("erase_time") and erased.member.HasField("offboard_time")
    assert (erased.member.phone, erased.member.card_number, erased.member.has_card_secret) == ("", "", False)
    # two sms_sent, phone_confirmed, two commented status changes, the virtual card; the commented
    # accrual; every write's key but the lookups' (reads): enrol, SMS, confirm, accrue, 2 statuses,
    # checkout, capture, the refused checkout, the virtual card, the spend code.
    assert (erased.history_events_erased, erased.movements_erased, erased.idempotency_keys_erased) == (6, 1, 11)
    assert desk.members.EraseMember(request) == erased  # a replay answers the same, and erases nothing more

    assert texts_holding(database_url, phone, *cards) == []
    with psycopg.connect(database_url) as conn:
        fingerprints = conn.execute("SELECT method, fingerprint FROM idempotency_key WHERE member_id = %s"
                                    " AND method <> 'EraseMember'", (member_id,)).fetchall()
        refused_key = conn.execute("SELECT member_id::text, fingerprint FROM idempotency_key WHERE request_id = %s",
                                   (life["refused_request_id"],)).fetchone()
    assert {"EnrolMember", "Checkout", "AccruePoints", "ConfirmPhone"} <= {m for m, _ in fingerprints}
    assert {bytes(f) for _, f in fingerprints} == {ERASED_FINGERPRINT}
    assert (refused_key[0], bytes(refused_key[1])) == (member_id, ERASED_FINGERPRINT)

    after = api.balance(p.programme_id, member_id)
    assert (after.active_points, after.earned_total_points, after.spent_total_points) == (
        before.active_points, before.earned_total_points, before.spent_total_points)
    assert api.member(p.programme_id, member_id).purchases_total_minor == 3_000
    assert len(api.history(p.programme_id, member_id).events) >= 8  # history keeps every event ...
    events = api.history(p.programme_id, member_id).events
    assert [e.kind for e in events].count("erased") == 1
    erasure = next(e for e in events if e.kind == "erased")
    assert erasure.actor and not erasure.comment and set(erasure.details) == {
        "history_events", "movements", "idempotency_keys"}
    assert api.verify().disagreements == []

    # Phone and both cards are free: a new member takes them; the old member is not found by them.
    newcomer = enrol_by_phone_and_card(api, p.programme_id, phone, cards[0]).member
    assert newcomer.member_id != member_id
    assert api.enrol(p.programme_id, phone="", card_number=cards[1]).member_id not in (member_id, newcomer.member_id)
    assert lookup(api, p.programme_id, cards[0]).member_id == newcomer.member_id
    # A late retry of a request made before the erasure is refused, never run again.
    assert refused(lambda: enrol_by_phone_and_card(api, p.programme_id, phone, cards[0], enrol_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused_with_different_request")
    assert api.verify().disagreements == []


def test_an_erased_member_takes_no_more_writes(api: Members, channel_with: Any) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.capture(p.programme_id, order.order_id)
    desk = Members(channel_with("privacy"))
    desk.members.EraseMember(erase_request(p.programme_id, m.member_id))
    erased = (grpc.StatusCode.FAILED_PRECONDITION, "member_erased")
    assert refused(lambda: api.accrue(p.programme_id, m.member_id, 5)) == erased
    assert refused(lambda: api.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)) == erased
    assert refused(lambda: api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])) == erased
    assert refused(lambda: api.checkout.Refund(checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=p.programme_id, order_id=order.order_id))) == erased
    assert refused(lambda: api.members.OffboardMember(member_pb2.OffboardMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, comment="gone"))) == erased
    assert refused(lambda: desk.members.EraseMember(erase_request(p.programme_id, m.member_id))) == erased


def test_a_member_whose_points_are_held_is_erased_only_once_the_hold_is_closed(api: Members, channel_with: Any) -> None:
    p = api.programme(welcome_bonus_points=50)
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=5)
    desk = Members(channel_with("privacy"))
    assert refused(lambda: desk.members.EraseMember(erase_request(p.programme_id, m.member_id))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_has_open_holds")
    assert api.member(p.programme_id, m.member_id).phone == m.phone  # nothing erased
    api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=order.order_id))
    assert desk.members.EraseMember(erase_request(p.programme_id, m.member_id)).member.phone == ""


def test_erase_and_export_need_the_privacy_right(api: Members, channel_with: Any, database_url: str) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    everything_else = Members(channel_with(*(r for r in keys.RIGHTS if r != "privacy")))
    rows = Rows(database_url)
    counts = rows.count()
    for call in (lambda: everything_else.members.EraseMember(erase_request(p.programme_id, m.member_id)),
                 lambda: everything_else.members.ExportMemberData(export_request(p.programme_id, m.member_id))):
        assert refused(call) == (grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    assert rows.count() == counts
    assert api.member(p.programme_id, m.member_id).phone == m.phone


def test_the_export_holds_everything_about_the_member_and_no_secret(api: Members, channel_with: Any) -> None:
    p = api.programme(welcome_bonus_points=25)
    phone, card = new_phone(), new_card()
    enrolled = enrol_by_phone_and_card(api, p.programme_id, phone, card)
    member_id = enrolled.member.member_id
    api.accrue(p.programme_id, member_id, 40, comment="a goodwill gesture")
    api.buy(p.programme_id, member_id, [("bar", 2, 1_500)], points=10)
    refused(lambda: lookup(api, p.programme_id, card, other_than(enrolled.generated_card_secret)))
    desk = Members(channel_with("privacy"))
    request = export_request(p.programme_id, member_id)
    exported = desk.members.ExportMemberData(request)
    document = json.loads(exported.document_json)

    assert {section.split("[")[0] for section in EXPORT_SECTION_OF.values()} <= set(document)
    assert (document["member"]["phone"], document["member"]["card_number"]) == (phone, card)
    assert document["card"] == {"card_number": card, "has_secret": True, "wrong_secrets": 1,
                                "locked_until": None}
    assert document["discounts"]["purchases_total_minor"] == 3_000
    assert sorted(lot["source"] for lot in document["lots"]) == ["earned", "manual_accrual", "welcome"]
    assert {mv["kind"] for mv in document["movements"]} >= {"welcome", "manual_accrual", "held", "spent", "earned"}
    assert "a goodwill gesture" in [mv["comment"] for mv in document["movements"]]
    (order,) = document["orders"]
    assert (order["state"], len(order["lines"]), order["refunds"]) == ("captured", 1, [])
    assert len(document["purchases"]) == 1
    assert {"enrolled", "data_exported"} <= {e["kind"] for e in document["history"]}
    assert {"member.enrolled", "points.earned", "order.captured"} <= {e["type"] for e in document["events"]}
    assert "card_secret_hash" not in exported.document_json and "scrypt$" not in exported.document_json
    assert enrolled.generated_card_secret not in exported.document_json

    replayed = desk.members.ExportMemberData(request)
    assert replayed.export_time == exported.export_time
    assert json.loads(replayed.document_json)["member"] == document["member"]
    kinds = [e.kind for e in api.history(p.programme_id, member_id).events]
    assert kinds.count("data_exported") == 1


# Where the export puts each table that holds a member's rows. The idempotency keys are the API's
# technical record, not the member's data (erasure wipes them).
EXPORT_SECTION_OF = {"member": "member", "card_lock": "card", "phone_confirmation": "phone_confirmation",
                     "spend_code": "spend_code",
                     "lot": "lots", "hold": "holds", "movement": "movements", "orders": "orders",
                     "order_line": "orders[].lines", "refund": "orders[].refunds", "purchase": "purchases",
                     "member_event": "history", "outbox_event": "events", "expiry_notice": "expiry_notices",
                     "event_grant": "event_grants", "member_custom_value": "custom_fields",
                     "member_import": "imported_as",
                     "certificate": "certificates", "certificate_movement": "certificate_movements"}
# Tables with a member's rows that are the API's technical record, not the member's data: the
# idempotency keys (erasure wipes them), the outbox's per-member counter and webhooks' dead letters
# (which name an event, kept in "events").
# The look-ups of migration 0023 repeat what the export shows in the member row and its orders; an
# erasure deletes the phone's and the card's (store/privacy.py), the order ids stay with the orders.
TECHNICAL = {"idempotency_key", "outbox_member", "webhook_dead_letter", "member_phone", "member_card", "order_key"}


def test_every_table_that_holds_members_rows_is_in_the_export(database_url: str) -> None:
    """A new member-owned table fails here until the export (and the erasure) know it."""
    with psycopg.connect(database_url) as conn:
        tables = {t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'member_id'")}
    assert tables == set(EXPORT_SECTION_OF) | TECHNICAL


def test_an_erased_members_export_holds_the_amounts_and_nothing_personal(api: Members, channel_with: Any) -> None:
    p = api.programme(welcome_bonus_points=25)
    phone, card = new_phone(), new_card()
    member_id = enrol_by_phone_and_card(api, p.programme_id, phone, card).member.member_id
    desk = Members(channel_with("privacy"))
    desk.members.EraseMember(erase_request(p.programme_id, member_id))
    text = desk.members.ExportMemberData(export_request(p.programme_id, member_id)).document_json
    document = json.loads(text)
    assert phone not in text and card not in text and document["card"] is None
    assert [lot["amount"] for lot in document["lots"]] == [25]
    assert document["member"]["erased_at"]


def test_the_ledger_and_history_stay_append_only_but_for_an_erased_members_comments_and_details(
        api: Members, channel_with: Any, database_url: str) -> None:
    p = api.programme()
    kept, erased = api.enrol(p.programme_id), api.enrol(p.programme_id)
    for m in (kept, erased):
        api.accrue(p.programme_id, m.member_id, 5, comment="a comment")
    Members(channel_with("privacy")).members.EraseMember(erase_request(p.programme_id, erased.member_id))
    refusals = {
        # Nobody's rows change while their member is not erased ...
        (kept.member_id, "UPDATE movement SET comment = '' WHERE member_id = %s"),
        (kept.member_id, "UPDATE member_event SET comment = '', details = '{}' WHERE member_id = %s"),
        # ... and an erased member's amounts, kinds and times never do, nor are rows deleted.
        (erased.member_id, "UPDATE movement SET points = points + 1 WHERE member_id = %s"),
        (erased.member_id, "UPDATE movement SET comment = 'new text' WHERE member_id = %s"),
        (erased.member_id, "UPDATE member_event SET kind = 'other' WHERE member_id = %s"),
        (erased.member_id, "DELETE FROM movement WHERE member_id = %s"),
        (erased.member_id, "DELETE FROM member_event WHERE member_id = %s"),
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for member_id, statement in refusals:
            try:
                conn.execute(statement, (member_id,))
            except psycopg.errors.RestrictViolation:
                continue
            raise AssertionError(f"{statement} was allowed")
        # What erasure itself does is allowed (and here changes nothing more).
        conn.execute("UPDATE movement SET comment = '' WHERE member_id = %s", (erased.member_id,))
    points_history = Api.history  # Members.history is the member's (membership) history
    assert [mv.comment for mv in points_history(api, p.programme_id, kept.member_id, "MANUAL_ACCRUAL")] == ["a comment"]
    assert [mv.comment for mv in points_history(api, p.programme_id, erased.member_id, "MANUAL_ACCRUAL")] == [""]


def test_loyalty_core_export_member_prints_the_document_and_records_it(api: Members, database_url: str) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    command = [sys.executable, "-m", "server", "export-member", "--programme-id", p.programme_id,
               "--member-id", m.member_id, "--request-id", new_id()]
    env = {"LOYALTY_DATABASE_URL": database_url, "PATH": ""}
    for _ in range(2):  # the same request id twice: one record in history
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["member"]["phone"] == m.phone
    exports = [e for e in api.history(p.programme_id, m.member_id).events if e.kind == "data_exported"]
    assert [e.actor for e in exports] == ["loyalty-core-cli"]
    unknown = subprocess.run(command[:-3] + [new_id()], capture_output=True, text=True, env=env, timeout=60)
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert "member_not_found" in unknown.stderr
