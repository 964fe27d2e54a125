"""Settings: read once from LOYALTY_* variables; the README lists every one with its default."""

import re
from collections import Counter
from pathlib import Path

import pytest

from loyalty_core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.grpc_addr == "127.0.0.1:50051"
    assert s.metrics_addr == "127.0.0.1:9464"
    assert s.data_dir == Path(".loyalty-data")


def test_variables_are_parsed_by_type():
    s = Settings.from_env({
        "LOYALTY_SHUTDOWN_GRACE_S": "2.5", "LOYALTY_POOL_MAX_SIZE": "7", "LOYALTY_MIGRATE_ON_START": "false",
        "LOYALTY_DATA_DIR": "/tmp/x", "LOYALTY_DATABASE_URL": "", "UNRELATED": "1",
    })
    assert (s.shutdown_grace_s, s.pool_max_size, s.migrate_on_start) == (2.5, 7, False)
    assert s.data_dir == Path("/tmp/x")
    assert s.database_url is None  # empty counts as unset


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(AttributeError):
        s.grpc_addr = "x"  # type: ignore[misc]


@pytest.mark.parametrize("env, name", [
    ({"LOYALTY_POOL_MAX_SIZE": "ten"}, "LOYALTY_POOL_MAX_SIZE"),
    ({"LOYALTY_MIGRATE_ON_START": "maybe"}, "LOYALTY_MIGRATE_ON_START"),
    ({"LOYALTY_GRPC_ADDR": "50051"}, "LOYALTY_GRPC_ADDR"),
    ({"LOYALTY_SHUTDOWN_GRACE_S": "0"}, "LOYALTY_SHUTDOWN_GRACE_S"),
    ({"LOYALTY_POOL_MIN_SIZE": "5", "LOYALTY_POOL_MAX_SIZE": "2"}, "LOYALTY_POOL_MAX_SIZE"),
])
def test_a_bad_value_is_refused_naming_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        Settings.from_env(env)


def test_readme_lists_every_variable_with_its_default():
    text = README.read_text()
    listed = re.findall(r"^\| `(LOYALTY_[A-Z_]+)` \| ([^|]*) \|", text, re.M)
    rows = dict(listed)
    twice = [name for name, count in Counter(name for name, _ in listed).items() if count > 1]
    assert not twice, f"README's configuration table lists {twice} more than once"
    for name, default in Settings.env_names().items():
        assert name in rows, f"README's configuration table lacks {name}"
        shown = rows[name].strip().strip("`")
        expected = ("(unset)" if default is None else "(empty)" if default == "" else
                    str(default).lower() if isinstance(default, bool) else str(default))
        assert shown == expected, f"README says {name} defaults to {shown!r}, the code says {expected!r}"
