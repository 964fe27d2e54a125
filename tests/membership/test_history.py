"""The member's history over gRPC: tabs, newest first, pages; and the batch runs over many members."""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from loyalty.v1 import member_pb2, membership_pb2, programme_pb2
from tests.grpc.conftest import new_id
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
    assert seen == ["status_changed", "status_changed", "purchase_counted", "enrolled"]


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
