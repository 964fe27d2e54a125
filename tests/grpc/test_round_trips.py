"""Database round trips per RPC, counted at a TCP proxy: a count pinned so a regression shows (never a time)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import (
    certificate_pb2, certificate_pb2_grpc, checkout_pb2, common_pb2, member_pb2, membership_pb2, membership_pb2_grpc,
)
from tests.fixtures import citus
from tests.fixtures.clock import ManualClock
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.server import ServerThread, make_test_settings
from tests.grpc.conftest import Api, basket, new_id


class CountingProxy(TcpProxy):
    """A TcpProxy that counts round trips: each time a client sends after the server last spoke on
    that connection (or first), which is one wait for the database whatever the statements sent."""

    def __init__(self, target_url: str) -> None:
        super().__init__(target_url)
        self.turns = 0
        self._client_spoke_last: dict[int, bool] = {}
        self._count_lock = threading.Lock()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:  # type: ignore[override]
        # Clients reach the proxy's TCP port; the upstream side may be a Unix socket (embedded PostgreSQL).
        from_client = src.family == socket.AF_INET and src.getsockname()[1] == self.port
        pair = id(src) ^ id(dst)
        try:
            while data := src.recv(65536):
                with self._count_lock:
                    if from_client and not self._client_spoke_last.get(pair, False):
                        self.turns += 1
                    self._client_spoke_last[pair] = from_client
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxy(database_url: str) -> Iterator[CountingProxy]:
    p = CountingProxy(database_url)
    p.start()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def grpc_server(proxy: CountingProxy, clock: ManualClock) -> Iterator[ServerThread]:
    """The real server reaching PostgreSQL through the counting proxy: one pooled connection (its
    statements are prepared once, by the warm-up calls) and no health probe between calls."""
    server = ServerThread(make_test_settings(
        proxy.url, health_probe_interval_s=3600.0, pool_min_size=1, pool_max_size=1), clock).start()
    try:
        yield server
    finally:
        server.stop()


def counted(proxy: CountingProxy, call: object) -> int:
    before = proxy.turns
    call()  # type: ignore[operator]
    return proxy.turns - before


# On Citus a write that names an order reads the order id's look-up first, so that its statements
# name the member's id and run on the member's shard (docs/scale-out.md): one round trip more.
ORDER_LOOKUP = 1 if citus.CITUS_MODE else 0


def till_calls(api: Api, programme_id: str, ref: common_pb2.MemberRef, lines: list[checkout_pb2.BasketLine],
               fields: Callable[[], dict[str, Any]]) -> tuple[Callable[[], None], ...]:
    """Quote, checkout (a new order each time) and capture of the last checkout, each with ``fields()``."""
    order_id = ""

    def quote() -> None:
        api.checkout.Quote(checkout_pb2.QuoteRequest(programme_id=programme_id, member=ref, lines=lines, **fields()))

    def checkout() -> None:
        nonlocal order_id
        order_id = new_id()
        api.checkout.Checkout(checkout_pb2.CheckoutRequest(
            request_id=new_id(), programme_id=programme_id, order_id=order_id, member=ref, lines=lines, **fields()))

    def capture() -> None:
        api.capture(programme_id, order_id)

    return quote, checkout, capture


@pytest.mark.parametrize("with_levels,expected", [(True, (1, 2, 3)), (False, (1, 2, 2))])
def test_quote_checkout_capture_and_post_sale_round_trips(api: Api, channel: grpc.Channel, proxy: CountingProxy,
                                                          clock: ManualClock, with_levels: bool,
                                                          expected: tuple[int, int, int]) -> None:
    p = api.programme(order_pay_share_bps=5_000)
    # With levels the capture's purchase count re-evaluates the member's level too (its longest
    # path); without, nothing after the count needs its answer.
    levels = membership_pb2_grpc.MembershipServiceStub(channel)
    for name, priority, visits in (("Bronze", 1, 0), ("Silver", 2, 1_000)) if with_levels else ():
        levels.CreateLevel(membership_pb2.CreateLevelRequest(request_id=new_id(), level=membership_pb2.Level(
            programme_id=p.programme_id, name=name, priority=priority, visits_needed=visits, visit_period_days=30,
            privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK)))
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 500)
    lines = basket([("tickets", 2, 1_500), ("bar", 1, 700)])
    ref = common_pb2.MemberRef(member_id=m.member_id)
    quote, checkout, capture = till_calls(api, p.programme_id, ref, lines, lambda: {"requested_points": 10})

    # Warm-up: the connection has prepared every statement and the key's lookup is cached from here on.
    quote()  # fills this process's programme cache
    quote()  # prepares the statement a quote sends when the programme is cached
    checkout()
    capture()
    assert (counted(proxy, quote), counted(proxy, checkout), counted(proxy, capture)) == (
        *expected[:2], expected[2] + ORDER_LOOKUP)

    def post_sale() -> None:
        sale_time = timestamp_pb2.Timestamp()
        sale_time.FromMicroseconds(clock.now_us() - 86_400 * 10**6)
        api.checkout.PostSale(checkout_pb2.PostSaleRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=new_id(), member=ref, lines=lines,
            requested_points=10, sale_time=sale_time))

    post_sale()
    # A posted sale is the checkout and the capture in one transaction: the checkout's reads with
    # BEGIN and the claim, then the capture's writes and COMMIT (and the level's read with levels).
    assert counted(proxy, post_sale) == expected[2]



def test_refund_and_void_round_trips(api: Api, proxy: CountingProxy) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)

    def paid() -> str:
        order = api.checkout_order(p.programme_id, m.member_id, [("bar", 2, 1_500)])
        api.capture(p.programme_id, order.order_id)
        return order.order_id

    def refund(order_id: str) -> None:
        api.checkout.Refund(checkout_pb2.RefundRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=order_id,
            lines=[checkout_pb2.RefundLine(line_id="1", quantity=1)]))

    def void(order_id: str) -> None:
        api.checkout.VoidOrder(checkout_pb2.VoidOrderRequest(request_id=new_id(), programme_id=p.programme_id,
                                                             order_id=order_id))

    warm = paid()  # prepares the refund's and the void's statements
    refund(warm)
    void(warm)
    order_id = paid()
    # Refund: BEGIN, claim, member lock and order together; the order's lines; the member's lots;
    # then the movements, the refund, the uncount (computed from the order: no read of its own),
    # the result and COMMIT.
    # Void: BEGIN, claim, member lock and order together; then its state, the uncount, history,
    # the result and COMMIT.
    assert (counted(proxy, lambda: refund(order_id)), counted(proxy, lambda: void(order_id))) == (
        4 + ORDER_LOOKUP, 2 + ORDER_LOOKUP)


def test_member_writes_send_the_member_lock_with_the_claim(api: Api, channel: grpc.Channel,
                                                          proxy: CountingProxy) -> None:
    # The lock (with the programme from this process's copy) is a declared read of the unit of work:
    # it travels with BEGIN and the claim instead of costing round trips of its own.
    p = api.programme()
    m = api.enrol(p.programme_id)
    membership = membership_pb2_grpc.MembershipServiceStub(channel)

    def accrue() -> None:
        api.accrue(p.programme_id, m.member_id, 10)

    def deactivate_and_back() -> None:
        for status in (member_pb2.MEMBER_STATUS_DEACTIVATED, member_pb2.MEMBER_STATUS_ACTIVE):
            membership.ChangeMemberStatus(membership_pb2.ChangeMemberStatusRequest(
                request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, status=status,
                comment="round trips"))

    accrue()  # fills this process's programme cache and prepares the statements
    deactivate_and_back()
    # AccruePoints (7 before): BEGIN, claim and member lock together; the movement with its new lot;
    # the movement read back; the lot read back; the result and COMMIT.
    # ChangeMemberStatus (5 before): BEGIN, claim and member lock together; the status and history
    # with the member read again; the card's reads; the result and COMMIT.
    assert (counted(proxy, accrue), counted(proxy, deactivate_and_back)) == (5, 2 * 4)


@pytest.mark.parametrize("with_levels", [True, False])
def test_get_member_gives_the_whole_card_in_one_round_trip(api: Api, channel: grpc.Channel, proxy: CountingProxy,
                                                           with_levels: bool) -> None:
    # With this process's copy of the programme, the member with its lots and the purchases the
    # levels look at travel together in one pipeline.
    p = api.programme()
    levels = membership_pb2_grpc.MembershipServiceStub(channel)
    for name, priority in (("Bronze", 1), ("Silver", 2)) if with_levels else ():
        levels.CreateLevel(membership_pb2.CreateLevelRequest(request_id=new_id(), level=membership_pb2.Level(
            programme_id=p.programme_id, name=name, priority=priority, spend_needed_minor=1_000 * priority,
            spend_period_days=30, privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK)))
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 500)

    def get() -> None:
        api.members.GetMember(member_pb2.GetMemberRequest(programme_id=p.programme_id, member_id=m.member_id))

    get()  # fills this process's programme cache
    get()  # prepares the statements a read sends when the programme is cached
    assert counted(proxy, get) == 1


def test_certificates_at_the_till_round_trips(api: Api, channel: grpc.Channel, proxy: CountingProxy) -> None:
    """A presented certificate costs a quote one round trip (its own read); a checkout reads it with
    the claim, and a capture the certificates its checkout holds, at no round trip of their own."""
    issuer = certificate_pb2_grpc.CertificateServiceStub(channel)
    p = api.programme(order_pay_share_bps=5_000)
    m = api.enrol(p.programme_id)
    lines = basket([("tickets", 2, 1_500), ("bar", 1, 700)])
    ref = common_pb2.MemberRef(member_id=m.member_id)

    def code() -> str:
        return issuer.IssueCertificates(certificate_pb2.IssueCertificatesRequest(
            request_id=new_id(), programme_id=p.programme_id, member_ids=[m.member_id], value_points=5,
            expiry=certificate_pb2.CertificateExpiry(never=True))).certificates[0].code

    # Each quote and checkout below presents a certificate of its own.
    codes = [code() for _ in range(5)]
    quote, checkout, capture = till_calls(api, p.programme_id, ref, lines,
                                          lambda: {"certificate_codes": [codes.pop()]})

    quote()
    quote()
    checkout()
    capture()
    assert (counted(proxy, quote), counted(proxy, checkout), counted(proxy, capture)) == (2, 2, 2 + ORDER_LOOKUP)
