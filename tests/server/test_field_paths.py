"""The path check every test channel applies (tests/fixtures/proto_paths.py) accepts proto paths only."""

import pytest

from loyalty.v1 import checkout_pb2, programme_pb2
from tests.fixtures.proto_paths import request_descriptor, resolves

QUOTE = checkout_pb2.QuoteRequest.DESCRIPTOR


@pytest.mark.parametrize("path", ["lines", "lines[0].unit_price_minor", "lines[12].line_discount_minor",
                                  "member.card_secret", "programme_id"])
def test_proto_paths_resolve(path):
    assert resolves(QUOTE, path)


@pytest.mark.parametrize("path", ["lines[0].unit_price", "lines[0].line_discount", "programme_id[0]",
                                  "lines.sku", "member.nothing", "Lines[0]", ""])
def test_other_paths_do_not(path):
    assert not resolves(QUOTE, path)


def test_a_method_names_its_request():
    assert request_descriptor("/loyalty.v1.ProgrammeService/CreateProgramme") is \
        programme_pb2.CreateProgrammeRequest.DESCRIPTOR
