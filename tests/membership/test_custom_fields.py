"""Custom fields over gRPC: a programme declares them, enrolment and the field-masked update set them,
checked against their declaration (refusals name the field and write nothing), every change is in
history, members are found by a value, and erasure and export know them."""

from __future__ import annotations

import json
from typing import Any

import grpc
import psycopg
import pytest

from loyalty.errors import refusal
from loyalty.v1 import member_pb2, membership_pb2, programme_pb2
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused
from tests.membership.test_privacy import erase_request, export_request

FIELDS = [
    programme_pb2.CustomFieldDefinition(name="birthday", type=programme_pb2.CUSTOM_FIELD_TYPE_DATE),
    programme_pb2.CustomFieldDefinition(name="shoe_size", type=programme_pb2.CUSTOM_FIELD_TYPE_INTEGER),
    programme_pb2.CustomFieldDefinition(name="newsletter", type=programme_pb2.CUSTOM_FIELD_TYPE_BOOLEAN),
    programme_pb2.CustomFieldDefinition(name="nickname", type=programme_pb2.CUSTOM_FIELD_TYPE_TEXT),
    programme_pb2.CustomFieldDefinition(name="favourite_club", type=programme_pb2.CUSTOM_FIELD_TYPE_CHOICE,
                                        required=True, choices=["north", "south"]),
]


def value(name: str, text: str) -> member_pb2.CustomFieldValue:
    return member_pb2.CustomFieldValue(name=name, value=text)


def values_of(member: member_pb2.Member) -> dict[str, str]:
    return {v.name: v.value for v in member.custom_fields}


def programme_with_fields(api: Members) -> programme_pb2.Programme:
    return api.programme(custom_fields=FIELDS)


def update(api: Members, programme_id: str, member_id: str, values: list[member_pb2.CustomFieldValue],
           mask: list[str], request_id: str | None = None, comment: str = "") -> member_pb2.Member:
    return api.members.UpdateMemberCustomFields(member_pb2.UpdateMemberCustomFieldsRequest(
        request_id=request_id or new_id(), programme_id=programme_id, member_id=member_id, custom_fields=values,
        update_mask={"paths": mask}, comment=comment)).member


def written(database_url: str) -> tuple[int, ...]:
    """Rows a custom field write may add: members, values, history entries, idempotency keys."""
    with psycopg.connect(database_url) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("member", "member_custom_value", "member_event", "idempotency_key"))


def bad_argument(call: Any) -> tuple[grpc.StatusCode, str, list[str]]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    details = refusal(err.value)
    return err.value.code(), details.reason, [v.field for v in details.field_violations]


def test_a_programme_declares_fields_and_gives_them_back(api: Members) -> None:
    p = programme_with_fields(api)
    assert list(p.custom_fields) == FIELDS
    got = api.programmes.GetProgramme(programme_pb2.GetProgrammeRequest(programme_id=p.programme_id)).programme
    assert list(got.custom_fields) == FIELDS
    fewer = api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(programme_id=p.programme_id, custom_fields=FIELDS[:1]),
        update_mask={"paths": ["custom_fields"]})).programme
    assert list(fewer.custom_fields) == FIELDS[:1]


@pytest.mark.parametrize(("definition", "field"), [
    (programme_pb2.CustomFieldDefinition(name="Bad Name", type=programme_pb2.CUSTOM_FIELD_TYPE_TEXT),
     "programme.custom_fields[0].name"),
    (programme_pb2.CustomFieldDefinition(name="untyped"), "programme.custom_fields[0].type"),
    (programme_pb2.CustomFieldDefinition(name="club", type=programme_pb2.CUSTOM_FIELD_TYPE_CHOICE),
     "programme.custom_fields[0].choices"),
    (programme_pb2.CustomFieldDefinition(name="club", type=programme_pb2.CUSTOM_FIELD_TYPE_CHOICE,
                                         choices=["a", "a"]), "programme.custom_fields[0].choices[1]"),
    (programme_pb2.CustomFieldDefinition(name="size", type=programme_pb2.CUSTOM_FIELD_TYPE_INTEGER, choices=["1"]),
     "programme.custom_fields[0].choices"),
])
def test_a_bad_declaration_is_refused_with_its_field(api: Members, database_url: str,
                                                     definition: Any, field: str) -> None:
    before = written(database_url)
    code, reason, fields = bad_argument(lambda: api.programme(custom_fields=[definition]))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    assert written(database_url) == before


