"""The one list of servicers: add a line here to serve a service. Each is constructed with ``deps``.

Every service declared in protos/loyalty/v1 that no line here claims is still registered, with
its generated base servicer (UNIMPLEMENTED for every method), so that reflection, health, the
guard and the metrics see the whole API from the first day. Every method is registered wrapped
by ``server.guard.Guard``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from loyalty.v1 import (
    certificate_pb2_grpc, checkout_pb2_grpc, event_bonus_pb2_grpc, events_pb2_grpc, member_import_pb2_grpc,
    member_pb2_grpc, membership_pb2_grpc, points_pb2_grpc, programme_pb2_grpc,
)
from server.guard import UNDECODABLE, Guard
from server.servicers.certificate import CertificateServicer
from server.servicers.checkout import CheckoutServicer
from server.servicers.event_bonus import EventBonusServicer
from server.servicers.events import EventServicer
from server.servicers.member import MemberServicer
from server.servicers.member_import import MemberImportServicer
from server.servicers.membership import MembershipServicer
from server.servicers.points import PointsServicer
from server.servicers.programme import ProgrammeServicer

# (add_XServicer_to_server, XServicer) pairs.
SERVICES: list[tuple[Callable[[Any, Any], None], Callable[[Any], Any]]] = [
    (programme_pb2_grpc.add_ProgrammeServiceServicer_to_server, ProgrammeServicer),
    (member_pb2_grpc.add_MemberServiceServicer_to_server, MemberServicer),
    (checkout_pb2_grpc.add_CheckoutServiceServicer_to_server, CheckoutServicer),
    (points_pb2_grpc.add_PointsServiceServicer_to_server, PointsServicer),
    (membership_pb2_grpc.add_MembershipServiceServicer_to_server, MembershipServicer),
    (events_pb2_grpc.add_EventServiceServicer_to_server, EventServicer),
    (event_bonus_pb2_grpc.add_EventBonusServiceServicer_to_server, EventBonusServicer),
    (member_import_pb2_grpc.add_MemberImportServiceServicer_to_server, MemberImportServicer),
    (certificate_pb2_grpc.add_CertificateServiceServicer_to_server, CertificateServicer),
]


@dataclass(frozen=True)
class ServiceStub:
    """A service of our protos: its full name and its generated registration function and base class."""

    full_name: str
    add_to_server: Callable[[Any, Any], None]
    base_servicer: type
    method_names: tuple[str, ...]
    # name -> (request class, response class)
    message_classes: dict[str, tuple[type[Message], type[Message]]]
    # The methods that answer with a stream, and those of them that take one (bidirectional).
    server_streaming: frozenset[str] = frozenset()
    client_streaming: frozenset[str] = frozenset()


def proto_modules() -> list[ModuleType]:
    """Every generated ``loyalty.v1.*_pb2_grpc`` module (none before the stubs are generated)."""
    import loyalty.v1

    names = sorted(m.name for m in pkgutil.iter_modules(loyalty.v1.__path__) if m.name.endswith("_pb2_grpc"))
    return [importlib.import_module(f"loyalty.v1.{n}") for n in names]


def declared_services() -> list[ServiceStub]:
    """Every service declared in our protos, read from the generated descriptors."""
    found = []
    for grpc_module in proto_modules():
        pb2 = importlib.import_module(grpc_module.__name__.removesuffix("_grpc"))
        for short, descriptor in pb2.DESCRIPTOR.services_by_name.items():
            found.append(ServiceStub(
                descriptor.full_name,
                getattr(grpc_module, f"add_{short}Servicer_to_server"),
                getattr(grpc_module, f"{short}Servicer"),
                tuple(descriptor.methods_by_name),
                {name: (GetMessageClass(m.input_type), GetMessageClass(m.output_type))
                 for name, m in descriptor.methods_by_name.items()},
                frozenset(name for name, m in descriptor.methods_by_name.items() if m.server_streaming),
                frozenset(name for name, m in descriptor.methods_by_name.items() if m.client_streaming),
            ))
    return found


def lenient_parser(request_cls: type[Message]) -> Callable[[bytes], Any]:
    """``request_cls.FromString`` that answers UNDECODABLE rather than raising on bytes that do not parse."""
    def parse(raw: bytes) -> Any:
        try:
            return request_cls.FromString(raw)
        except DecodeError:
            return UNDECODABLE
    return parse


def _handler(guard: Guard, method: str, behavior: Any, request_cls: type[Message], response_cls: type[Message], *,
             streaming: bool, bidi: bool) -> grpc.RpcMethodHandler:
    """The method's handler, guarded: unary-unary, unary-stream for a method that streams its answer,
    stream-stream for one that streams both ways (none of ours takes a stream for one answer)."""
    if bidi:
        return grpc.stream_stream_rpc_method_handler(guard.wrap_bidi(method, behavior),
                                                     request_deserializer=lenient_parser(request_cls),
                                                     response_serializer=response_cls.SerializeToString)
    if streaming:
        return grpc.unary_stream_rpc_method_handler(guard.wrap_stream(method, behavior),
                                                    request_deserializer=lenient_parser(request_cls),
                                                    response_serializer=response_cls.SerializeToString)
    return grpc.unary_unary_rpc_method_handler(guard.wrap(method, behavior),
                                               request_deserializer=lenient_parser(request_cls),
                                               response_serializer=response_cls.SerializeToString)


def register_all(server: Any, deps: Any, guard: Guard) -> list[str]:
    """Register SERVICES, then base servicers for the rest, every method wrapped by ``guard``;
    return every full service name."""
    servicers = {add: servicer_cls(deps) for add, servicer_cls in SERVICES}
    names = []
    for stub in declared_services():
        servicer = servicers.get(stub.add_to_server) or stub.base_servicer()
        # Registered here rather than by the generated add_*_to_server so that a request that
        # does not parse reaches the guard (as UNDECODABLE) instead of grpc's own UNKNOWN + traceback.
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(stub.full_name, {
            name: _handler(guard, f"/{stub.full_name}/{name}", getattr(servicer, name), request_cls, response_cls,
                           streaming=name in stub.server_streaming, bidi=name in stub.client_streaming)
            for name, (request_cls, response_cls) in stub.message_classes.items()
        }),))
        names.append(stub.full_name)
    return names
