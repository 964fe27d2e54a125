"""limits.check walks a request once without paths and again with them only when a field is over its limit."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from loyalty.v1 import checkout_pb2, common_pb2, member_import_pb2, points_pb2
from loyalty_core import errors
from server import limits


def lines(n: int, sku: str = "sku") -> list[checkout_pb2.BasketLine]:
    return [checkout_pb2.BasketLine(line_id=str(i), sku=sku, category="c", quantity=1, unit_price_minor=1)
            for i in range(n)]


OVER = [
    (checkout_pb2.QuoteRequest(lines=lines(limits.MAX_REPEATED + 1)), "lines"),
    (checkout_pb2.QuoteRequest(lines=lines(3) + lines(1, "s" * (limits.MAX_STRING_CHARS + 1))), "lines[3].sku"),
    (checkout_pb2.QuoteRequest(member=common_pb2.MemberRef(phone="+1\x00")), "member.phone"),
    (points_pb2.ListPointsHistoryRequest(page_size=limits.MAX_PAGE_SIZE + 1), "page_size"),
    (points_pb2.RunExpiryRequest(as_of_time=Timestamp(seconds=limits.MAX_TIMESTAMP_S + 1)), "as_of_time"),
    # Maps: a key over the string limit names the map; an integer map's values need no walk.
    (member_import_pb2.ImportedPurchase(by_category_minor={"c" * (limits.MAX_STRING_CHARS + 1): 1}),
     "by_category_minor"),
    (common_pb2.ItemRefusal(metadata={"k": "v" * (limits.MAX_STRING_CHARS + 1)}), "metadata['k']"),
]
WITHIN = [
    checkout_pb2.QuoteRequest(lines=lines(limits.MAX_REPEATED), store_id="s" * limits.MAX_STRING_CHARS),
    points_pb2.ListPointsHistoryRequest(page_size=limits.MAX_PAGE_SIZE),
    points_pb2.RunExpiryRequest(as_of_time=Timestamp(seconds=limits.MAX_TIMESTAMP_S)),
    member_import_pb2.ImportedPurchase(by_category_minor={"c" * limits.MAX_STRING_CHARS: 2**63 - 1, "d": 0}),
]


@pytest.mark.parametrize("request_,path", OVER)
def test_a_request_over_a_limit_is_refused_naming_the_field(request_, path):
    assert not limits._within(request_)
    with pytest.raises(errors.InvalidArgument) as err:
        limits.check(request_)
    assert err.value.field == path


@pytest.mark.parametrize("request_", WITHIN)
def test_a_request_at_its_limits_passes_both_walks(request_):
    assert limits._within(request_)
    limits.check(request_)
    limits._check(request_, "")
