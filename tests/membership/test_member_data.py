"""The participation card over gRPC: GetMember's whole card, edits of phone, card and customer group
(comment, the member_edit right, history, idempotency, refusals that write nothing), and ListMembers."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg

from loyalty.v1 import member_pb2, membership_pb2, programme_pb2
from loyalty_core.sms import RecordingSender
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused
from tests.membership.test_cards_api import lookup
from tests.membership.test_confirmation import code_sent, confirm, start
from tests.membership.test_privacy import erase_request, new_card, new_phone, texts_holding

PARTICIPATION = membership_pb2.HISTORY_TAB_PARTICIPATION


def change_phone(api: Members, programme_id: str, member_id: str, phone: str, comment: str = "new phone",
                 request_id: str | None = None) -> member_pb2.Member:
    return api.members.ChangeMemberPhone(member_pb2.ChangeMemberPhoneRequest(
        request_id=request_id or new_id(), programme_id=programme_id, member_id=member_id, phone=phone,
        comment=comment)).member


def change_card(api: Members, programme_id: str, member_id: str, card_number: str, card_secret: str = "",
                comment: str = "plastic card", request_id: str | None = None) -> member_pb2.Member:
    return api.members.ChangeMemberCard(member_pb2.ChangeMemberCardRequest(
        request_id=request_id or new_id(), programme_id=programme_id, member_id=member_id, card_number=card_number,
        card_secret=card_secret, comment=comment)).member


def change_group(api: Members, programme_id: str, member_id: str, group: str,
                 comment: str = "segment") -> member_pb2.Member:
    return api.members.ChangeCustomerGroup(member_pb2.ChangeCustomerGroupRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id, customer_group=group,
        comment=comment)).member


def data_changes(api: Members, programme_id: str, member_id: str) -> list[tuple[str, str, str, str]]:
    """(field, from, to, comment) of the member's data changes, oldest first."""
    events = api.history(programme_id, member_id, PARTICIPATION).events
    return [(e.details["field"], e.details["from"], e.details["to"], e.comment)
            for e in reversed(events) if e.kind == "data_changed"]


def history_size(api: Members, programme_id: str, member_id: str) -> int:
    return len(api.history(programme_id, member_id).events)


# -- GetMember: the whole card ------------------------------------------------------------------

def test_get_member_gives_the_whole_card_in_one_call(api: Members) -> None:
    p = api.programme(point_lifetime_days=20, default_cashback_bps=500, default_pay_share_bps=8_000,
                      category_rules=[programme_pb2.CategoryRule(category="tickets", cashback_bps=200,
                                                                 pay_share_bps=1_000)])
    bronze = api.level(p.programme_id, "Bronze", 1, cashback_bps=300, pay_share_bps=5_000,
                       category_rules=[membership_pb2.LevelCategoryRule(category="bar", cashback_bps=700)])
    api.level(p.programme_id, "Silver", 2, spend_needed_minor=50_000, spend_period_days=365,
              category_spend_needed=[membership_pb2.CategorySpend(category="bar", spend_needed_minor=20_000)],
              visits_needed=3, visit_period_days=365)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 400)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 5_000)])

    whole = api.members.GetMember(member_pb2.GetMemberRequest(programme_id=p.programme_id, member_id=m.member_id))
    card = whole.member
    assert (card.level_id, card.level_name, card.next_level_name) == (bronze.level_id, "Bronze", "Silver")
    assert card.HasField("level_assign_time") and card.HasField("enrol_time")
    assert (card.status, card.phone, card.phone_confirmed) == (member_pb2.MEMBER_STATUS_ACTIVE, m.phone, False)
    assert card.purchases_total_minor == 5_000
    assert (card.next_level_spend_needed_minor, card.next_level_visits_needed) == (45_000, 2)
    assert [(c.category, c.spend_needed_minor) for c in card.next_level_category_spend_needed] == [("bar", 15_000)]
    # The balance as GetBalance gives it: 400 accrued and what the purchase earned, all burning within 20 days.
    alone = api.balance(p.programme_id, m.member_id)
    alone.ClearField("as_of_time")
    whole.balance.ClearField("as_of_time")
    assert whole.balance == alone
    assert whole.balance.active_points > 400 and whole.balance.burning_points == whole.balance.active_points
    rights = whole.privileges
    assert (rights.may_pay_with_points, rights.earns, rights.discount_bps, rights.discount_source) == (
        True, True, 0, "none")
    # The level's rates where it sets them, the programme's elsewhere (as a sale prices them).
    assert (rights.cashback_bps, rights.pay_share_bps, rights.order_pay_share_bps) == (300, 5_000, 5_000)
    assert [(c.category, c.cashback_bps, c.pay_share_bps) for c in rights.categories] == [
        ("bar", 700, 5_000), ("tickets", 300, 5_000)]


