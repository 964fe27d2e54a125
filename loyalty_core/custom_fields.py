"""Custom fields (seed 001's "campos personalizados"): a programme's declarations and a member's values,
checked against them and kept in one canonical text form per type."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence

from loyalty_core.errors import InvalidArgument
from loyalty_core.model import CustomField, CustomValue

TYPES = ("text", "integer", "boolean", "date", "choice")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Put a limit on everything: fields per programme, choices per field, a value's length.
MAX_FIELDS = 100
MAX_CHOICES = 100
MAX_VALUE_LEN = 1000
INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def check_declarations(fields: Sequence[CustomField], path: str) -> None:
    """A programme's declarations: named once each, of a known type, a choice with its choices."""
    if len(fields) > MAX_FIELDS:
        raise InvalidArgument("too_many_items", f"at most {MAX_FIELDS} custom fields", field=path)
    seen: set[str] = set()
    for i, f in enumerate(fields):
        at = f"{path}[{i}]"
        if not NAME.match(f.name) or f.name in seen:
            raise InvalidArgument("value_out_of_range", f"a custom field's name is 1..64 of a-z, 0-9 and _, starting "
                                  f"with a letter, and unique; {f.name!r} is not", field=f"{at}.name")
        seen.add(f.name)
        if f.type not in TYPES:
            raise InvalidArgument("field_required", f"type must be one of {', '.join(TYPES)}", field=f"{at}.type")
        if f.type == "choice":
            if not 1 <= len(f.choices) <= MAX_CHOICES:
                raise InvalidArgument("value_out_of_range", f"a choice field lists 1..{MAX_CHOICES} choices",
                                      field=f"{at}.choices")
            for j, choice in enumerate(f.choices):
                if not 1 <= len(choice) <= MAX_VALUE_LEN or choice in f.choices[:j]:
                    raise InvalidArgument("value_out_of_range", "choices are 1..1000 characters, each once",
                                          field=f"{at}.choices[{j}]")
        elif f.choices:
            raise InvalidArgument("value_out_of_range", "only a choice field lists choices", field=f"{at}.choices")


def canonical(declared: CustomField, value: str) -> str:
    """``value`` in the canonical form of the field's type, or ValueError saying what it must be:
    text as given; an integer in decimal without leading zeros or '+'; a boolean "true" or "false";
    a date YYYY-MM-DD that exists; a choice one of the declared choices, exactly."""
    if declared.type == "integer":
        if not INTEGER.match(value):
            raise ValueError("an integer in decimal, e.g. 42 or -7, of at most 18 digits")
    elif declared.type == "boolean":
        if value not in ("true", "false"):
            raise ValueError('"true" or "false"')
    elif declared.type == "date":
        try:
            if not DATE.match(value):
                raise ValueError
            datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError("a date YYYY-MM-DD, e.g. 1990-04-21") from None
    elif declared.type == "choice":
        if value not in declared.choices:
            raise ValueError(f"one of {', '.join(declared.choices)}")
    elif len(value) > MAX_VALUE_LEN:
        raise ValueError(f"text of at most {MAX_VALUE_LEN} characters")
    return value


def checked_values(declared: Sequence[CustomField], values: Sequence[CustomValue], path: str) -> dict[str, str]:
    """The values given (``path[i]`` names the i-th), by name, checked against their declarations;
    an empty value means "none" (clearing the field)."""
    if len(values) > MAX_FIELDS:
        raise InvalidArgument("too_many_items", f"at most {MAX_FIELDS} custom field values", field=path)
    by_name = {f.name: f for f in declared}
    checked: dict[str, str] = {}
    for i, v in enumerate(values):
        field = by_name.get(v.name)
        if field is None:
            raise InvalidArgument("custom_field_not_declared", f"the programme declares no custom field {v.name!r}",
                                  field=f"{path}[{i}].name")
        if v.name in checked:
            raise InvalidArgument("value_out_of_range", f"custom field {v.name!r} is given twice",
                                  field=f"{path}[{i}].name")
        if v.value:
            try:
                canonical(field, v.value)
            except ValueError as why:
                raise InvalidArgument("value_out_of_range", f"custom field {v.name!r} ({field.type}) must be {why}",
                                      field=f"{path}[{i}].value") from None
        checked[v.name] = v.value
    return checked


def check_wanted(declared: Sequence[CustomField], wanted: CustomValue, path: str) -> None:
    """A value to find members by (``path``.name, ``path``.value): a declared field, a value of its type."""
    field = next((f for f in declared if f.name == wanted.name), None)
    if field is None:
        raise InvalidArgument("custom_field_not_declared", f"the programme declares no custom field {wanted.name!r}",
                              field=f"{path}.name")
    if not wanted.value:
        raise InvalidArgument("field_required", f"give the value of {wanted.name!r} to find", field=f"{path}.value")
    try:
        canonical(field, wanted.value)
    except ValueError as why:
        raise InvalidArgument("value_out_of_range", f"custom field {wanted.name!r} ({field.type}) holds {why}",
                              field=f"{path}.value") from None


def missing_required(declared: Sequence[CustomField], values: Mapping[str, str]) -> str | None:
    """The first required field without a value in ``values`` (name -> value, '' for none)."""
    return next((f.name for f in declared if f.required and not values.get(f.name)), None)


def shown(declared: Sequence[CustomField], stored: Mapping[str, str]) -> tuple[CustomValue, ...]:
    """The member's values of the fields the programme declares now, in declaration order; a value of a
    field no longer declared is kept (exported, erased) but not shown."""
    return tuple(CustomValue(f.name, stored[f.name]) for f in declared if f.name in stored)
