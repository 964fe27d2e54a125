"""The spend rule at every write that spends points (Checkout holding points, RedeemPoints): the
spend code checked before the member's row lock, the programme's rule and the code's single use under it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loyalty_core import cards, spending
from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition
from loyalty_core.model import Member, MemberRef, Programme
from loyalty_core.service import checks
from loyalty_core.store import members
from loyalty_core.store import membership as store
from loyalty_core.store.db import Database

SPEND_CODE_MAX_LEN = 16
# The history's actor of a spend code locked by wrong codes: the server itself.
LOCKOUT_ACTOR = "spend-code-lockout"
_REFUSALS = {
    "spend_code_not_sent": "no spend code was sent to the member's confirmed phone; send one",
    "spend_code_used": "the spend code was used already; send a new one",
    "spend_code_locked": "too many wrong spend codes; send a new one",
    "spend_code_expired": "the spend code has expired; send a new one",
    "spend_code_wrong": "the spend code is wrong",
}


@dataclass(frozen=True)
class SpendCodeCheck:
    """The outcome of a spend code given with a request, reached before the member's lock.

    A refusal is carried into the write, not raised before it: a replay of a request whose code
    was used by its first answer must get that answer, and a wrong code is an answer that is stored."""

    member_id: str = ""
    sent_at: int = 0
    refusal: str = ""
    attempts_left: int = 0

    @property
    def checked(self) -> bool:
        return bool(self.member_id) and not self.refusal


NO_CODE = SpendCodeCheck()


def spend_code_arg(code: str) -> str:
    return checks.text_arg(code, "spend_code", max_len=SPEND_CODE_MAX_LEN)


async def check_spend_code(db: Database, clock: Clock, programme_id: str, ref: MemberRef, code: str) -> SpendCodeCheck:
    """Check ``code`` against the spend code last sent to the member ``ref`` names, outside any
    transaction that holds the member (scrypt takes tens of milliseconds). The attempt is counted
    before the check, in a transaction of its own, so it stays counted when the call is refused;
    the attempt that uses up the code's attempts is in history (``spend_code_locked``). The code's
    form is checked with the request's other fields (``spend_code_arg``), before anything is written."""
    if not code:
        return NO_CODE
    async with db.connection() as conn:
        member = await members.find(conn, programme_id, ref)
    if member is None:
        return NO_CODE  # the write's own lookup refuses the request (member_not_found)
    now = clock.now_us()
    sent = await db.run_in_transaction(store.count_spend_attempt, member.member_id, now)
    refusal = _unusable(sent, member, now)
    if refusal:
        return SpendCodeCheck(member.member_id, refusal=refusal)
    assert sent is not None
    if await cards.secret_matches_async(code, sent.code_hash):
        return SpendCodeCheck(member.member_id, sent.sent_at)
    left = sent.attempts_max - sent.attempts - 1
    if not left:
        async with db.connection() as conn:
            await store.add_event(conn, member.member_id, "messages", "spend_code_locked", now, actor=LOCKOUT_ACTOR,
                                  details={"tries": sent.attempts_max})
    return SpendCodeCheck(member.member_id, refusal="spend_code_wrong", attempts_left=left)


def _unusable(sent: store.SpendCode | None, member: Member, now: int) -> str:
    """Why the member's spend code cannot be tried, "" when it can."""
    if sent is None or sent.phone != member.phone or not member.phone_confirmed:
        return "spend_code_not_sent"
    if sent.used_at is not None:
        return "spend_code_used"
    if sent.attempts >= sent.attempts_max:
        return "spend_code_locked"
    if now >= sent.expires_at:
        return "spend_code_expired"
    return ""


async def authorise(conn: Any, programme: Programme, member: Member, ref: MemberRef, code: SpendCodeCheck, *,
                    card_secret_checked: bool, trusted: bool, points: int, now: int, actor: str,
                    order_id: str = "") -> None:
    """Under the member's row lock, in the write that spends ``points``: refuse a spend code that
    failed its check, refuse the spend unless the call proves one of the programme's
    identifications, and use the code up (once, with its history entry) when points are spent."""
    if code.refusal:
        raise FailedPrecondition(code.refusal, _REFUSALS[code.refusal], attempts_left=code.attempts_left)
    if code.checked and code.member_id != member.member_id:
        # The identifier named someone else when the code was checked (a phone moved meanwhile).
        raise FailedPrecondition("spend_code_not_sent", _REFUSALS["spend_code_not_sent"])
    if not points:
        return
    spending.check_may_spend(programme, spending.proven(
        ref, card_secret_checked=card_secret_checked, spend_code_checked=code.checked, trusted=trusted))
    if not code.checked:
        return
    if not await store.use_spend_code(conn, member.member_id, code.sent_at, now):
        raise FailedPrecondition("spend_code_used", _REFUSALS["spend_code_used"])
    await store.add_event(conn, member.member_id, "messages", "spend_code_used", now, actor=actor,
                          details={"points": points, "order_id": order_id})
