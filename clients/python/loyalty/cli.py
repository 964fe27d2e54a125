"""loyalty-client: call any loyalty.v1 RPC from a shell with a JSON request, for operators."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor

import loyalty.v1
from loyalty.client import RetryPolicy, call_with_retry, open_channel
from loyalty.errors import refusal


def methods() -> dict[str, MethodDescriptor]:
    """Every RPC of the generated protos, by ``Service.Method`` and by full ``loyalty.v1.Service.Method``."""
    found: dict[str, MethodDescriptor] = {}
    for info in pkgutil.iter_modules(loyalty.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"loyalty.v1.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    found[f"{service.name}.{method.name}"] = method
                    found[method.full_name] = method
    return found


@dataclass(frozen=True)
class Connection:
    """Where and how the command line connects (its --target and TLS options, the key from the environment)."""

    target: str
    api_key: str | None = None
    tls: bool = False
    ca_file: str | None = None
    server_name: str | None = None

    def open(self) -> grpc.Channel:
        try:
            roots = Path(self.ca_file).read_bytes() if self.ca_file else None
        except OSError as err:
            raise SystemExit(f"loyalty-client: cannot read --ca-file: {err}") from None
        # A CA file or a server name only makes sense over TLS, so either one asks for it.
        return open_channel(self.target, api_key=self.api_key, root_certificates=roots,
                            tls=self.tls or bool(self.server_name), server_name=self.server_name)


def explain(err: grpc.RpcError) -> str:
    """A refusal as an operator reads it: the code, the reason (docs/errors.md), the message, then one
    line per bad field."""
    found = refusal(err)
    head = " ".join(part for part in (found.code.name, found.reason) if part)
    lines = [f"loyalty-client: {head}: {found.message}"]
    lines += [f"  {v.field}: {v.reason}: {v.description}" for v in found.field_violations]
    return "\n".join(lines)


def call(connection: Connection, name: str, request_json: str, timeout_s: float) -> str:
    """Send one request (JSON in protobuf's mapping) and return the response as JSON."""
    method = methods().get(name)
    if method is None:
        raise SystemExit(f"loyalty-client: no RPC named {name!r}; `loyalty-client methods` lists them")
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    try:
        request = json_format.Parse(request_json, request_cls())
    except json_format.ParseError as err:
        raise SystemExit(f"loyalty-client: the request is not a {method.input_type.name}: {err}") from None
    with connection.open() as channel:
        rpc = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        try:
            response = call_with_retry(rpc, request, RetryPolicy(), timeout=timeout_s)
        except grpc.RpcError as err:
            raise SystemExit(explain(err)) from None
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True)


def main(argv: list[str] | None = None) -> None:
    """Exit 0 with the response as JSON on stdout, or non-zero with the refusal on stderr."""
    parser = argparse.ArgumentParser(prog="loyalty-client", description=__doc__)
    parser.add_argument("--target", default=os.environ.get("LOYALTY_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--timeout-s", type=float, default=10.0)
    tls = parser.add_argument_group("TLS (the server's LOYALTY_TLS_CERT_FILE; docs/trust.md)")
    tls.add_argument("--tls", action="store_true", help="connect over TLS, trusting the system's roots")
    tls.add_argument("--ca-file", help="PEM file of the roots to trust instead (a private CA, a self-signed "
                     "certificate); implies --tls")
    tls.add_argument("--server-name", help="the name the server's certificate carries when it is not the "
                     "target's host (an address, a tunnel); implies --tls")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list every RPC")
    call_parser = sub.add_parser("call", help="call an RPC; the API key comes from LOYALTY_API_KEY")
    call_parser.add_argument("method", help="Service.Method, e.g. MemberService.GetBalance")
    call_parser.add_argument("request", nargs="?", default="{}", help="the request as JSON ('-' reads stdin)")
    args = parser.parse_args(argv)
    if args.command == "methods":
        print("\n".join(sorted(name for name in methods() if not name.startswith("loyalty."))))
        return
    request_json = sys.stdin.read() if args.request == "-" else args.request
    try:
        json.loads(request_json)
    except ValueError as err:
        raise SystemExit(f"loyalty-client: the request is not JSON: {err}") from None
    connection = Connection(args.target, os.environ.get("LOYALTY_API_KEY"), args.tls, args.ca_file, args.server_name)
    print(call(connection, args.method, request_json, args.timeout_s))


if __name__ == "__main__":
    main()