def privileges(api: Members, programme_id: str, member_id: str) -> member_pb2.MemberPrivileges:
    return api.members.GetMember(member_pb2.GetMemberRequest(programme_id=programme_id,
                                                             member_id=member_id)).privileges


def test_the_cards_privileges_follow_the_status_and_the_best_discount(api: Members, channel_with: Any) -> None:
    p = api.programme(require_confirmation=True)
    api.level(p.programme_id, "Club", 1, privilege=membership_pb2.LEVEL_PRIVILEGE_DISCOUNT, discount_bps=700)
    m = api.enrol(p.programme_id)
    api.membership.SetPersonalDiscount(membership_pb2.SetPersonalDiscountRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, discount_bps=500))
    # Not confirmed: earns, but points cannot pay and the level's discount does not apply.
    shown = privileges(api, p.programme_id, m.member_id)
    assert (shown.may_pay_with_points, shown.earns, shown.discount_bps, shown.discount_source, shown.cashback_bps) == (
        False, True, 500, "personal", 1_000)
    api.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_ACTIVE)
    shown = privileges(api, p.programme_id, m.member_id)
    assert (shown.may_pay_with_points, shown.discount_bps, shown.discount_source) == (True, 700, "level")
    api.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)
    shown = privileges(api, p.programme_id, m.member_id)
    assert (shown.may_pay_with_points, shown.earns, shown.discount_bps, shown.cashback_bps) == (False, False, 0, 0)
    # An erased member's card is still readable: the amounts without the personal data.
    Members(channel_with("privacy")).members.EraseMember(erase_request(p.programme_id, m.member_id))
    erased = api.members.GetMember(member_pb2.GetMemberRequest(programme_id=p.programme_id, member_id=m.member_id))
    assert (erased.member.phone, erased.member.HasField("erase_time"), erased.privileges.earns) == ("", True, False)


# -- The phone ----------------------------------------------------------------------------------

def test_a_new_phone_is_unconfirmed_and_the_old_one_is_free(api: Members, sms: RecordingSender) -> None:
    p = api.programme(require_confirmation=True)
    m = api.enrol(p.programme_id)
    start(api, p.programme_id, m.member_id)
    assert confirm(api, p.programme_id, m.member_id, code_sent(sms, m.phone)).phone_confirmed
    phone = new_phone()
    request_id = new_id()
    changed = change_phone(api, p.programme_id, m.member_id, phone, "lost her phone", request_id)
    assert (changed.phone, changed.phone_confirmed, changed.status) == (phone, False, member_pb2.MEMBER_STATUS_ACTIVE)
    assert data_changes(api, p.programme_id, m.member_id) == [("phone", m.phone, phone, "lost her phone")]
    # A retry answers the same and writes nothing more.
    assert change_phone(api, p.programme_id, m.member_id, phone, "lost her phone", request_id) == changed
    assert len(data_changes(api, p.programme_id, m.member_id)) == 1
    # The old phone is free for another enrolment; the new one confirms with a new code.
    assert api.enrol(p.programme_id, phone=m.phone).phone == m.phone
    start(api, p.programme_id, m.member_id)
    assert confirm(api, p.programme_id, m.member_id, code_sent(sms, phone)).phone_confirmed


