"""Programmes and members over gRPC: create, update by mask, list pages; enrol, look up, balance, off-board."""

import grpc
import pytest

from loyalty.v1 import common_pb2, member_pb2, programme_pb2
from tests.grpc.conftest import new_id, refusal

DAY_S = 86_400


def test_a_programme_is_created_read_updated_by_mask_and_listed_in_pages(api):
    p = api.programme(name=f"cafe {new_id()}", category_rules=[{"category": "bar", "cashback_bps": 500,
                                                                 "pay_share_bps": 1_000}])
    got = api.programmes.GetProgramme(programme_pb2.GetProgrammeRequest(programme_id=p.programme_id)).programme
    assert got == p
    assert got.compatibility == programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS
    changed = api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(programme_id=p.programme_id, default_cashback_bps=250,
                                                               name="ignored: not in the mask"),
        update_mask={"paths": ["default_cashback_bps"]})).programme
    assert (changed.default_cashback_bps, changed.name, changed.category_rules) == (250, p.name, p.category_rules)
    for _ in range(2):
        api.programme()
    seen, token = [], ""
    while True:
        page = api.programmes.ListProgrammes(programme_pb2.ListProgrammesRequest(page_size=2, page_token=token))
        assert len(page.programmes) <= 2
        seen += [x.programme_id for x in page.programmes]
        token = page.next_page_token
        if not token:
            break
    assert p.programme_id in seen and len(seen) == len(set(seen))


def test_a_programme_name_is_unique(api):
    p = api.programme()
    with pytest.raises(grpc.RpcError) as err:
        api.programme(name=p.name)
    assert refusal(err.value) == (grpc.StatusCode.ALREADY_EXISTS, "programme_name_taken")


def test_members_enrol_by_phone_or_card_and_are_found_by_either(api):
    p = api.programme(welcome_bonus_points=15, welcome_bonus_lifetime_days=20)
    by_card = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, card_number="CARD0001", card_secret="4321"))
    assert by_card.welcome_bonus_points == 15
    both = api.enrol(p.programme_id, card_number="CARD0002")
    for ref in (common_pb2.MemberRef(card_number="CARD0001", card_secret="4321"),
                common_pb2.MemberRef(member_id=by_card.member.member_id)):
        found = api.members.LookupMember(member_pb2.LookupMemberRequest(programme_id=p.programme_id, member=ref))
        assert found.member.member_id == by_card.member.member_id
        assert (found.balance.active_points, found.balance.burning_points) == (15, 15)
        assert found.balance.burn_outs[0].expire_time.ToSeconds() - found.balance.as_of_time.ToSeconds() == 20 * DAY_S
    found = api.members.LookupMember(member_pb2.LookupMemberRequest(
        programme_id=p.programme_id, member=common_pb2.MemberRef(phone=both.phone))).member
    assert (found.member_id, found.card_number) == (both.member_id, "CARD0002")
    with pytest.raises(grpc.RpcError) as err:
        api.enrol(p.programme_id, phone=both.phone)
    assert refusal(err.value) == (grpc.StatusCode.ALREADY_EXISTS, "phone_taken")
    with pytest.raises(grpc.RpcError) as err:
        api.enrol(p.programme_id, phone="", card_number="CARD0001")
    assert refusal(err.value) == (grpc.StatusCode.ALREADY_EXISTS, "card_number_taken")
    with pytest.raises(grpc.RpcError) as err:
        api.members.LookupMember(member_pb2.LookupMemberRequest(
            programme_id=p.programme_id, member=common_pb2.MemberRef(phone="+15550000000")))
    assert refusal(err.value) == (grpc.StatusCode.NOT_FOUND, "member_not_found")


def test_the_balance_lists_every_burn_out_within_30_days(api, clock):
    p = api.programme()
    m = api.enrol(p.programme_id)
    for days, points in ((5, 10), (40, 20), (12, 30)):
        api.accrue(p.programme_id, m.member_id, points, expiry={"lifetime_days": days})
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.burning_points) == (60, 40)
    assert [(x.expire_time.ToSeconds() - b.as_of_time.ToSeconds(), x.points) for x in b.burn_outs] == [
        (5 * DAY_S, 10), (12 * DAY_S, 30)]
    clock.advance(days=11)
    b = api.balance(p.programme_id, m.member_id)
    assert [x.points for x in b.burn_outs] == [30, 20]  # the 5-day lot is gone; the 40-day one is now near


def test_an_offboarded_member_keeps_the_ledger_and_cannot_be_credited(api):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 5)
    gone = api.members.OffboardMember(member_pb2.OffboardMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, comment="moved away")).member
    assert gone.HasField("offboard_time")
    with pytest.raises(grpc.RpcError) as err:
        api.accrue(p.programme_id, m.member_id, 5)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_offboarded")
    assert api.balance(p.programme_id, m.member_id).active_points == 5
