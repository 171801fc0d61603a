"""Config rows (rollback_app.config.rows; seed 002 strategy 2, dumpdata/loaddata): the schema's
rules, the config level's check and plan, and the backup and configrows modules against a
real program (tests/integration/flagstore.py's dump and load, rows in SQLite)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import appspec
from rollback_ops.operations import OPERATIONS
from rollback_ops.operations.base import Request
from tests.conftest import ROOT, run_module
from tests.unit.test_appspec import APP, validator

BACKUP = "plugins/modules/backup.py"
CONFIGROWS = "plugins/modules/configrows.py"
STORE = str(ROOT / "tests" / "integration" / "flagstore.py")
ROWS = {
    "name": "agent_configuration.json",
    "dump": ["python", "manage.py", "dumpdata", "bot.AgentConfiguration"],
    "load": ["python", "manage.py", "loaddata", "{file}"],
}


def problems(*rows: dict[str, Any]) -> dict[str, str]:
    _app, found = validator.validate_app({**APP, "config": {"rows": list(rows)}})
    return dict(found)


def test_rows_are_valid_and_reach_the_spec():
    app, found = validator.validate_app({**APP, "config": {"rows": [ROWS]}})
    assert found == []
    assert app["config"]["rows"][0]["timeout"] == 300
    spec = appspec.build(app)
    assert spec.config.rows[0].name == "agent_configuration.json"
    assert OPERATIONS["config"].check(spec, Request()) == []
    steps = "\n".join(OPERATIONS["config"].plan("web1", spec, Request()))
    assert "holds the config rows agent_configuration.json with matching sha256" in steps
    assert "python manage.py loaddata {file} with a private copy of the set's rows/" in steps


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"name": "../x"}, "name", "must be unique and a simple file name"),
        ({"dump": []}, "dump", "must be a non-empty argv list"),
        ({"load": ["loaddata", "x.json"]}, "load", "must hold {file}"),
        ({"timeout": 0}, "timeout", "at least 1 second"),
    ],
)
def test_bad_rows_are_named(change: dict[str, Any], key: str, message: str):
    found = problems({**ROWS, **change})
    assert message in found[f"rollback_app.config.rows[0].{key}"]


def test_two_rows_with_one_name_are_refused():
    found = problems(ROWS, ROWS)
    assert "must be unique" in found["rollback_app.config.rows[1].name"]


def test_an_app_without_files_or_rows_has_no_config_level():
    app = appspec.build(validator.validate_app({**APP, "config": {}})[0])
    assert OPERATIONS["config"].check(app, Request()) == [
        "app shop has no rollback_app.config.files, config.rows nor backup.crontabs to restore"
    ]


def flags(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    return {f"{t}:{f}": v for t, f, v in con.execute("SELECT tenant, flag, value FROM flags")}


def setflag(db: Path, key: str, value: str) -> None:
    import subprocess

    subprocess.run([sys.executable, STORE, str(db), "set", key, value], check=True)


@pytest.fixture
def rows(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "flags.db"
    setflag(db, "acme:harm", "true")
    setflag(db, "beta:harm", "true")
    return {
        "db": db,
        "root": str(tmp_path / "sets"),
        "row": {
            "name": "flags.json",
            "dump": [sys.executable, STORE, str(db), "dump"],
            "load": [sys.executable, STORE, str(db), "load", "{file}"],
            "chdir": str(tmp_path),
        },
        "keep": str(tmp_path / "keep"),
    }


def test_a_set_holds_the_rows_and_the_config_level_loads_them(rows: dict[str, Any]):
    made = run_module(BACKUP, {"root": rows["root"], "app": "bot", "rows": [rows["row"]]})
    assert made["changed"] and made["verification"]["ok"], made
    (entry,) = made["manifest"]["rows"]
    assert entry["file"] == "rows/flags.json" and len(entry["sha256"]) == 64
    assert "rows/flags.json: sha256 ok" in made["verification"]["checks"]
    args = {"root": rows["root"], "app": "bot", "rows": [rows["row"]], "keep_dir": rows["keep"]}
    same = run_module(CONFIGROWS, {**args, "state": "restored"})
    assert not same["changed"] and same["differs"] == []

    setflag(rows["db"], "acme:harm", "false")
    check = run_module(CONFIGROWS, {**args, "state": "restored", "_ansible_diff": True}, True)
    assert check["changed"] and check["differs"] == ["flags.json"]
    assert flags(rows["db"])["acme:harm"] == "false"  # check mode loaded nothing
    assert not Path(rows["keep"]).exists()

    done = run_module(CONFIGROWS, {**args, "state": "restored"})
    assert done["changed"] and done["still_differs"] == []
    assert flags(rows["db"]) == {"acme:harm": "true", "beta:harm": "true"}
    (copy,) = done["backup_files"]
    kept = json.loads(Path(copy).read_text())  # the rows as they were before the load
    assert {"tenant": "acme", "flag": "harm", "value": "false"} in kept
    assert oct(Path(copy).stat().st_mode & 0o777) == "0o600"
    again = run_module(CONFIGROWS, {**args, "state": "restored"})
    assert not again["changed"]


def test_a_failing_dump_fails_in_one_line(rows: dict[str, Any]):
    bad = {**rows["row"], "dump": [sys.executable, STORE, str(rows["db"]), "nope"]}
    made = run_module(BACKUP, {"root": rows["root"], "app": "bot", "rows": [bad]})
    assert made["failed"] and "\n" not in made["msg"]
    assert made["msg"].startswith("backup: config rows flags.json: dump: ")
    assert "exited 2" in made["msg"] and "usage: flagstore.py" in made["msg"]
    assert not list(Path(rows["root"], "bot").glob("*"))  # no half set left


def test_no_set_holding_the_rows_is_named(rows: dict[str, Any]):
    args = {"root": rows["root"], "app": "bot", "rows": [rows["row"]], "keep_dir": rows["keep"]}
    found = run_module(CONFIGROWS, args)
    assert found["failed"] and "no verified backup set of bot" in found["msg"]
    assert "holds the config rows flags.json" in found["msg"]


def test_undo_of_a_run_that_loaded_rows_names_the_dumps():
    from rollback_ops import undo
    from rollback_ops.exceptions import ConfigError

    result = {
        "data": {"config_rows": [{"name": "flags.json", "copy": "/var/lib/x/flags.json.1"}]},
        "backups": ["/var/lib/x/flags.json.1"],
    }
    with pytest.raises(ConfigError, match=r"flags.json: /var/lib/x/flags.json.1 \(load them"):
        undo._config_entry("R1", "web1", result, False)
