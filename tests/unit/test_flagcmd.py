"""The command flag backend (rollback_app.flag_backend: command): the schema's rules, the
flag level's checks and plan, the placeholder substitution, and the flagcmd module against
a real flag program (tests/integration/flagstore.py, flags per tenant in SQLite)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import appspec
from rollback_ops.operations import OPERATIONS
from rollback_ops.operations.base import Request
from tests.conftest import ROOT, load_module, run_module
from tests.unit.test_appspec import APP, validator

FLAGCMD = "plugins/modules/flagcmd.py"
STORE = str(ROOT / "tests" / "integration" / "flagstore.py")
utils = load_module("plugins/module_utils/flagcmd.py")

BACKEND = {
    "type": "command",
    "get": ["python3", "manage.py", "configure_ux_features", "--get", "{key}"],
    "set": ["python3", "manage.py", "configure_ux_features", "--set", "{key}", "--to={value}"],
}


def problems(**change: Any) -> dict[str, str]:
    _app, found = validator.validate_app({**APP, **change})
    return dict(found)


def test_a_command_backend_is_valid_and_allows_tenant_keys():
    app, found = validator.validate_app(
        {**APP, "flags": ["acme:enable_harmonization"], "flag_backend": BACKEND}
    )
    assert found == []
    assert app["flag_backend"]["timeout"] == 60
    spec = appspec.build(app)
    assert spec.flag_backend.is_command
    assert spec.flag_backend.set[-1] == "--to={value}"


def test_the_env_backend_keeps_env_keys():
    found = problems(flags=["acme:enable_harmonization"])
    assert "is not a valid env key" in found["rollback_app.flags[0]"]


@pytest.mark.parametrize(
    ("backend", "key", "message"),
    [
        ({**BACKEND, "get": []}, "flag_backend.get", "must be a non-empty argv list"),
        ({**BACKEND, "get": ["show"]}, "flag_backend.get", "must hold {key}"),
        ({**BACKEND, "set": ["x", "{key}"]}, "flag_backend.set", "must hold {value}"),
        ({**BACKEND, "timeout": 0}, "flag_backend.timeout", "at least 1 second"),
        ({"get": ["x", "{key}"]}, "flag_backend.get", "is for type command"),
    ],
)
def test_bad_backends_are_named(backend: dict[str, Any], key: str, message: str):
    assert message in problems(flag_backend=backend)["rollback_app." + key]


def test_a_secret_flag_cannot_go_through_argv():
    found = problems(flags=["API_TOKEN"], flag_backend=BACKEND)
    assert "would put its value in argv" in found["rollback_app.flag_backend"]


def spec(**change: Any) -> appspec.AppSpec:
    app, found = validator.validate_app(
        {**APP, "flags": ["acme:harmonization"], "flag_backend": BACKEND, **change}
    )
    assert found == []
    return appspec.build(app)


def test_the_flag_level_needs_no_env_file_with_a_command_backend():
    flag = OPERATIONS["flag"]
    app = spec(env_file="", maintenance={})
    assert flag.check(app, Request(flags={"acme:harmonization": "false"})) == []
    assert flag.check(app, Request(flags={"SHOP_SECRET": "x"}, allow_new_flags=True)) == [
        "flag SHOP_SECRET of app shop is secret: its command flag backend would put the value "
        "in argv"
    ]
    env_app = appspec.build(validator.validate_app(APP)[0])
    assert "not an env key" in flag.check(env_app, Request(flags={"a:b": "1"}))[0]


def test_the_plan_names_the_commands():
    steps = OPERATIONS["flag"].plan("web1", spec(), Request(flags={"acme:harmonization": "false"}))
    text = "\n".join(steps)
    assert "read each flag on every host with python3 manage.py configure_ux_features --get" in text
    assert "set acme:harmonization=false: only the flags that differ" in text
    assert "env" not in steps[2]


def test_placeholders_are_replaced_literally_in_one_pass():
    assert utils.argv(["s", "{key}", "--to={value}", "{other}"], "k", "{key} $(x) ;") == [
        "s",
        "k",
        "--to={key} $(x) ;",
        "{other}",
    ]


def store(tmp_path: Path, **flags: str) -> dict[str, Any]:
    db = tmp_path / "flags.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE flags (tenant TEXT, flag TEXT, value TEXT, PRIMARY KEY (tenant, flag))"
    )
    for key, value in flags.items():
        tenant, _, flag = key.partition("__")
        con.execute("INSERT INTO flags VALUES (?, ?, ?)", (tenant, flag, value))
    con.commit()
    con.close()
    return {
        "get": [sys.executable, STORE, str(db), "get", "{key}"],
        "set": [sys.executable, STORE, str(db), "set", "{key}", "{value}"],
        "chdir": str(tmp_path),
    }


def read(args: dict[str, Any], key: str) -> str:
    tenant, _, flag = key.partition(":")
    con = sqlite3.connect(args["get"][2])
    row = con.execute(
        "SELECT value FROM flags WHERE tenant = ? AND flag = ?", (tenant, flag)
    ).fetchone()
    return str(row[0])


def test_the_module_sets_only_what_differs_and_verifies(tmp_path: Path):
    args = store(tmp_path, acme__harm="true", acme__refs="false", beta__harm="true")
    values = {"acme:harm": "false", "acme:refs": "false"}
    check = run_module(FLAGCMD, {**args, "values": values}, check_mode=True)
    assert check["changed"] and check["changed_keys"] == ["acme:harm"]
    assert read(args, "acme:harm") == "true"  # check mode wrote nothing
    done = run_module(FLAGCMD, {**args, "values": values})
    assert done["changed"] and done["before"] == {"acme:harm": "true", "acme:refs": "false"}
    assert done["after"] == values and done["changed_keys"] == ["acme:harm"]
    assert read(args, "acme:harm") == "false" and read(args, "beta:harm") == "true"
    again = run_module(FLAGCMD, {**args, "values": values})
    assert not again["changed"] and again["changed_keys"] == []


def test_errors_are_one_line_and_name_the_key(tmp_path: Path):
    args = store(tmp_path, acme__harm="true")
    bad = run_module(FLAGCMD, {**args, "values": {"acme:harm": "maybe"}})
    assert bad["failed"] and "\n" not in bad["msg"]
    assert bad["msg"].startswith("flag backend set acme:harm: ")
    assert "invalid value 'maybe'" in bad["msg"]
    missing = run_module(FLAGCMD, {**args, "values": {"acme:nope": "true"}})
    assert missing["msg"].startswith("flag backend get acme:nope: ")
    assert "exited 3" in missing["msg"] and "no flag nope for tenant acme" in missing["msg"]
    assert read(args, "acme:harm") == "true"


def test_check_only_and_expect(tmp_path: Path):
    args = store(tmp_path, acme__harm="true")
    only = run_module(FLAGCMD, {**args, "values": {"acme:harm": "false"}, "check_only": True})
    assert not only["changed"] and only["would_change"] == ["acme:harm"] and "after" not in only
    assert read(args, "acme:harm") == "true"
    moved = run_module(
        FLAGCMD, {**args, "values": {"acme:harm": "false"}, "expect": {"acme:harm": ["x", "y"]}}
    )
    assert moved["failed"] and "something changed it" in moved["msg"]
    assert read(args, "acme:harm") == "true"
