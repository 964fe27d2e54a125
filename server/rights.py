"""The one table of rights: every RPC's full method name, the rights that allow it, and how its
request names the programme it acts on."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_core.store.keys import RIGHTS

# Health and reflection answer anyone: load balancers and grpcurl call them without a key.
PUBLIC_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

# How a request names its programme (the key must hold that programme, or every programme).
PROGRAMME_ID = "programme_id"
PROGRAMME_IN_BODY = "programme.programme_id"
# The request is about no single programme (creating one, listing them all): only a key for
# every programme may make it.
EVERY_PROGRAMME = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call one RPC: any of ``rights``, on the programme found at ``programme_field``."""

    rights: frozenset[str]
    programme_field: str

    def __post_init__(self) -> None:
        unknown = self.rights - set(RIGHTS)
        assert not unknown, f"unknown rights {unknown}"


def _rule(*rights: str, programme_field: str = PROGRAMME_ID) -> Rule:
    return Rule(frozenset(rights), programme_field)


# Who reads what. read_only is the SREs' right: every Get, List, History and Verify.
# programme_admin reads everything it administers. The till and the web checkout read members,
# orders and the programme as part of a sale; the editors of discounts, points, levels and
# statuses must find the member they are about to change.
_MEMBER_READERS = ("pos", "ecommerce", "programme_admin", "personal_discount", "manual_points", "level_status",
                   "member_edit", "read_only")
_SALE = ("pos", "ecommerce")

