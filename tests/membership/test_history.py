"""History (tabs, newest first, pages), idempotent writes, rights and the batch runs, over gRPC."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import member_pb2, membership_pb2, programme_pb2
from loyalty_core.clock import ManualClock
from tests.grpc.conftest import new_id, refusal
from tests.membership.conftest import Members

DEACTIVATED = member_pb2.MEMBER_STATUS_DEACTIVATED
ACTIVE = member_pb2.MEMBER_STATUS_ACTIVE


def test_history_tabs_filter_and_pages_run_newest_first(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.set_status(p.programme_id, m.member_id, DEACTIVATED, "paused")
    api.set_status(p.programme_id, m.member_id, ACTIVE, "back")
    participation = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events
    assert [(e.kind, e.comment) for e in participation] == [
        ("status_changed", "back"), ("status_changed", "paused"), ("enrolled", "")]
    assert all(e.tab == membership_pb2.HISTORY_TAB_PARTICIPATION for e in participation)

    seen, token = [], ""
    while True:
        page = api.history(p.programme_id, m.member_id, page_size=2, page_token=token)
        seen += [e.kind for e in page.events]
        if not (token := page.next_page_token):
            break
    # All at one moment of the test clock: history events, then points movements, then orders.
    assert seen == ["status_changed", "status_changed", "purchase_counted", "enrolled", "points_earned", "order"]


def test_recalculation_runs_in_batches_and_a_rerun_changes_nothing(api: Members) -> None:
    p = api.programme(discount_ranges=[programme_pb2.DiscountRange(min_purchases_minor=1_000, discount_bps=200)])
    buyers = [api.enrol(p.programme_id) for _ in range(5)]
    for m in buyers[:3]:
        api.buy(p.programme_id, m.member_id, [("bar", 1, 2_000)])
    richer = programme_pb2.Programme(programme_id=p.programme_id, discount_ranges=[
        programme_pb2.DiscountRange(min_purchases_minor=1_000, discount_bps=400)])
    api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=richer, update_mask=field_mask_pb2.FieldMask(paths=["discount_ranges"])))
    request = membership_pb2.RecalculateDiscountsRequest(programme_id=p.programme_id, batch_size=2)
    first = api.membership.RecalculateDiscounts(request)
    assert (first.members_recalculated, first.members_changed) == (5, 3)
    again = api.membership.RecalculateDiscounts(request)
    assert (again.members_recalculated, again.members_changed) == (5, 0)
    assert [api.member(p.programme_id, m.member_id).accumulative_discount_bps for m in buyers] == [400] * 3 + [0] * 2


def test_membership_writes_are_idempotent(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    request = membership_pb2.SetPersonalDiscountRequest(request_id=new_id(), programme_id=p.programme_id,
                                                        member_id=m.member_id, discount_bps=500, comment="vip")
    first = api.membership.SetPersonalDiscount(request)
    assert api.membership.SetPersonalDiscount(request) == first
    changes = [e for e in api.history(p.programme_id, m.member_id).events if e.kind == "personal_discount_set"]
    assert len(changes) == 1
    request.discount_bps = 900
    with pytest.raises(grpc.RpcError) as err:
        api.membership.SetPersonalDiscount(request)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused_with_different_request")


def test_the_review_leaves_deactivated_members_where_they_are(api: Members, clock: ManualClock) -> None:
    p = api.programme()
    api.level(p.programme_id, "Bronze", 1)
    silver = api.level(p.programme_id, "Silver", 2, visits_needed=1, visit_period_days=7)
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.set_status(p.programme_id, m.member_id, DEACTIVATED, "paused")
    clock.advance(days=30)
    run = api.membership.RunLevelReview(membership_pb2.RunLevelReviewRequest(programme_id=p.programme_id))
    assert (run.members_reviewed, run.members_dropped) == (1, 0)
    assert api.member(p.programme_id, m.member_id).level_id == silver.level_id


def test_only_a_key_with_the_personal_discount_right_sets_one(
        api: Members, channel_with: Callable[..., grpc.Channel]) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    request = membership_pb2.SetPersonalDiscountRequest(request_id=new_id(), programme_id=p.programme_id,
                                                        member_id=m.member_id, discount_bps=500)
    for rights in (("pos",), ("programme_admin", "level_status")):
        with pytest.raises(grpc.RpcError) as err:
            Members(channel_with(*rights)).membership.SetPersonalDiscount(request)
        assert refusal(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    editor = Members(channel_with("personal_discount", programmes=[p.programme_id]))
    assert editor.membership.SetPersonalDiscount(request).member.personal_discount_bps == 500
