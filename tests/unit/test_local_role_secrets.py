"""Secrets never reach the run's files: a real run through ansible-runner, no Docker needed.

The flag level runs through ``api.apply`` and the real ansible-runner on this machine's local
connection, on the demo's sandbox app (everything under tmp_path), with a secret flag value;
then every file the run left (artifacts, events, stdout, command, extra vars, receipt,
history) is read for the value. Beside it, every module option and role variable whose name
says password, secret or token is held to ``no_log``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import api, demo
from rollback_ops.authorization import Authorization
from rollback_ops.operations import Request
from tests.conftest import ROOT
from tests.unit.test_module_docs import ACTION_ONLY, MODULES, argument_spec

SECRET = "Rbo-s3cret-9f27c1"  # the value looked for, not a credential
SECRET_KEY = "STRIPE_API_KEY"  # secret by the app's default secret_keys (*_KEY)


def leaks(root: Path, value: str, *, besides: tuple[Path, ...] = ()) -> list[str]:
    """Every file under root (but besides) whose bytes hold value."""
    return [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.is_symlink()
        and path not in besides
        and value.encode() in path.read_bytes()
    ]


def test_a_secret_flag_value_stays_out_of_every_file_of_a_real_run(tmp_path: Path):
    state = tmp_path / "state"
    demo.create_sandbox(state)
    env_file = state / "demo" / "srv" / "analyticbot" / ".env.production"
    result = api.apply(
        "flag",
        "local",
        Request(flags={SECRET_KEY: SECRET, "ENABLE_TIME_WEIGHTING": "false"}, allow_new_flags=True),
        state_dir=state,
        auth=Authorization(operator="ana"),
    )
    assert result.ok, result.receipt()
    # the value was set on the host: the run did carry the secret
    assert f"{SECRET_KEY}={SECRET}" in env_file.read_text()
    run_dir = Path(result.run_dir)
    artifacts = run_dir / "artifacts" / "ansible"
    # what is scanned exists: a scan of nothing would pass
    assert (artifacts / "command").exists() and (artifacts / "stdout").exists()
    assert len(list((artifacts / "job_events").glob("*.json"))) > 10
    assert (run_dir / "receipt.json").exists() and (state / "history.jsonl").exists()
    assert leaks(state, SECRET, besides=(env_file,)) == []
    assert SECRET not in str(result.receipt())
    # and the key itself is named, masked
    (change,) = [c for c in result.hosts["localhost"].flags if c.key == SECRET_KEY]
    assert change.after != SECRET


def test_a_database_password_stays_out_of_every_file_of_a_real_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """backup create on the sandbox with an SQLite database whose password_env names a
    variable set here: the password travels through tasks/db_passwords.yml (a no_log task) to
    the backup role's module (a no_log option), and must show in none of the run's files."""
    state = tmp_path / "state"
    inventory = demo.create_sandbox(state)
    database = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total TEXT)")
        db.execute("INSERT INTO orders (total) VALUES ('9.90')")
        db.commit()
    data = yaml.safe_load(inventory.read_text())
    app = data["all"]["vars"]["rollback_app"]
    app["databases"] = [
        {"name": "shop", "engine": "sqlite", "path": str(database), "password_env": "SHOP_DB_PW"}
    ]
    app["backup"] = {"root": str(tmp_path / "backups")}
    inventory.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SHOP_DB_PW", SECRET)
    result = api.apply("backup-create", "local", state_dir=state, auth=Authorization("ana"))
    assert result.ok, result.receipt()
    # the set was taken: the run did reach the module that got the password
    (made,) = (tmp_path / "backups" / "analyticbot").iterdir()
    assert (made / "db" / "shop.sqlite3").exists() and (made / "manifest.json").exists()
    events = Path(result.run_dir) / "artifacts" / "ansible" / "job_events"
    assert len(list(events.glob("*.json"))) > 10
    assert leaks(tmp_path, SECRET) == []


SECRET_NAME = re.compile(r"pass|secret|token", re.IGNORECASE)
# options named so that hold names, not secrets: the env keys whose values are secret, and the
# controller's environment variable that holds a password
NAMES_ONLY = {"secret_keys": "list", "password_env": "str"}
# modules whose options reach an action plugin, never a module (their docs only live there)
RUN_AS_MODULES = [m for m in MODULES if m not in ACTION_ONLY]


def check_no_log(where: str, option: str, spec: dict[str, Any]) -> None:
    """A secret's option is no_log; one holding names only is a name (or names) and says so
    explicitly when it is a module's (no_log: false, as Ansible asks)."""
    kind = NAMES_ONLY.get(option.rsplit(".", 1)[-1].removeprefix(f"{where}_"))
    if kind is None:
        assert spec.get("no_log") is True, f"{where}: {option} is not no_log"
    else:
        assert spec.get("type") == kind and spec.get("elements", "str") == "str", option


def secret_options(spec: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(name, option) for every option of spec, suboptions included, whose name says secret."""
    found = []
    for name, option in spec.items():
        if SECRET_NAME.search(name):
            found.append((prefix + name, option))
        sub = option.get("options") or option.get("suboptions")
        if isinstance(sub, dict):
            found += secret_options(sub, f"{prefix}{name}.")
    return found


@pytest.mark.parametrize("name", RUN_AS_MODULES)
def test_every_secret_module_option_is_no_log(name: str, monkeypatch: pytest.MonkeyPatch):
    for option, spec in secret_options(argument_spec(name, monkeypatch)):
        check_no_log(name, option, spec)
        if option in NAMES_ONLY:
            assert spec.get("no_log") is False, f"{name}: {option} says no_log: false"


def test_the_secret_module_options_are_found(monkeypatch: pytest.MonkeyPatch):
    """The check above looks at real options: these are known to carry secrets."""
    found = {
        (module, option)
        for module in RUN_AS_MODULES
        for option, _spec in secret_options(argument_spec(module, monkeypatch))
    }
    assert {
        ("backup", "passwords"),
        ("dbrestore", "passwords"),
        ("schemacheck_info", "passwords"),
        ("envfile", "secret_values"),
        ("envfile", "secret_keys"),
    } <= found


ROLE_SPECS = sorted((ROOT / "roles").glob("*/meta/argument_specs.yml"))


@pytest.mark.parametrize("path", ROLE_SPECS, ids=lambda p: p.parent.parent.name)
def test_every_secret_role_variable_is_no_log(path: Path):
    role = path.parent.parent.name
    for entry in (yaml.safe_load(path.read_text())["argument_specs"] or {}).values():
        for option, spec in secret_options(entry.get("options") or {}):
            check_no_log(role, option, spec)


def test_the_secret_role_variables_are_found():
    found = {
        (path.parent.parent.name, option)
        for path in ROLE_SPECS
        for entry in yaml.safe_load(path.read_text())["argument_specs"].values()
        for option, _spec in secret_options(entry.get("options") or {})
    }
    assert {
        ("app", "rollback_app.databases.password"),
        ("backup", "backup_passwords"),
        ("envfile", "envfile_secret_values"),
    } <= found
