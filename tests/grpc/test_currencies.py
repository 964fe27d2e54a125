"""Issue 11, defect 12: a programme counts in an ISO 4217 currency, and its minor unit is known."""

import grpc
import pytest

from loyalty.v1 import programme_pb2
from loyalty_core.currencies import MINOR_UNIT_EXPONENT
from tests.grpc.conftest import new_id, refusal


@pytest.mark.parametrize("code", ["ZZZ", "XAU", "eur", "EURO"])
def test_a_code_iso_4217_does_not_list_for_money_is_refused_and_nothing_is_written(api, code, database_url):
    import psycopg

    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM programme").fetchone()[0]
    with pytest.raises(grpc.RpcError) as err:
        api.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
            request_id=new_id(), programme=programme_pb2.Programme(
                name=f"c {new_id()}", currency_code=code, point_value_minor=1)))
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert "currency_code" in err.value.details()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM programme").fetchone()[0] == before


@pytest.mark.parametrize("code", ["EUR", "JPY", "KWD", "CLF"])
def test_iso_4217_currencies_are_accepted(api, code):
    assert api.programme(currency_code=code).currency_code == code


def test_minor_unit_exponents_follow_iso_4217():
    assert {c: MINOR_UNIT_EXPONENT[c] for c in ("EUR", "USD", "JPY", "KRW", "KWD", "BHD", "CLF")} == {
        "EUR": 2, "USD": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "CLF": 4}
    assert all(len(c) == 3 and c.isupper() for c in MINOR_UNIT_EXPONENT)
