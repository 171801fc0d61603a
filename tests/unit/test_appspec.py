"""The app schema's validator (plugins/module_utils/app_spec.py, through rollback_ops.appspec):
types, choices, required, nested options, defaults from the spec file, each cross-field rule,
and errors naming the file and the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import appspec, inventory
from rollback_ops.exceptions import ConfigError

validator = appspec.validator

APP: dict[str, Any] = {
    "name": "shop",
    "env_file": "/srv/shop/.env",
    "master_switch": "SHOP_ON",
    "flags": ["SHOP_A"],
    "emergency": {"APP_MODE": "research"},
    "units": ["shop"],
    "code": {"path": "/opt/shop", "git": {}},
    "databases": [
        {"name": "main", "engine": "postgresql", "database": "shop", "password_env": "SHOP_PW"},
        {"name": "events", "engine": "sqlite", "path": "/srv/shop/events.db"},
    ],
    "backup": {"files": ["/srv/shop/.env", "/etc/shop.yml"]},
    "config": {"files": ["/etc/shop.yml"], "caches": [{"redis": {"db": 2}}]},
}


REMOVE = object()


def problems(**change: Any) -> dict[str, str]:
    """The problems of APP with some top-level keys changed (REMOVE: removed)."""
    app = copy.deepcopy(APP)
    for key, value in change.items():
        if value is REMOVE:
            del app[key]
        else:
            app[key] = value
    _, found = validator.validate_app(app)
    return dict(found)


def test_a_valid_app_gets_every_default_of_the_spec_file():
    app, found = validator.validate_app(copy.deepcopy(APP))
    assert found == []
    spec = yaml.safe_load(Path(validator.SPEC_FILE).read_text())
    options = spec["argument_specs"]["main"]["options"]["rollback_app"]["options"]
    assert app["health"]["retries"] == options["health"]["options"]["retries"]["default"] == 30
    assert app["drain_timeout"] == options["drain_timeout"]["default"] == 30
    assert app["code"]["git"] == {
        "mode": "checkout",
        "release_tags": "*",
        "paths": [],
        "remove_added": False,
        "remove": [],
    }
    assert app["code"]["deps"] == {"requirements": "", "venv": "", "pip_args": ""}
    assert "files" not in app["code"]  # no default, not set: absent
    assert app["databases"][0]["lock_wait_timeout"] == 60
    assert "host" not in app["databases"][0]
    assert app["config"]["caches"] == [{"redis": {"db": 2, "host": "127.0.0.1", "port": 6379}}]
    assert app["backup"]["root"] == "/var/backups/rollback-ops"
    assert app["verify"] == "checks"
    assert app["master_switch_off"] == "false"


def test_the_app_spec_is_built_from_the_normalized_app(tmp_path: Path):
    spec = appspec.build(validator.validate_app(copy.deepcopy(APP))[0])
    assert spec.drain_timeout == 30 and spec.health.timeout == 5
    assert spec.code.method == "git" and spec.code.git_mode == "checkout"
    assert [d.target for d in spec.databases] == ["shop", "/srv/shop/events.db"]
    assert spec.config.caches[0].description == "redis FLUSHDB 2 on 127.0.0.1:6379"
    assert spec.is_secret("SHOP_PASSWORD") and not spec.is_secret("SHOP_A")
    assert spec.declared_keys == ["SHOP_ON", "SHOP_A", "APP_MODE"]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        # types are strict: no conversion of what a person wrote
        ({"units": "shop"}, "units", "must be a list of strings, not 'shop'"),
        ({"units": ["a", 3]}, "units[1]", "must be a string, not 3"),
        ({"units": [""]}, "units[0]", "must not be empty"),
        ({"name": ["x"]}, "name", "must be a string, not a list"),
        ({"name": True}, "name", "must be a string, not True"),
        ({"drain_timeout": "30"}, "drain_timeout", "must be a whole number >= 0, not '30'"),
        ({"drain_timeout": True}, "drain_timeout", "must be a whole number >= 0, not True"),
        ({"drain_timeout": -1}, "drain_timeout", "must be a whole number >= 0, not -1"),
        ({"health": "http://x"}, "health", "must be a mapping, not 'http://x'"),
        ({"health": {"timeout": 1.5}}, "health.timeout", "must be a whole number >= 0, not 1.5"),
        # required, choices, unknown keys, nested options
        ({"name": REMOVE}, "name", "is required"),
        ({"name": None}, "name", "is required"),
        ({"verify": "some"}, "verify", "must be checks or none, not 'some'"),
        ({"heath": {}}, "heath", "unknown key (allowed: backup, code, config, databases,"),
        ({"code": {"git": {}}}, "code.path", "is required"),
        ({"code": {"path": "/x"}}, "code", "needs exactly one of git or files"),
        (
            {"code": {"path": "/x", "git": {}, "files": {"restore": ["a"]}}},
            "code",
            "needs exactly one of git or files",
        ),
        ({"code": {"path": "/x", "git": {"mode": "reset"}}}, "code.git.mode", "must be checkout"),
        (
            {"databases": [{"name": "d", "engine": "oracle", "database": "x"}]},
            "databases[0].engine",
            "must be one of postgresql, sqlite, mysql, not 'oracle'",
        ),
        (
            {"databases": [{"name": "d", "engine": "sqlite"}]},
            "databases[0].path",
            "is required when engine is sqlite",
        ),
        (
            {"databases": [{"name": "d", "engine": "mysql", "path": "/x"}]},
            "databases[0].database",
            "is required when engine is mysql",
        ),
        (
            {"databases": [{"engine": "sqlite", "path": "/x", "integrity_checks": [{"sql": "s"}]}]},
            "databases[0].integrity_checks[0].name",
            "is required",
        ),
        (
            {"docker": {"images": [{"tag": "t", "nocache": "yes"}]}},
            "docker.images[0].nocache",
            "must be true or false, not 'yes'",
        ),
        (
            {"config": {"caches": [{"redis": {}, "command": ["x"]}]}},
            "config.caches[0]",
            "needs exactly one of redis or command",
        ),
        (
            {"maintenance": {"enable_command": ["on"]}},
            "maintenance",
            "enable_command and disable_command go together",
        ),
    ],
)
def test_the_spec_checks_name_the_key(change: dict[str, Any], path: str, message: str):
    found = problems(**change)
    assert found.get(f"rollback_app.{path}", "").startswith(message), found


@pytest.mark.parametrize(
    ("rule", "change", "path", "message"),
    [
        ("absolute paths", {"env_file": "app/.env"}, "env_file", "must be an absolute path"),
        (
            "absolute paths",
            {"backup": {"files": ["/a", "b"]}, "config": {}},
            "backup.files[1]",
            "must be an absolute path, not 'b'",
        ),
        ("env_keys", {"flags": ["OK", "bad-flag"]}, "flags[1]", "'bad-flag' is not a valid env"),
        ("env_keys", {"master_switch": "A B"}, "master_switch", "'A B' is not a valid env key"),
        ("env_keys", {"emergency": {"1X": "y"}}, "emergency.1X", "'1X' is not a valid env key"),
        (
            "env_keys",
            {"databases": [{"name": "d", "engine": "sqlite", "path": "/d", "password_env": "P-W"}]},
            "databases[0].password_env",
            "'P-W' is not an env variable name",
        ),
        ("env_values", {"master_switch_off": None}, "master_switch_off", "has no value (null)"),
        ("env_values", {"emergency": {"M": [1]}}, "emergency.M", "must be a string, number or"),
        ("env_values", {"emergency": {"M": "a\nb"}}, "emergency.M", "holds the control character"),
        ("env_values", {"emergency": {"M": "a\x00"}}, "emergency.M", "holds the control character"),
        ("patterns_compile", {"log": {"error_pattern": "("}}, "log.error_pattern", "not a valid"),
        (
            "code_files",
            {"code": {"path": "/c", "files": {"restore": ["../etc"]}}},
            "code.files.restore[0]",
            "'../etc' must be relative to code.path",
        ),
        ("code_files", {"code": {"path": "/c", "files": {}}}, "code.files", "lists nothing"),
        (
            "maintenance_env",
            {"env_file": REMOVE, "maintenance": {"env": {"M": "1"}, "env_off": {"M": "0"}}},
            "maintenance.env",
            "needs rollback_app.env_file",
        ),
        (
            "maintenance_env",
            {"maintenance": {"env": {"M": "1"}}},
            "maintenance.env_off",
            "must set the same keys as maintenance.env",
        ),
        (
            "config_files_backed_up",
            {"config": {"files": ["/etc/other.yml"]}},
            "config.files[0]",
            "/etc/other.yml is not in backup.files, so no set holds it",
        ),
        (
            "database_names",
            {
                "databases": [
                    {"name": "d", "engine": "sqlite", "path": "/a"},
                    {"name": "d", "engine": "sqlite", "path": "/b"},
                ]
            },
            "databases[1].name",
            "'d' must be unique and a simple name",
        ),
        (
            "cache_commands",
            {"config": {"caches": [{"command": []}]}},
            "config.caches[0].command",
            "must be a non-empty argv list",
        ),
        (
            "spec: mutually_exclusive",
            {
                "databases": [
                    {
                        "name": "d",
                        "engine": "sqlite",
                        "path": "/d",
                        "password": "p",
                        "password_env": "P",
                    }
                ]
            },
            "databases[0]",
            "give only one of password or password_env",
        ),
    ],
)
def test_each_cross_field_rule(rule: str, change: dict[str, Any], path: str, message: str):
    found = problems(**change)
    assert message in found.get(f"rollback_app.{path}", ""), (rule, found)


def test_every_problem_is_reported_at_once():
    found = problems(
        units="x", drain_timeout=-1, heath={}, code={"path": "rel", "git": {"mode": "x"}}
    )
    assert set(found) == {
        "rollback_app.units",
        "rollback_app.drain_timeout",
        "rollback_app.heath",
        "rollback_app.code.path",
        "rollback_app.code.git.mode",
    }


def test_env_values_are_normalized_to_the_strings_written():
    app, found = validator.validate_app(
        {**APP, "master_switch_off": False, "emergency": {"N": 3, "B": True}}
    )
    assert found == []
    assert (app["master_switch_off"], app["emergency"]) == ("false", {"N": "3", "B": "true"})


def test_the_lock_wait_timeout_the_backup_role_documents_is_accepted():
    db = {"name": "m", "engine": "postgresql", "database": "m", "lock_wait_timeout": 5}
    app, found = validator.validate_app({**APP, "databases": [db]})
    assert found == [] and app["databases"][0]["lock_wait_timeout"] == 5


def test_not_a_mapping_and_not_set():
    assert validator.validate_app(["x"]) == (
        None,
        [("rollback_app", "must be a mapping, not a list")],
    )
    assert validator.validate_app(None) == (None, [("rollback_app", "is not set")])


def test_errors_name_the_inventory_file_the_key_and_the_host(tmp_path: Path):
    group_vars = tmp_path / "group_vars"
    group_vars.mkdir()
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    web1:\n    web2:\n")
    (group_vars / "all.yml").write_text(
        yaml.safe_dump(
            {
                "rollback_environment": "staging",
                "rollback_app": {**APP, "drain_timeout": "soon", "verify": "never"},
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        appspec.parse_inventory(inventory.load(str(tmp_path), tmp_path / "state"))
    lines = str(err.value).splitlines()
    where = group_vars / "all.yml"
    for host in ("web1", "web2"):
        assert (
            f"  {where}: rollback_app.drain_timeout: must be a whole number >= 0, not 'soon' "
            f"(host {host})"
        ) in lines
        assert (
            f"  {where}: rollback_app.verify: must be checks or none, not 'never' (host {host})"
            in lines
        )


def test_the_shipped_inventories_normalize(tmp_path: Path):
    app = appspec.parse_inventory(inventory.load("staging", tmp_path))["staging-api-1"]
    assert app.normalized["health"]["retries"] == 30
    assert app.drain_timeout == 30


def test_rollback_notify_and_rollback_thresholds_are_validated_by_the_same_file():
    notify, found = validator.validate("rollback_notify", {"webhook": {"url_env": "HOOK"}})
    assert found == [] and notify == {"webhook": {"url": "", "url_env": "HOOK"}}
    notify, found = validator.validate("rollback_notify", {"email": {"host": "h", "to": "a@x"}})
    assert found == [] and notify["email"]["to"] == ["a@x"]
    assert notify["email"]["port"] == 25 and notify["email"]["from"] == "rollback-ops@localhost"
    _, found = validator.validate(
        "rollback_notify", {"email": {"host": "h", "to": ["a@x"], "password": "pw"}}
    )
    assert found == [
        (
            "rollback_notify.email.password",
            "put the password in an environment variable and name it in password_env",
        )
    ]
    _, found = validator.validate("rollback_notify", {"webhook": {"url": "file:///etc/passwd"}})
    assert found == [("rollback_notify.webhook.url", "must be http:// or https://")]
    _, found = validator.validate("rollback_notify", {"webhook": {}})
    assert found == [("rollback_notify.webhook", "needs exactly one of url or url_env")]
    assert validator.validate("rollback_notify", None) == (None, [])
    thresholds, found = validator.validate("rollback_thresholds", {"memory_mb": " 1024 "})
    assert found == [] and thresholds["memory_mb"] == 1024 and thresholds["outage_minutes"] == 5
    for text in ("nan", "inf", "1e3", "-1"):
        _, found = validator.validate("rollback_thresholds", {"memory_mb": text})
        assert found == [("rollback_thresholds.memory_mb", f"must be a number >= 0, not {text!r}")]
