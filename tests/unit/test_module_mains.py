"""main() of the modules that change something and have no test file of their own (unlock,
backup, dbrestore, schemacheck_info), run as Ansible runs them (tests/conftest.run_module)
on real files and real SQLite databases in a temp directory: check mode writes nothing, a copy
is taken before a change, a change is a rename, and a password never reaches the result.

A password given in the modules' ``passwords`` option is no_log: Ansible's module code masks
every occurrence of its value in the result, the echoed arguments (``invocation``) included.
The SQLite engine needs no password, so the value given only travels through the module: it
shows in the result exactly when ``no_log`` is lost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_module
from tests.fingerprint import changes, fingerprint

UNLOCK = "plugins/modules/unlock.py"
BACKUP = "plugins/modules/backup.py"
DBRESTORE = "plugins/modules/dbrestore.py"
SCHEMACHECK = "plugins/modules/schemacheck_info.py"
PASSWORD = "pw-Rbo-Module-4711"
GOOD = [(1, "ana"), (2, "ben")]


def rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT id, name FROM users ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture
def app(tmp_path: Path) -> dict:
    """A SQLite database (two users, schema version 7) and the backup root, in tmp_path."""
    db = tmp_path / "srv" / "app.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "INSERT INTO users VALUES (1, 'ana'), (2, 'ben');"
        "CREATE TABLE meta (version INTEGER); INSERT INTO meta VALUES (7);"
    )
    con.commit()
    con.close()
    spec = {
        "name": "main",
        "engine": "sqlite",
        "path": str(db),
        "schema_version_query": "SELECT version FROM meta",
        "data_loss_tables": [{"table": "users", "key": "id"}],
    }
    common = {
        "root": str(tmp_path / "backups"),
        "app": "shop",
        "databases": [spec],
        "passwords": {"main": PASSWORD},
    }
    return {"tmp": tmp_path, "db": db, "args": common}


def no_password(result: dict) -> None:
    assert PASSWORD not in json.dumps(result), result


def backup(app: dict, check_mode: bool = False, **kw: object) -> dict:
    result = run_module(BACKUP, {**app["args"], **kw}, check_mode=check_mode)
    no_password(result)
    return result


def dbrestore(app: dict, check_mode: bool = False, **kw: object) -> dict:
    result = run_module(DBRESTORE, {**app["args"], **kw}, check_mode=check_mode)
    no_password(result)
    return result


# ----------------------------------------------------------------------------- unlock


def lock_of(tmp_path: Path, run_id: str) -> Path:
    lock = tmp_path / "state" / "rollback.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.write_text(json.dumps({"run_id": run_id, "operator": "ana", "epoch": 1.0}))
    return lock


def test_unlock_in_check_mode_removes_nothing(tmp_path: Path):
    lock = lock_of(tmp_path, "other")
    before = fingerprint(tmp_path)
    result = run_module(UNLOCK, {"lock_path": str(lock), "clear": True}, check_mode=True)
    assert result["changed"] is True and result["removed"]["run_id"] == "other", result
    assert changes(before, fingerprint(tmp_path)) == []


def test_unlock_releases_only_its_own_run_and_clears_on_request(tmp_path: Path):
    lock = lock_of(tmp_path, "other")
    before = fingerprint(tmp_path)
    kept = run_module(UNLOCK, {"lock_path": str(lock), "run_id": "mine"})
    assert not kept["changed"] and kept["held"]["run_id"] == "other", kept
    assert changes(before, fingerprint(tmp_path)) == []
    cleared = run_module(UNLOCK, {"lock_path": str(lock), "clear": True, "clear_run_id": "other"})
    assert cleared["changed"] and cleared["removed"]["run_id"] == "other", cleared
    assert not lock.exists()
    lock = lock_of(tmp_path, "mine")
    released = run_module(UNLOCK, {"lock_path": str(lock), "run_id": "mine"})
    assert not released["changed"] and released["removed"]["run_id"] == "mine", released
    assert not lock.exists()


# ----------------------------------------------------------------------------- backup


def test_backup_check_mode_writes_nothing_and_no_password_is_returned(app: dict):
    before = fingerprint(app["tmp"])
    for state in ("created", "listed", "verified", "pruned"):
        result = backup(app, check_mode=True, state=state, keep=0)
        assert not result.get("failed") or state == "verified", result
    assert changes(before, fingerprint(app["tmp"])) == []


def test_backup_created_holds_the_database_and_check_mode_verify_and_prune_leave_it(app: dict):
    older = backup(app, state="created", kind="scheduled")
    made = backup(app, state="created", kind="predeploy")
    assert made["changed"] and made["verification"]["ok"], made
    assert older["set_id"] != made["set_id"]
    set_dir = Path(made["backup_file"])
    [entry] = made["manifest"]["databases"]
    assert rows(set_dir / entry["file"]) == GOOD
    assert "password" not in json.dumps(made["manifest"])
    before = fingerprint(app["tmp"])
    verified = backup(app, check_mode=True, state="verified")
    assert verified["verification"]["ok"], verified
    pruned = backup(app, check_mode=True, state="pruned", keep=1)
    assert pruned["changed"] and len(pruned["removed"]) == 1, pruned  # would remove one
    assert changes(before, fingerprint(app["tmp"])) == []


# ----------------------------------------------------------------------------- dbrestore


def change_live(db: Path) -> None:
    con = sqlite3.connect(db)
    con.executescript(
        "UPDATE users SET name = 'eve' WHERE id = 2; INSERT INTO users VALUES (3, 'x');"
    )
    con.commit()
    con.close()


def test_dbrestore_checked_and_check_mode_write_nothing(app: dict):
    assert backup(app, state="created", kind="predeploy")["changed"]
    change_live(app["db"])
    before = fingerprint(app["tmp"])
    checked = dbrestore(app, state="checked")
    assert checked["needed"] is True, checked
    assert dbrestore(app, check_mode=True, state="forensic", run_id="r1")["changed"]
    would = dbrestore(app, check_mode=True, state="restored", run_id="r1")
    assert would["changed"] and "would restore" in would["msg"], would
    assert changes(before, fingerprint(app["tmp"])) == []


def test_dbrestore_refuses_without_a_forensic_copy_of_the_live_database(app: dict):
    assert backup(app, state="created", kind="predeploy")["changed"]
    change_live(app["db"])
    before = fingerprint(app["tmp"])
    refused = dbrestore(app, state="restored", run_id="r1")
    assert refused.get("failed") and "no forensic set of run 'r1'" in refused["msg"], refused
    assert changes(before, fingerprint(app["tmp"])) == []


def test_dbrestore_keeps_the_live_rows_then_renames_the_sets_copy_over_the_database(app: dict):
    assert backup(app, state="created", kind="predeploy")["changed"]
    change_live(app["db"])
    live_rows = rows(app["db"])
    forensic = dbrestore(app, state="forensic", run_id="r1")
    assert forensic["changed"] and forensic["verification"]["ok"], forensic
    inode = app["db"].stat().st_ino
    restored = dbrestore(app, state="restored", run_id="r1")
    assert restored["changed"] and restored["ok"], restored
    assert restored["forensic_set_id"] == forensic["forensic_set_id"]
    # the copy taken before the change holds the rows the restore replaced
    copy = Path(forensic["backup_file"]) / "db" / "main.sqlite3"
    assert rows(copy) == live_rows
    assert rows(app["db"]) == GOOD
    assert app["db"].stat().st_ino != inode  # an atomic replace, not a write in place
    assert sorted(p.name for p in app["db"].parent.iterdir()) == ["app.db"]
    loss = restored["data_loss"]["main"]["users"]
    assert (loss["missing"], loss["changed"]) == (["3"], ["2"]), loss


# ----------------------------------------------------------------------------- schemacheck_info


def test_schemacheck_reads_only_and_returns_no_password(app: dict):
    made = backup(app, state="created", kind="predeploy", code_path="")
    assert made["changed"], made
    before = fingerprint(app["tmp"])
    ref = made["manifest"]["code"].get("ref", "")
    for check_mode in (False, True):
        result = run_module(
            SCHEMACHECK, {**app["args"], "code_ref": ref or "none"}, check_mode=check_mode
        )
        no_password(result)
        assert not result.get("failed") and not result["changed"], result
    assert changes(before, fingerprint(app["tmp"])) == []