def test_a_phone_another_member_holds_is_refused_and_nothing_is_written(api: Members) -> None:
    p = api.programme()
    holder, m = api.enrol(p.programme_id), api.enrol(p.programme_id)
    before = history_size(api, p.programme_id, m.member_id)
    assert refused(lambda: change_phone(api, p.programme_id, m.member_id, holder.phone)) == (
        grpc.StatusCode.ALREADY_EXISTS, "phone_taken")
    assert api.member(p.programme_id, m.member_id).phone == m.phone
    assert history_size(api, p.programme_id, m.member_id) == before


def test_bad_edits_are_refused_with_their_field_and_write_nothing(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id, card_number=new_card())
    before = (api.member(p.programme_id, m.member_id), history_size(api, p.programme_id, m.member_id))
    bad = {
        "phone": lambda: change_phone(api, p.programme_id, m.member_id, "0555"),
        "comment": lambda: change_phone(api, p.programme_id, m.member_id, new_phone(), comment=""),
        "card_number": lambda: change_card(api, p.programme_id, m.member_id, "12-34"),
        "card_secret": lambda: change_card(api, p.programme_id, m.member_id, new_card(), card_secret="9" * 65),
        "customer_group": lambda: change_group(api, p.programme_id, m.member_id, "g" * 65),
        "member_id": lambda: change_group(api, p.programme_id, "nope", "vip"),
    }
    for name, call in bad.items():
        # The channel checks that every field a refusal names is a field of the request.
        assert refused(call)[0] == grpc.StatusCode.INVALID_ARGUMENT, name
    assert refused(lambda: change_group(api, p.programme_id, m.member_id, "vip", comment="")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "field_required")
    assert (api.member(p.programme_id, m.member_id), history_size(api, p.programme_id, m.member_id)) == before


def test_edits_need_the_member_edit_right_and_are_refused_for_members_who_left(
        api: Members, channel_with: Any) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    for right in ("read_only", "programme_admin", "level_status", "pos"):
        other = Members(channel_with(right))
        assert refused(lambda: change_phone(other, p.programme_id, m.member_id, new_phone()))[0] == (
            grpc.StatusCode.PERMISSION_DENIED)
    desk = Members(channel_with("member_edit"))
    assert change_group(desk, p.programme_id, m.member_id, "vip").customer_group == "vip"
    api.members.OffboardMember(member_pb2.OffboardMemberRequest(request_id=new_id(), programme_id=p.programme_id,
                                                                member_id=m.member_id, comment="left"))
    assert refused(lambda: change_phone(desk, p.programme_id, m.member_id, new_phone())) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_offboarded")
    privacy = Members(channel_with("privacy"))
    privacy.members.EraseMember(erase_request(p.programme_id, m.member_id))
    assert refused(lambda: change_card(desk, p.programme_id, m.member_id, new_card())) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_erased")


# -- The card -----------------------------------------------------------------------------------

def test_a_plastic_card_with_its_secret_replaces_the_old_number_which_is_freed(
        api: Members, database_url: str) -> None:
    p = api.programme()
    old = new_card()
    m = api.enrol(p.programme_id, card_number=old)
    plastic, secret = new_card(), "40817355"
    attached = change_card(api, p.programme_id, m.member_id, plastic, secret)
    assert (attached.card_number, attached.has_card_secret) == (plastic, True)
    assert lookup(api, p.programme_id, plastic, secret).member_id == m.member_id
    assert refused(lambda: lookup(api, p.programme_id, plastic, "11111111")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "card_secret_wrong")
    assert refused(lambda: lookup(api, p.programme_id, old)) == (grpc.StatusCode.NOT_FOUND, "member_not_found")
    assert api.enrol(p.programme_id, card_number=old).card_number == old
    events = [e for e in api.history(p.programme_id, m.member_id, PARTICIPATION).events if e.kind == "data_changed"]
    assert [(e.details["from"], e.details["to"], e.details["with_secret"]) for e in events] == [(old, plastic, "True")]
    # The secret is stored only as its hash: not in history, the stored answer or the key's fingerprint.
    assert texts_holding(database_url, secret) == []


