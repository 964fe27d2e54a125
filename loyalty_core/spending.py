"""Who may spend a member's points: the programme's spend identifications against what a call proves."""

from __future__ import annotations

from loyalty_core.errors import FailedPrecondition
from loyalty_core.model import MemberRef, Programme

# The identifications a programme may list (programme.proto's SpendIdentification).
CARD_SECRET = "card_secret"
CARD = "card"
PHONE = "phone"
SPEND_CODE = "spend_code"
TRUSTED_MEMBER_ID = "trusted_member_id"
IDENTIFICATIONS = (CARD_SECRET, CARD, PHONE, SPEND_CODE, TRUSTED_MEMBER_ID)
# What an empty list means where the programme requires card secrets: every way that proves the
# member is there (or vouched for), none that a bare lookup gives.
SECRET_REQUIRED_DEFAULT = frozenset({CARD_SECRET, SPEND_CODE, TRUSTED_MEMBER_ID})


def allowed(programme: Programme) -> frozenset[str] | None:
    """The identifications that may spend; None: every one, from every caller (an empty list on a
    programme that does not require card secrets, as before the rule existed)."""
    if programme.spend_identifications:
        return frozenset(programme.spend_identifications)
    return SECRET_REQUIRED_DEFAULT if programme.card_secret_required else None


def proven(ref: MemberRef, *, card_secret_checked: bool, spend_code_checked: bool, trusted: bool) -> frozenset[str]:
    """The identifications a call proves: how it names the member, the card secret or spend code it
    gave and that were checked, and whether its caller is a trusted channel."""
    found = set()
    if ref.card_number:
        found.add(CARD)
        if card_secret_checked:
            found.add(CARD_SECRET)
    if ref.phone:
        found.add(PHONE)
    if ref.member_id and trusted:
        found.add(TRUSTED_MEMBER_ID)
    if spend_code_checked:
        found.add(SPEND_CODE)
    return frozenset(found)


def check_may_spend(programme: Programme, shown: frozenset[str]) -> None:
    """Points may be spent only by a call that proves one of the programme's identifications."""
    allowed_here = allowed(programme)
    if allowed_here is None or allowed_here & shown:
        return
    raise FailedPrecondition(
        "spend_identification_not_allowed",
        f"this programme lets points be spent only by {', '.join(sorted(allowed_here))}; this call shows "
        f"{', '.join(sorted(shown)) or 'none of them'} (send a spend code, or name the member by card and secret)",
        allowed=",".join(sorted(allowed_here)))
