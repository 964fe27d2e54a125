"""The rights table covers every RPC of every registered service, and nothing else."""

import ast
import importlib
import inspect
from collections import Counter

from loyalty_core.store.keys import RIGHTS
from server import rights, services


def served_methods() -> dict[str, object]:
    """Full method name -> descriptor, for every method of every service the server registers."""
    found = {}
    for stub in services.declared_services():
        module = importlib.import_module(stub.add_to_server.__module__.removesuffix("_grpc"))
        service = module.DESCRIPTOR.services_by_name[stub.full_name.rpartition(".")[2]]
        for method in service.methods:
            found[f"/{service.full_name}/{method.name}"] = method
    return found


def test_every_rpc_has_a_rule():
    methods = served_methods()
    assert methods, "no generated stubs found"
    missing = sorted(set(methods) - set(rights.RULES))
    assert not missing, f"RPCs without a right in server/rights.py: {missing}"


def test_no_rpc_is_listed_twice():
    # A dict literal keeps the last of two equal keys without a word: two branches adding the same
    # RPC would leave one rule silently ignored. Read the table's source to catch it.
    tree = ast.parse(inspect.getsource(rights))
    (table,) = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "RULES"]
    twice = [k for k, n in Counter(key.value for key in table.keys).items() if n > 1]
    assert not twice, f"listed more than once in server/rights.py: {twice}"


def test_every_rule_names_a_served_rpc():
    stale = sorted(set(rights.RULES) - set(served_methods()))
    assert not stale, f"rules for RPCs that no longer exist: {stale}"


def test_every_rpc_has_the_guard_of_its_shape():
    # The guard wraps unary methods, methods that stream their answer and methods that stream both
    # ways (server.guard.Guard.wrap, wrap_stream and wrap_bidi); a method that streams requests for
    # one answer would reach no guard.
    methods = served_methods()
    assert not [name for name, m in methods.items() if m.client_streaming and not m.server_streaming]
    for kind, shapes in (("server_streaming", lambda m: m.server_streaming),
                         ("client_streaming", lambda m: m.client_streaming)):
        declared = {stub.full_name: getattr(stub, kind) for stub in services.declared_services()}
        assert {name for name, m in methods.items() if shapes(m)} == {
            f"/{service}/{name}" for service, names in declared.items() for name in names}


def test_rules_use_known_rights_and_programme_fields():
    methods = served_methods()
    for name, rule in rights.RULES.items():
        assert rule.rights and rule.rights <= set(RIGHTS), name
        if rule.programme_field == rights.EVERY_PROGRAMME:
            continue
        message = methods[name].input_type
        for part in rule.programme_field.split("."):
            field = message.fields_by_name[part]
            message = field.message_type
        assert field.type == field.TYPE_STRING, name


def test_every_right_allows_something():
    granted = set().union(*(rule.rights for rule in rights.RULES.values()))
    assert granted == set(RIGHTS)


def test_read_only_reads_everything_and_writes_nothing():
    for name, rule in rights.RULES.items():
        method = name.rpartition("/")[2]
        is_read = method.startswith(("Get", "List", "Lookup", "Verify"))
        assert ("read_only" in rule.rights) == is_read, name


def test_health_and_reflection_are_public_and_ours_are_not():
    assert rights.is_public("/grpc.health.v1.Health/Check")
    assert rights.is_public("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not any(rights.is_public(name) for name in served_methods())
