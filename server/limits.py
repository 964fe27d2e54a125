"""Limits on everything a caller controls in a request: list lengths, string lengths, page sizes, times.

One walk over the fields a request actually set, before any servicer sees it, so a new RPC is
bounded from its first day. Servicers still check their own ranges (quantity >= 1, ...); these
are the outer walls. The transport refuses messages over ``grpc.max_receive_message_length``
(RESOURCE_EXHAUSTED) before they are even parsed.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from loyalty_core import errors

# Basket lines, refund lines, history kinds, a programme's stores and rules: 500 at most.
MAX_REPEATED = 500
MAX_PAGE_SIZE = 500
# Ids, phone and card numbers, SKUs, categories, codes, tokens.
MAX_STRING_CHARS = 256
# Free text an operator writes.
MAX_TEXT_CHARS = 2000
TEXT_FIELDS = frozenset({"comment"})
# google.protobuf.Timestamp's own valid range (0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z).
TIMESTAMP = "google.protobuf.Timestamp"
MIN_TIMESTAMP_S = -62_135_596_800
MAX_TIMESTAMP_S = 253_402_300_799


def check(request: Message) -> None:
    """Raise ``InvalidArgument`` naming the first field (as a path) over its limit."""
    # Every call pays for the walk, so it first runs without building the fields' paths; only a
    # request over a limit walks again to name the first field over it.
    if not _within(request):
        _check(request, "")


def _within(message: Message) -> bool:
    """True when no field is over its limit: what ``_check`` checks, without paths."""
    return _walker(message.DESCRIPTOR)(message)


# Per message type, the checks its fields need, built once: a scalar that is not page_size
# needs none, and a string field is read by name rather than found by a walk over every field.
_WALKERS: dict[str, Callable[[Message], bool]] = {}


def _walker(descriptor: Descriptor) -> Callable[[Message], bool]:
    walk = _WALKERS.get(descriptor.full_name)
    if walk is None:
        walk = _WALKERS[descriptor.full_name] = _compile(descriptor)
    return walk


def _compile(descriptor: Descriptor) -> Callable[[Message], bool]:
    steps = [step for field in descriptor.fields if (step := _step(field)) is not None]

    def walk(message: Message) -> bool:
        for step in steps:
            if not step(message):
                return False
        return True

    return walk


def _step(field: FieldDescriptor) -> Callable[[Message], bool] | None:
    """The check of one field, or None when it needs none."""
    name = field.name
    if field.is_repeated:
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                item = value_field.message_type
                within: Callable[[object], bool] = lambda x: _walker(item)(x)
            elif value_field.type == FieldDescriptor.TYPE_STRING:
                within = lambda x: _string_within(x, name)
            else:
                within = lambda x: True
            return lambda m: len(v := getattr(m, name)) <= MAX_REPEATED and all(
                (_string_within(k, name) if isinstance(k, str) else True) and within(x) for k, x in v.items())
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = field.message_type
            return lambda m: len(v := getattr(m, name)) <= MAX_REPEATED and all(_walker(item)(x) for x in v)
        if field.type == FieldDescriptor.TYPE_STRING:
            return lambda m: len(v := getattr(m, name)) <= MAX_REPEATED and all(_string_within(x, name) for x in v)
        return lambda m: len(getattr(m, name)) <= MAX_REPEATED
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = field.message_type
        if sub.full_name == TIMESTAMP:
            return lambda m: not m.HasField(name) or (
                MIN_TIMESTAMP_S <= (v := getattr(m, name)).seconds <= MAX_TIMESTAMP_S and 0 <= v.nanos < 1_000_000_000)
        return lambda m: not m.HasField(name) or _walker(sub)(getattr(m, name))
    if field.type == FieldDescriptor.TYPE_STRING:
        limit = MAX_TEXT_CHARS if name in TEXT_FIELDS else MAX_STRING_CHARS
        return lambda m: len(v := getattr(m, name)) <= limit and "\x00" not in v
    if name == "page_size":
        return lambda m: 0 <= getattr(m, name) <= MAX_PAGE_SIZE
    return None


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _string_within(value: str, name: str) -> bool:
    return len(value) <= (MAX_TEXT_CHARS if name in TEXT_FIELDS else MAX_STRING_CHARS) and "\x00" not in value


def _check(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.is_repeated:
            if len(value) > MAX_REPEATED:
                raise errors.InvalidArgument(
                    "too_many_items", f"{path} has {len(value)} items; at most {MAX_REPEATED}", field=path
                )
            if _is_map(field):
                for key, item in value.items():
                    if isinstance(key, str):
                        _check_string(key, path, field.name)
                    if isinstance(item, Message):
                        _check(item, f"{path}[{key!r}].")
                    elif isinstance(item, str):
                        _check_string(item, f"{path}[{key!r}]", field.name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for i, item in enumerate(value):
                    _check(item, f"{path}[{i}].")
            elif field.type == FieldDescriptor.TYPE_STRING:
                for i, item in enumerate(value):
                    _check_string(item, f"{path}[{i}]", field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name == TIMESTAMP:
                _check_timestamp(value, path)
            _check(value, path + ".")
        elif field.type == FieldDescriptor.TYPE_STRING:
            _check_string(value, path, field.name)
        elif field.name == "page_size" and not 0 <= value <= MAX_PAGE_SIZE:
            raise errors.InvalidArgument(
                "value_out_of_range", f"page_size must be 0..{MAX_PAGE_SIZE} (0 means the default)", field=path
            )


def _check_timestamp(value: Message, path: str) -> None:
    # Outside 0001-01-01..9999-12-31 a Timestamp cannot become a datetime (nor a PostgreSQL time).
    if not (MIN_TIMESTAMP_S <= value.seconds <= MAX_TIMESTAMP_S and 0 <= value.nanos < 1_000_000_000):
        raise errors.InvalidArgument(
            "value_out_of_range", f"{path} must be a time between years 0001 and 9999", field=path
        )


def _check_string(value: str, path: str, name: str) -> None:
    limit = MAX_TEXT_CHARS if name in TEXT_FIELDS else MAX_STRING_CHARS
    if len(value) > limit:
        raise errors.InvalidArgument(
            "value_too_long", f"{path} is {len(value)} characters; at most {limit}", field=path
        )
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL, and no id, code or comment of ours needs it.
        raise errors.InvalidArgument("value_out_of_range", f"{path} must not contain NUL characters", field=path)
