"""loyalty-client: call any loyalty.v1 RPC from a shell with a JSON request, for operators."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor

import loyalty.v1
from loyalty.client import RetryPolicy, call_with_retry, open_channel


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


def call(target: str, api_key: str | None, name: str, request_json: str, timeout_s: float) -> str:
    """Send one request (JSON in protobuf's mapping) and return the response as JSON."""
    method = methods().get(name)
    if method is None:
        raise SystemExit(f"loyalty-client: no RPC named {name!r}; `loyalty-client methods` lists them")
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(request_json, request_cls())
    with open_channel(target, api_key=api_key) as channel:
        rpc = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        try:
            response = call_with_retry(rpc, request, RetryPolicy(), timeout=timeout_s)
        except grpc.RpcError as err:
            raise SystemExit(f"loyalty-client: {err.code().name}: {err.details()}") from None
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loyalty-client", description=__doc__)
    parser.add_argument("--target", default=os.environ.get("LOYALTY_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--timeout-s", type=float, default=10.0)
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
    print(call(args.target, os.environ.get("LOYALTY_API_KEY"), args.method, request_json, args.timeout_s))


if __name__ == "__main__":
    main()
