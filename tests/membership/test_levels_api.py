"""Levels over gRPC: create, update, list; manual changes; what the member card shows."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from loyalty.v1 import membership_pb2
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused


def change_level(api: Members, programme_id: str, member_id: str, level_id: str, comment: str) -> Any:
    return api.membership.ChangeMemberLevel(membership_pb2.ChangeMemberLevelRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id, level_id=level_id,
        comment=comment)).member


def test_the_spend_per_category_must_not_add_up_to_more_than_the_total(api: Members) -> None:
    p = api.programme()
    parts = [membership_pb2.CategorySpend(category="bar", spend_needed_minor=60_000),
             membership_pb2.CategorySpend(category="tickets", spend_needed_minor=50_000)]
    assert refused(lambda: api.level(p.programme_id, "Gold", 1, spend_needed_minor=100_000,
                                     category_spend_needed=parts)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "category_share_must_not_exceed_total")
    level = api.level(p.programme_id, "Gold", 1, spend_needed_minor=110_000, category_spend_needed=parts)
    assert {c.category: c.spend_needed_minor for c in level.category_spend_needed} == {"bar": 60_000, "tickets": 50_000}


def test_priorities_are_unique_and_levels_list_lowest_first_in_pages(api: Members) -> None:
    p = api.programme()
    for priority in (3, 1, 2):
        api.level(p.programme_id, f"L{priority}", priority)
    assert refused(lambda: api.level(p.programme_id, "again", 2)) == (
        grpc.StatusCode.ALREADY_EXISTS, "level_priority_taken")
    first = api.membership.ListLevels(membership_pb2.ListLevelsRequest(programme_id=p.programme_id, page_size=2))
    rest = api.membership.ListLevels(membership_pb2.ListLevelsRequest(programme_id=p.programme_id, page_size=2,
                                                                     page_token=first.next_page_token))
    assert [lv.name for lv in [*first.levels, *rest.levels]] == ["L1", "L2", "L3"] and not rest.next_page_token


def test_an_update_changes_only_the_masked_fields(api: Members) -> None:
    p = api.programme()
    level = api.level(p.programme_id, "Silver", 1, cashback_bps=300, pay_share_bps=1_000)
    changed = api.membership.UpdateLevel(membership_pb2.UpdateLevelRequest(
        request_id=new_id(), level=membership_pb2.Level(programme_id=p.programme_id, level_id=level.level_id,
                                                        name="Argent", cashback_bps=9_999),
        update_mask=field_mask_pb2.FieldMask(paths=["name"]))).level
    assert (changed.name, changed.cashback_bps, changed.pay_share_bps) == ("Argent", 300, 1_000)
    assert refused(lambda: api.membership.UpdateLevel(membership_pb2.UpdateLevelRequest(
        request_id=new_id(), level=membership_pb2.Level(programme_id=p.programme_id, level_id=level.level_id),
        update_mask=field_mask_pb2.FieldMask(paths=["level_id"])))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")


def test_defect_7_a_manual_level_may_not_be_below_what_purchases_qualify_for(api: Members) -> None:
    # Issue 11, defect 7: with 30,000 spent, Bronze 0 and Silver 20,000, both were refused.
    p = api.programme()
    bronze = api.level(p.programme_id, "Bronze", 1)
    silver = api.level(p.programme_id, "Silver", 2, spend_needed_minor=20_000, spend_period_days=365)
    gold = api.level(p.programme_id, "Gold", 3, spend_needed_minor=100_000, spend_period_days=365)
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 30_000)])
    member = api.member(p.programme_id, m.member_id)
    assert (member.level_name, member.next_level_name, member.next_level_spend_needed_minor) == ("Silver", "Gold",
                                                                                                 70_000)
    # 30,000 qualifies for Silver: re-setting it is allowed, Bronze below it is not.
    assert refused(lambda: change_level(api, p.programme_id, m.member_id, bronze.level_id, "lower")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "level_below_member_spend")
    assert change_level(api, p.programme_id, m.member_id, silver.level_id, "keep").level_name == "Silver"
    assert refused(lambda: change_level(api, p.programme_id, m.member_id, gold.level_id, "")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "field_required")
    promoted = change_level(api, p.programme_id, m.member_id, gold.level_id, "birthday gift")
    assert (promoted.level_name, promoted.next_level_name, promoted.next_level_spend_needed_minor) == ("Gold", "", 0)
    event = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events[0]
    assert (event.kind, event.comment, event.details["reason"], event.details["level_name"]) == (
        "level_assigned", "birthday gift", "manual", "Gold")
    assert refused(lambda: change_level(api, p.programme_id, m.member_id, new_id(), "no such")) == (
        grpc.StatusCode.NOT_FOUND, "level_not_found")
    # A raise can be corrected back down to what the purchases qualify for, never below it.
    assert change_level(api, p.programme_id, m.member_id, silver.level_id, "correction").level_name == "Silver"
    assert refused(lambda: change_level(api, p.programme_id, m.member_id, bronze.level_id, "lower")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "level_below_member_spend")


def test_levels_of_a_group_are_only_for_that_group(api: Members) -> None:
    p = api.programme()
    api.level(p.programme_id, "Everyone", 1)
    staff = api.level(p.programme_id, "Staff", 2, customer_group="staff")
    outsider = api.member(p.programme_id, api.enrol(p.programme_id).member_id)
    insider = api.member(p.programme_id, api.enrol(p.programme_id, customer_group="staff").member_id)
    assert (outsider.level_name, insider.level_name) == ("Everyone", "Staff")
    assert refused(lambda: change_level(api, p.programme_id, outsider.member_id, staff.level_id, "try")) == (
        grpc.StatusCode.NOT_FOUND, "level_not_found")
