"""Writes price with this process's copy of the programme only while its revision is current: a
change made elsewhere (another server process, an operator's SQL that raises the revision, as
docs/ledger.md asks) reaches the very next write; quotes may use the copy for up to its time to live."""

import grpc
import psycopg
import pytest

from loyalty.v1 import membership_pb2, membership_pb2_grpc, programme_pb2
from tests.grpc.conftest import new_id, refusal


def revision(url: str, programme_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT revision FROM programme WHERE programme_id = %s", (programme_id,)).fetchone()[0]


def change_elsewhere(url: str, sql: str, *params: object) -> None:
    """A change this server's process does not make, so nothing tells it to forget its copy."""
    with psycopg.connect(url) as conn:
        conn.execute(sql, params)


def test_a_capture_earns_at_the_rate_changed_elsewhere_a_moment_before(api, database_url):
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    first = api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 10_000)])
    assert api.capture(p.programme_id, first.order_id).earned_points == 10  # the process has its copy
    before = revision(database_url, p.programme_id)
    change_elsewhere(database_url, "UPDATE programme SET default_cashback_bps = 2000, revision = revision + 1"
                     " WHERE programme_id = %s",
                     p.programme_id)
    assert revision(database_url, p.programme_id) == before + 1
    second = api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 10_000)])
    assert second.pricing.earned_points == 20
    assert api.capture(p.programme_id, second.order_id).earned_points == 20


def test_a_checkout_is_refused_at_once_when_the_programme_was_disabled_elsewhere(api, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 1_000)])  # the process has its copy
    change_elsewhere(database_url, "UPDATE programme SET enabled = false, revision = revision + 1"
                     " WHERE programme_id = %s", p.programme_id)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 1_000)])
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "programme_disabled")


def test_every_change_to_a_programme_or_its_levels_raises_its_revision(api, channel, database_url):
    """The statements that change a programme or its levels raise its revision themselves: a reference
    table on Citus carries no trigger (migration 0023)."""
    levels = membership_pb2_grpc.MembershipServiceStub(channel)
    p = api.programme()
    level: list[membership_pb2.Level] = []

    def create_level() -> None:
        level.append(levels.CreateLevel(membership_pb2.CreateLevelRequest(request_id=new_id(), level=membership_pb2.Level(
            programme_id=p.programme_id, name="silver", priority=1,
            privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK))).level)

    steps = {
        "UpdateProgramme": lambda: api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
            request_id=new_id(), programme=programme_pb2.Programme(programme_id=p.programme_id, name=p.name + "."),
            update_mask={"paths": ["name"]})),
        "CreateLevel": create_level,
        "UpdateLevel": lambda: levels.UpdateLevel(membership_pb2.UpdateLevelRequest(
            request_id=new_id(), level=membership_pb2.Level(programme_id=p.programme_id, level_id=level[0].level_id,
                                                            cashback_bps=200), update_mask={"paths": ["cashback_bps"]})),
    }
    for name, step in steps.items():
        before = revision(database_url, p.programme_id)
        step()
        assert revision(database_url, p.programme_id) > before, name
