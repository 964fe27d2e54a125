"""to_json (its field names cached per class) gives what the plain dataclass walk gives, and from_json inverts it."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest

from loyalty_core import model
from loyalty_core.model import from_json, to_json


def reference(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: reference(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [reference(v) for v in value]
    return value


def example(tp: Any, *, none: bool) -> Any:
    """A value of ``tp`` with two items in every tuple; optional fields None when ``none``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if none and len(args) < len(typing.get_args(tp)) else example(args[0], none=none)
    if origin is tuple:
        return tuple(example(typing.get_args(tp)[0], none=none) for _ in range(2))
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: example(hints[f.name], none=none) for f in dataclasses.fields(tp) if f.init})
    return {int: 7, str: "x", bool: True, float: 0.5}.get(tp)


@pytest.mark.parametrize("cls", [model.Order, model.Captured, model.Refunded, model.Cancelled, model.Movement])
@pytest.mark.parametrize("none", [False, True])
def test_to_json_matches_the_plain_walk_and_round_trips(cls: type, none: bool) -> None:
    value = example(cls, none=none)
    assert to_json(value) == reference(value)
    assert to_json(value) == reference(value)  # the second time from the cached field names
    assert from_json(cls, to_json(value)) == value


def test_a_result_stored_before_a_defaulted_field_existed_decodes_with_its_default() -> None:
    value = example(model.Captured, none=False)
    stored = to_json(value)
    del stored["order"]["pricing"]["lines"][0]["sku"]  # a field with no default: still required
    with pytest.raises(TypeError):
        from_json(model.Captured, stored)
    older = to_json(value)
    del older["order"]["spent_points"]
    assert from_json(model.Captured, older).order.spent_points == model.Order.__dataclass_fields__["spent_points"].default