def test_a_card_change_is_idempotent_and_its_secret_is_not_part_of_the_request_fingerprint(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    card, request_id = new_card(), new_id()
    first = change_card(api, p.programme_id, m.member_id, card, "51230094", request_id=request_id)
    # Another secret under the same key gets the first answer (a fingerprint only says a secret was
    # given, so it can confirm no guess), and the first secret stays.
    assert change_card(api, p.programme_id, m.member_id, card, "99990000", request_id=request_id) == first
    assert lookup(api, p.programme_id, card, "51230094").member_id == m.member_id
    assert refused(lambda: change_card(api, p.programme_id, m.member_id, new_card(), "51230094",
                                       request_id=request_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused_with_different_request")
    assert len(data_changes(api, p.programme_id, m.member_id)) == 1


def test_a_card_without_a_secret_is_attached_unless_the_programme_requires_one(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    card = new_card()
    attached = change_card(api, p.programme_id, m.member_id, card)
    assert (attached.card_number, attached.has_card_secret) == (card, False)
    assert lookup(api, p.programme_id, card).member_id == m.member_id
    # The same number again without a secret changes nothing.
    change_card(api, p.programme_id, m.member_id, card)
    assert len(data_changes(api, p.programme_id, m.member_id)) == 1
    other = api.enrol(p.programme_id)
    assert refused(lambda: change_card(api, p.programme_id, other.member_id, card)) == (
        grpc.StatusCode.ALREADY_EXISTS, "card_number_taken")

    strict = api.programme(card_secret_required=True)
    s = api.enrol(strict.programme_id)
    assert refused(lambda: change_card(api, strict.programme_id, s.member_id, new_card())) == (
        grpc.StatusCode.FAILED_PRECONDITION, "card_secret_required")
    assert api.member(strict.programme_id, s.member_id).card_number == ""


# -- The customer group ---------------------------------------------------------------------------

def test_a_new_group_gives_its_ranges_discount_and_its_ladder(api: Members) -> None:
    p = api.programme(discount_ranges=[
        programme_pb2.DiscountRange(min_purchases_minor=1_000, discount_bps=300),
        programme_pb2.DiscountRange(customer_group="vip", min_purchases_minor=1_000, discount_bps=1_000)])
    base = api.level(p.programme_id, "Base", 1)
    vip = api.level(p.programme_id, "VIP", 2, customer_group="vip")
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 2_000)])
    assert (api.member(p.programme_id, m.member_id).accumulative_discount_bps) == 300

    moved = change_group(api, p.programme_id, m.member_id, "vip", "gold customer")
    assert (moved.customer_group, moved.accumulative_discount_bps, moved.level_id) == ("vip", 1_000, vip.level_id)
    # Leaving the group leaves its rate and its level: the ranges and ladder of the new group apply.
    back = change_group(api, p.programme_id, m.member_id, "")
    assert (back.customer_group, back.accumulative_discount_bps, back.level_id) == ("", 300, base.level_id)
    assert data_changes(api, p.programme_id, m.member_id) == [
        ("customer_group", "", "vip", "gold customer"), ("customer_group", "vip", "", "segment")]
    kinds = [e.kind for e in api.history(p.programme_id, m.member_id, PARTICIPATION).events]
    assert kinds.count("discount_recalculated") == 2 and kinds.count("level_assigned") == 3


# -- Erasure --------------------------------------------------------------------------------------

def test_erasure_removes_the_old_and_new_phones_cards_and_groups_from_history(
        api: Members, channel_with: Any, database_url: str) -> None:
    p = api.programme()
    phone, card = new_phone(), new_card()
    m = api.enrol(p.programme_id, phone=phone, card_number=card, customer_group="staff-x1")
    later_phone, later_card = new_phone(), new_card()
    change_phone(api, p.programme_id, m.member_id, later_phone)
    change_card(api, p.programme_id, m.member_id, later_card, "73310284")
    change_group(api, p.programme_id, m.member_id, "staff-y2")
    Members(channel_with("privacy")).members.EraseMember(erase_request(p.programme_id, m.member_id))
    assert texts_holding(database_url, phone, card, later_phone, later_card, "staff-x1", "staff-y2") == []
    fields = [e.details["field"] for e in api.history(p.programme_id, m.member_id, PARTICIPATION).events
              if e.kind == "data_changed"]
    assert sorted(fields) == ["card_number", "customer_group", "phone"]


# -- ListMembers ----------------------------------------------------------------------------------

def list_members(api: Members, programme_id: str, **filters: Any) -> member_pb2.ListMembersResponse:
    return api.members.ListMembers(member_pb2.ListMembersRequest(programme_id=programme_id, **filters))


def test_members_are_found_by_phone_card_status_and_level_a_page_at_a_time(
        api: Members, channel_with: Any, database_url: str) -> None:
    p = api.programme()
    bronze = api.level(p.programme_id, "Bronze", 1)
    silver = api.level(p.programme_id, "Silver", 2, spend_needed_minor=1_000)
    card = new_card()
    found = [api.enrol(p.programme_id, card_number=card if i == 0 else "") for i in range(5)]
    api.set_status(p.programme_id, found[1].member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)
    api.buy(p.programme_id, found[2].member_id, [("bar", 1, 1_500)])
    reader = Members(channel_with("read_only"))

    def ids(**filters: Any) -> list[str]:
        return [m.member_id for m in list_members(reader, p.programme_id, **filters).members]

    assert ids(phone=found[3].phone) == [found[3].member_id]
    assert ids(card_number=card) == [found[0].member_id]
    assert ids(status=member_pb2.MEMBER_STATUS_DEACTIVATED) == [found[1].member_id]
    assert ids(level_id=silver.level_id) == [found[2].member_id]
    on_bronze = list_members(reader, p.programme_id, level_id=bronze.level_id,
                             status=member_pb2.MEMBER_STATUS_ACTIVE).members
    assert sorted(m.member_id for m in on_bronze) == sorted(found[i].member_id for i in (0, 3, 4))
    assert {m.level_name for m in on_bronze} == {"Bronze"}
    assert ids(phone=new_phone()) == []

    pages, token = [], ""
    while True:
        page = list_members(reader, p.programme_id, page_size=2, page_token=token)
        pages.append([m.member_id for m in page.members])
        token = page.next_page_token
        if not token:
            break
    assert [len(x) for x in pages] == [2, 2, 1]
    assert sorted(sum(pages, [])) == sorted(m.member_id for m in found)

    for name, filters in {"page_token": dict(page_token="bm9wZQ=="), "page_size": dict(page_size=501),
                          "level_id": dict(level_id="silver"), "status": dict(status=9)}.items():
        assert refused(lambda: list_members(reader, p.programme_id, **filters))[0] == (
            grpc.StatusCode.INVALID_ARGUMENT), name
    assert refused(lambda: list_members(Members(channel_with("privacy")), p.programme_id))[0] == (
        grpc.StatusCode.PERMISSION_DENIED)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM member WHERE programme_id = %s",
                            (p.programme_id,)).fetchone()[0] == 5


def test_a_refused_edit_is_kept_with_the_member_it_names_by_id_not_the_holder_of_the_phone(
        api: Members, database_url: str) -> None:
    # Erasing the member wipes the keys kept with them: a refusal naming another member's phone
    # must be kept with the member the edit was for.
    p = api.programme()
    m = api.enrol(p.programme_id)
    # A holder before the member in id order, the order the programme's index reads them in.
    holder = api.enrol(p.programme_id)
    while holder.member_id > m.member_id:
        holder = api.enrol(p.programme_id)
    api.members.OffboardMember(member_pb2.OffboardMemberRequest(request_id=new_id(), programme_id=p.programme_id,
                                                                member_id=m.member_id, comment="left"))
    request_id = new_id()
    assert refused(lambda: change_phone(api, p.programme_id, m.member_id, holder.phone, request_id=request_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_offboarded")
    with psycopg.connect(database_url) as conn:
        kept = conn.execute("SELECT member_id::text FROM idempotency_key WHERE request_id = %s",
                            (request_id,)).fetchone()
    assert kept == (m.member_id,)