RULES: dict[str, Rule] = {
    # Moving members from a previous system: a migration's own right, in no everyday key.
    "/loyalty.v1.MemberImportService/ImportMembers": _rule("member_import"),
    # CheckoutService: the sale. POS and e-commerce have the same rights (docs/spec.md: "likewise").
    "/loyalty.v1.CheckoutService/Quote": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/Checkout": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/Capture": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/PostSale": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/PostSales": _rule(*_SALE, programme_field="sale.programme_id"),
    "/loyalty.v1.CheckoutService/Cancel": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/Refund": _rule(*_SALE),
    "/loyalty.v1.CheckoutService/CompleteOrder": _rule(*_SALE),
    # A void takes an order out of the totals after the fact: the back office's own right.
    "/loyalty.v1.CheckoutService/VoidOrder": _rule("order_void"),
    # A till that lost an answer reads the order back before it retries.
    "/loyalty.v1.CheckoutService/GetOrder": _rule(*_SALE, "programme_admin", "read_only"),
    # MemberService. Sign-up happens at the till and on the web as well as in the back office.
    "/loyalty.v1.MemberService/EnrolMember": _rule(*_SALE, "programme_admin"),
    "/loyalty.v1.MemberService/GetMember": _rule(*_MEMBER_READERS),
    "/loyalty.v1.MemberService/LookupMember": _rule(*_MEMBER_READERS),
    "/loyalty.v1.MemberService/GetBalance": _rule(*_MEMBER_READERS),
    "/loyalty.v1.MemberService/GetPointsForecast": _rule(*_MEMBER_READERS),
    # Leaving the programme is a participation (status) change.
    "/loyalty.v1.MemberService/OffboardMember": _rule("level_status", "programme_admin"),
    # Members' personal data (GDPR): the data protection desk's own right, in no other.
    "/loyalty.v1.MemberService/EraseMember": _rule("privacy"),
    "/loyalty.v1.MemberService/ExportMemberData": _rule("privacy"),
    # A member's phone, card and group are changed by the service desk's own right, in no other: a
    # new phone or card lets whoever holds it act as the member.
    "/loyalty.v1.MemberService/ChangeMemberPhone": _rule("member_edit"),
    "/loyalty.v1.MemberService/ChangeMemberCard": _rule("member_edit"),
    "/loyalty.v1.MemberService/ChangeCustomerGroup": _rule("member_edit"),
    # Finding members is reading them.
    "/loyalty.v1.MemberService/ListMembers": _rule(*_MEMBER_READERS),
    # Custom fields: declared by programme_admin (UpdateProgramme), given at enrolment by whoever
    # enrols, changed later by the back office or the service desk.
    "/loyalty.v1.MemberService/UpdateMemberCustomFields": _rule("programme_admin", "member_edit"),
    # PointsService. Manual points move money: only their own right, not programme_admin.
    "/loyalty.v1.PointsService/AccruePoints": _rule("manual_points"),
    "/loyalty.v1.PointsService/RedeemPoints": _rule("manual_points"),
    # The web shop shows the member's history; the till does not need it.
    "/loyalty.v1.PointsService/ListLots": _rule("manual_points", "programme_admin", "read_only"),
    "/loyalty.v1.PointsService/ListPointsHistory": _rule("ecommerce", "manual_points", "programme_admin",
                                                         "read_only"),
    # An empty programme_id means every programme, which a key for some programmes may not run.
    "/loyalty.v1.PointsService/RunExpiry": _rule("programme_admin"),
    "/loyalty.v1.PointsService/VerifyLedger": _rule("programme_admin", "read_only"),
    # ProgrammeService.
    "/loyalty.v1.ProgrammeService/CreateProgramme": _rule("programme_admin", programme_field=EVERY_PROGRAMME),
    "/loyalty.v1.ProgrammeService/UpdateProgramme": _rule("programme_admin", programme_field=PROGRAMME_IN_BODY),
    "/loyalty.v1.ProgrammeService/GetProgramme": _rule(*_MEMBER_READERS),
    # Lists every programme, so it needs a key for every programme; a key for some programmes
    # reads each of its own with GetProgramme.
    "/loyalty.v1.ProgrammeService/ListProgrammes": _rule("programme_admin", "read_only",
                                                         programme_field=EVERY_PROGRAMME),
    # MembershipService. Statuses and levels are the level_status right, the personal discount its
    # own right (docs/spec.md: "personal-discount editing"); levels' definitions and the batch runs are the
    # programme's administration.
    "/loyalty.v1.MembershipService/ChangeMemberStatus": _rule("level_status", "programme_admin"),
    "/loyalty.v1.MembershipService/ChangeMemberLevel": _rule("level_status"),
    "/loyalty.v1.MembershipService/SetPersonalDiscount": _rule("personal_discount"),
    # The member reads the code to the cashier, and cards are issued at the till (the seeds).
    "/loyalty.v1.MembershipService/StartPhoneConfirmation": _rule(*_SALE, "programme_admin"),
    "/loyalty.v1.MembershipService/ConfirmPhone": _rule(*_SALE, "programme_admin"),
    # The member reads the spend code at the till, or types it in the shop; a redemption outside an
    # order (manual_points) may ask for one too.
    "/loyalty.v1.MembershipService/SendSpendCode": _rule(*_SALE, "manual_points"),
    "/loyalty.v1.MembershipService/RegenerateCardSecret": _rule(*_SALE, "programme_admin"),
    "/loyalty.v1.MembershipService/UnlockCard": _rule("card_unlock"),
    "/loyalty.v1.MembershipService/GenerateVirtualCard": _rule(*_SALE, "programme_admin"),
    "/loyalty.v1.MembershipService/CreateLevel": _rule("programme_admin", programme_field="level.programme_id"),
    "/loyalty.v1.MembershipService/UpdateLevel": _rule("programme_admin", programme_field="level.programme_id"),
    "/loyalty.v1.MembershipService/ListLevels": _rule("programme_admin", "level_status", "read_only"),
    "/loyalty.v1.MembershipService/RunLevelReview": _rule("programme_admin"),
    "/loyalty.v1.MembershipService/RecalculateDiscounts": _rule("programme_admin"),
    # EventBonusService. Event types are the programme's administration; events are recorded by the
    # internal services that see them happen (a birthday job, the app, reviews), never by a till.
    "/loyalty.v1.EventBonusService/CreateEventType": _rule("programme_admin",
                                                           programme_field="event_type.programme_id"),
    "/loyalty.v1.EventBonusService/UpdateEventType": _rule("programme_admin",
                                                           programme_field="event_type.programme_id"),
    "/loyalty.v1.EventBonusService/ListEventTypes": _rule("programme_admin", "event_bonus", "read_only"),
    "/loyalty.v1.EventBonusService/RecordEvent": _rule("event_bonus"),
    # CertificateService. Issuing and cancelling give or take value: their own right, never the till's.
    # The till uses certificates through Quote and Checkout; read_only and the back office read them.
    "/loyalty.v1.CertificateService/IssueCertificates": _rule("certificate_issue"),
    "/loyalty.v1.CertificateService/CancelCertificates": _rule("certificate_issue"),
    "/loyalty.v1.CertificateService/GetCertificate": _rule("certificate_issue", "programme_admin", "read_only"),
    "/loyalty.v1.CertificateService/ListCertificates": _rule("certificate_issue", "programme_admin", "read_only"),
    "/loyalty.v1.MembershipService/ListMemberHistory": _rule("ecommerce", "personal_discount", "level_status",
                                                             "programme_admin", "read_only"),
    # EventService: every member's changes of a programme go to whoever holds these, so they are
    # their own right (webhook_admin), for the stream as for the subscriptions. ListWebhooks is a
    # read and so read_only's too; it shows URLs and delivery state, never a secret.
    "/loyalty.v1.EventService/WatchEvents": _rule("webhook_admin"),
    "/loyalty.v1.EventService/CreateWebhook": _rule("webhook_admin", programme_field="webhook.programme_id"),
    "/loyalty.v1.EventService/ListWebhooks": _rule("webhook_admin", "read_only"),
    "/loyalty.v1.EventService/DeleteWebhook": _rule("webhook_admin"),
    "/loyalty.v1.EventService/RedeliverWebhook": _rule("webhook_admin"),
}


def rule_for(method: str) -> Rule | None:
    """The rule of a full method name ("/loyalty.v1.X/Y"), or None: a method without one is refused."""
    return RULES.get(method)


def is_public(method: str) -> bool:
    return method[1:].partition("/")[0] in PUBLIC_SERVICES


def programme_of(request: object, programme_field: str) -> str:
    """The programme id a request names at ``programme_field`` (a dotted path); "" when unset."""
    value: object = request
    for part in programme_field.split("."):
        value = getattr(value, part, "")
    return value if isinstance(value, str) else ""