def test_enrolment_sets_values_and_history_keeps_each(api: Members) -> None:
    p = programme_with_fields(api)
    member = api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north"), value("birthday", "1990-04-21"),
                                                      value("newsletter", "")])
    # In declaration order; an empty value is none.
    assert values_of(member) == {"birthday": "1990-04-21", "favourite_club": "north"}
    assert [v.name for v in member.custom_fields] == ["birthday", "favourite_club"]
    assert values_of(api.member(p.programme_id, member.member_id)) == values_of(member)
    changes = [dict(e.details) for e in api.history(p.programme_id, member.member_id,
                                                    membership_pb2.HISTORY_TAB_PARTICIPATION).events
               if e.kind == "custom_field_changed"]
    assert sorted(changes, key=lambda d: d["name"]) == [
        {"name": "birthday", "from": "", "to": "1990-04-21"}, {"name": "favourite_club", "from": "", "to": "north"}]


@pytest.mark.parametrize(("values", "reason", "field"), [
    ([], "field_required", "custom_fields"),
    ([value("favourite_club", "east")], "value_out_of_range", "custom_fields[0].value"),
    ([value("favourite_club", "north"), value("birthday", "1990-02-30")], "value_out_of_range",
     "custom_fields[1].value"),
    ([value("favourite_club", "north"), value("shoe_size", "042")], "value_out_of_range", "custom_fields[1].value"),
    ([value("favourite_club", "north"), value("newsletter", "yes")], "value_out_of_range", "custom_fields[1].value"),
    ([value("favourite_club", "north"), value("eye_colour", "blue")], "custom_field_not_declared",
     "custom_fields[1].name"),
    ([value("favourite_club", "north"), value("favourite_club", "south")], "value_out_of_range",
     "custom_fields[1].name"),
])
def test_an_enrolment_with_a_bad_value_is_refused_and_writes_nothing(
        api: Members, database_url: str, values: list[Any], reason: str, field: str) -> None:
    p = programme_with_fields(api)
    before = written(database_url)
    assert bad_argument(lambda: api.enrol(p.programme_id, custom_fields=values)) == (
        grpc.StatusCode.INVALID_ARGUMENT, reason, [field])
    assert written(database_url) == before


def test_the_masked_update_changes_clears_and_is_idempotent(api: Members) -> None:
    p = programme_with_fields(api)
    member = api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north"), value("nickname", "Ace")])
    request_id = new_id()
    changed = update(api, p.programme_id, member.member_id,
                     [value("favourite_club", "south"), value("shoe_size", "-3")],
                     ["favourite_club", "custom_fields.shoe_size", "nickname"], request_id, comment="asked at the desk")
    assert values_of(changed) == {"favourite_club": "south", "shoe_size": "-3"}  # nickname cleared, birthday untouched
    assert update(api, p.programme_id, member.member_id, [value("favourite_club", "south"), value("shoe_size", "-3")],
                  ["favourite_club", "custom_fields.shoe_size", "nickname"], request_id,
                  comment="asked at the desk") == changed
    events = api.history(p.programme_id, member.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events
    changes = [(e.details["name"], e.details["from"], e.details["to"], e.comment) for e in events
               if e.kind == "custom_field_changed" and e.comment]
    assert sorted(changes) == [("favourite_club", "north", "south", "asked at the desk"),
                               ("nickname", "Ace", "", "asked at the desk"), ("shoe_size", "", "-3", "asked at the desk")]
    # The same values again change nothing and write no history.
    update(api, p.programme_id, member.member_id, [value("favourite_club", "south")], ["favourite_club"])
    assert len(api.history(p.programme_id, member.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events) == len(events)


@pytest.mark.parametrize(("values", "mask", "reason", "field"), [
    ([], [], "field_required", "update_mask"),
    ([], ["eye_colour"], "custom_field_not_declared", "update_mask"),
    ([], ["favourite_club"], "field_required", "custom_fields"),
    ([value("shoe_size", "7")], ["nickname"], "value_out_of_range", "custom_fields[0].name"),
    ([value("shoe_size", "seven")], ["shoe_size"], "value_out_of_range", "custom_fields[0].value"),
    ([value("birthday", "21/04/1990")], ["birthday"], "value_out_of_range", "custom_fields[0].value"),
])
def test_a_bad_update_is_refused_with_its_field_and_writes_nothing(
        api: Members, database_url: str, values: list[Any], mask: list[str], reason: str, field: str) -> None:
    p = programme_with_fields(api)
    member = api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north"), value("shoe_size", "9")])
    before = written(database_url)
    assert bad_argument(lambda: update(api, p.programme_id, member.member_id, values, mask)) == (
        grpc.StatusCode.INVALID_ARGUMENT, reason, [field])
    assert written(database_url) == before
    assert values_of(api.member(p.programme_id, member.member_id)) == {"shoe_size": "9", "favourite_club": "north"}


def test_members_are_found_by_a_value_page_by_page(api: Members) -> None:
    p = programme_with_fields(api)
    north = [api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north")]).member_id for _ in range(3)]
    api.enrol(p.programme_id, custom_fields=[value("favourite_club", "south")])
    other = programme_with_fields(api)
    api.enrol(other.programme_id, custom_fields=[value("favourite_club", "north")])

    def page(token: str = "") -> member_pb2.ListMembersResponse:
        return api.members.ListMembers(member_pb2.ListMembersRequest(
            programme_id=p.programme_id, custom_field=value("favourite_club", "north"), page_size=2,
            page_token=token))

    first = page()
    second = page(first.next_page_token)
    found = [m.member_id for m in [*first.members, *second.members]]
    assert found == sorted(north) and len(first.members) == 2 and not second.next_page_token  # by member id
    assert values_of(first.members[0]) == {"favourite_club": "north"}
    # With the other filters: every one given must match.
    active = api.members.ListMembers(member_pb2.ListMembersRequest(
        programme_id=p.programme_id, custom_field=value("favourite_club", "north"),
        status=member_pb2.MEMBER_STATUS_DEACTIVATED)).members
    assert list(active) == []
    for name, text, reason, field in (("eye_colour", "blue", "custom_field_not_declared", "custom_field.name"),
                                      ("", "north", "custom_field_not_declared", "custom_field.name"),
                                      ("favourite_club", "east", "value_out_of_range", "custom_field.value"),
                                      ("favourite_club", "", "field_required", "custom_field.value")):
        assert bad_argument(lambda: api.members.ListMembers(member_pb2.ListMembersRequest(
            programme_id=p.programme_id, custom_field=value(name, text)))) == (
            grpc.StatusCode.INVALID_ARGUMENT, reason, [field])


def test_programme_admin_and_member_edit_change_values(api: Members, channel_with: Any) -> None:
    p = programme_with_fields(api)
    member = api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north")])
    till = Members(channel_with("pos"))
    assert refused(lambda: update(till, p.programme_id, member.member_id, [value("nickname", "x")], ["nickname"]))[0] == (
        grpc.StatusCode.PERMISSION_DENIED)
    for right, nickname in (("programme_admin", "x"), ("member_edit", "y")):
        editor = Members(channel_with(right))
        assert values_of(update(editor, p.programme_id, member.member_id, [value("nickname", nickname)],
                                ["nickname"]))["nickname"] == nickname
    # The till finds members by a value.
    assert till.members.ListMembers(member_pb2.ListMembersRequest(
        programme_id=p.programme_id, custom_field=value("nickname", "y"))).members[0].member_id == member.member_id


def test_erasure_removes_the_values_and_export_shows_them(api: Members, channel_with: Any, database_url: str) -> None:
    p = programme_with_fields(api)
    member = api.enrol(p.programme_id, custom_fields=[value("favourite_club", "north"),
                                                      value("nickname", "Zorro-7731")])
    desk = Members(channel_with("privacy"))
    document = json.loads(desk.members.ExportMemberData(export_request(p.programme_id, member.member_id)).document_json)
    assert {(v["name"], v["value"]) for v in document["custom_fields"]} == {
        ("favourite_club", "north"), ("nickname", "Zorro-7731")}
    desk.members.EraseMember(erase_request(p.programme_id, member.member_id))
    assert values_of(api.member(p.programme_id, member.member_id)) == {}
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT count(*) FROM member_event WHERE member_id = %s AND details::text LIKE %s",
                            (member.member_id, "%Zorro-7731%")).fetchone()[0]
    assert left == 0
    assert json.loads(desk.members.ExportMemberData(
        export_request(p.programme_id, member.member_id)).document_json)["custom_fields"] == []
