"""Backup sets (roles/backup): the host-side engine, the plugins/module_utils/backupset package, on
real SQLite databases, on throwaway PostgreSQL and MariaDB servers, plus the role's modules
run end to end by ansible-playbook on localhost.

The servers' binaries come from Debian's postgresql and mariadb-server: as root, a run
installs whichever is missing with apt-get (the lab's own installer,
rollback_ops.lab.engine.install_packages), with the packages' system services kept from
starting; the tests start their own servers in temp directories and stop them at the end,
so a run leaves no server process behind. Without root, or when apt-get fails, the tests
that need a server are skipped and say why; under CI (``CI`` set) they fail instead
(tests/requirements.py).

The engine is pure stdlib and is imported under its collection name. The modules are tested
the way they really run (Ansible ships the package with them): one playbook calling every
entry point of the role over the local connection. The scheduled job is run the way the
role's timer runs it: the package copied beside files.py, ``python3 -m ...backupset.job``.
Each engine class's own parts (the registry, columns, row keys) are in test_backup_engines."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import COLLECTIONS, ROOT, load_module
from tests.requirements import need, unavailable

rbs = load_module("plugins/module_utils/backupset")
common = load_module("plugins/module_utils/backupset/common.py")
job = load_module("plugins/module_utils/backupset/job.py")
sqlite_engine = load_module("plugins/module_utils/backupset/engines/sqlite.py")

PASSWORD = "pw-Rbo-Secret-42"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """A clock the engine reads (set ids and ages), one minute further at each call."""
    state = {"now": datetime(2025, 1, 20, 14, 0, 0, tzinfo=UTC)}

    def now() -> datetime:
        state["now"] += timedelta(minutes=1)
        return state["now"]

    monkeypatch.setattr(common, "now", now)
    return state


def make_db(path: Path, rows: int = 200, wal: bool = True) -> None:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.executescript(
        """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, note BLOB);
        CREATE TABLE schema_migrations (version INTEGER);
        INSERT INTO schema_migrations VALUES (3);
        """
    )
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(i, f"c{i % 17}", i * 1.5, bytes([i % 256])) for i in range(1, rows + 1)],
    )
    con.commit()
    con.close()


def count(path: Path, table: str = "orders") -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def sqlite_spec(path: Path, **kw: Any) -> dict:
    return {
        "name": "main",
        "engine": "sqlite",
        "path": str(path),
        "schema_version_query": "SELECT max(version) FROM schema_migrations",
        **kw,
    }


@pytest.fixture
def app(tmp_path: Path) -> dict:
    """A SQLite app: its database (WAL), an env file and a config file, and a backup root."""
    srv = tmp_path / "srv"
    srv.mkdir()
    db = srv / "app.db"
    make_db(db)
    env = srv / ".env"
    env.write_text("DB_URL=sqlite:///srv/app.db\nSECRET=abc\n")
    env.chmod(0o640)
    conf = srv / "conf" / "app.toml"
    conf.parent.mkdir()
    conf.write_text("[app]\nmode = 'live'\n")
    return {
        "root": str(tmp_path / "backups"),
        "db": db,
        "files": [str(env), str(conf)],
        "spec": sqlite_spec(db),
    }


def create(app: dict, kind: str = "predeploy", **kw: Any) -> dict:
    return rbs.create_set(app["root"], "shop", kind, [app["spec"]], app["files"], "", **kw)


def set_dir(app: dict, manifest: dict) -> Path:
    return Path(app["root"]) / "shop" / manifest["set_id"]


# ----------------------------------------------------------------------------- create


def test_a_set_of_a_live_wal_database_being_written_to_is_consistent(app: dict, tmp_path: Path):
    writer = tmp_path / "writer.py"
    stop = tmp_path / "stop"
    writer.write_text(
        "import sqlite3, sys, time, pathlib\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "i = 100000\n"
        "deadline = time.monotonic() + 300  # never outlive a test that died before stopping it\n"
        "while not pathlib.Path(sys.argv[2]).exists() and time.monotonic() < deadline:\n"
        "    con.execute('BEGIN IMMEDIATE')\n"
        "    for _ in range(20):\n"
        "        i += 1\n"
        "        con.execute('INSERT INTO orders VALUES (?, ?, ?, ?)', (i, 'w', 1.0, b'x'))\n"
        "    con.execute('COMMIT')\n"
    )
    proc = subprocess.Popen([sys.executable, str(writer), str(app["db"]), str(stop)])
    try:
        deadline = time.time() + 20
        while count(app["db"]) < 2000 and time.time() < deadline:
            time.sleep(0.05)
        before = count(app["db"])
        manifest = create(app, run_id="r1", restore_test=True)
        after = count(app["db"])
    finally:
        stop.touch()
        proc.wait(timeout=20)
    assert before >= 2000, "the writer did not write"
    [db] = manifest["databases"]
    rows = db["tables"]["orders"]["rows"]
    # a consistent copy at one moment while the writer went on, whole transactions only
    assert before <= rows <= after and rows % 20 == 0
    copy = set_dir(app, manifest) / db["file"]
    assert count(copy) == rows
    assert manifest["verification"]["ok"], manifest["verification"]
    assert manifest["restore_test"]["ok"]
    assert manifest["restore_test"]["tables"]["main"]["orders"]["rows"] == rows
    # a self-contained file: no -wal beside the copy, rollback-journal mode
    assert not copy.with_name(copy.name + "-wal").exists()
    assert db["journal_mode"] == "wal"


def test_manifest_fields_layout_and_modes(app: dict, clock: dict, tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"], ["tag", "v1.2"]):
        subprocess.run(["git", "-C", str(code), *args], check=True, env=env)
    manifest = rbs.create_set(
        app["root"], "shop", "predeploy", [app["spec"]], app["files"], str(code), "run-7"
    )
    assert manifest["set_id"] == "20250120T140100Z-predeploy"
    assert manifest["created"] == "2025-01-20T14:01:00Z"
    assert (manifest["format"], manifest["app"], manifest["kind"]) == (1, "shop", "predeploy")
    assert manifest["run_id"] == "run-7" and manifest["host"] == socket.gethostname()
    assert manifest["code"]["describe"] == "v1.2" and len(manifest["code"]["ref"]) == 40
    [db] = manifest["databases"]
    assert db["file"] == "db/main.sqlite3" and db["engine"] == "sqlite"
    assert db["database"] == str(app["db"])
    assert db["schema_version"] == "3"
    assert db["tool"].startswith("python sqlite3 ")
    assert set(db["tables"]) == {"orders", "schema_migrations"}
    assert db["tables"]["orders"]["rows"] == 200
    assert db["tables"]["orders"]["columns"] == ["id", "customer", "total", "note"]
    env_entry = manifest["files"][0]
    assert env_entry["path"] == app["files"][0]
    assert env_entry["file"] == "files/" + app["files"][0].lstrip("/")
    assert env_entry["mode"] == "0640" and env_entry["size"] == len(
        Path(app["files"][0]).read_bytes()
    )

    base = set_dir(app, manifest)
    assert json.loads((base / "manifest.json").read_text()) == manifest
    assert (base / env_entry["file"]).read_bytes() == Path(app["files"][0]).read_bytes()
    for path in [base.parent, base, *base.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path

    # same second, same kind: -2
    clock["now"] = datetime(2025, 1, 20, 14, 0, 0, tzinfo=UTC)
    again = rbs.create_set(app["root"], "shop", "predeploy", [app["spec"]], [], "")
    assert again["set_id"] == "20250120T140100Z-predeploy-2"
    assert again["code"] == {} and again["files"] == []


def test_list_sets_newest_first_with_summaries(app: dict, clock: dict):
    first = create(app, "scheduled")
    second = create(app, "manual")
    sets = rbs.list_sets(app["root"], "shop")
    assert [s["set_id"] for s in sets] == [second["set_id"], first["set_id"]]
    assert sets[0]["kind"] == "manual" and sets[0]["verified"] is True
    assert sets[0]["databases"] == ["main"]
    assert sets[0]["size"] == sum(e["size"] for e in second["databases"] + second["files"])
    assert rbs.list_sets(app["root"], "other") == []


def test_bad_specs_and_missing_files_are_refused_and_leave_no_set(app: dict):
    with pytest.raises(rbs.BackupError, match="engine must be one of"):
        rbs.create_set(app["root"], "shop", "manual", [{"name": "x", "engine": "oracle"}], [])
    with pytest.raises(rbs.BackupError, match="sqlite needs an absolute path"):
        rbs.create_set(app["root"], "shop", "manual", [{"name": "x", "engine": "sqlite"}], [])
    with pytest.raises(rbs.BackupError, match="kind must be one of"):
        create(app, "weekly")
    with pytest.raises(rbs.BackupError, match="does not exist"):
        rbs.create_set(app["root"], "shop", "manual", [app["spec"]], ["/nonexistent/.env"])
    missing = sqlite_spec(Path(app["db"]).with_name("gone.db"))
    with pytest.raises(rbs.BackupError, match="does not exist"):
        rbs.create_set(app["root"], "shop", "manual", [missing], [])
    assert not Path(app["db"]).with_name("gone.db").exists()  # never created by the attempt
    assert rbs.list_sets(app["root"], "shop") == []
    assert list((Path(app["root"]) / "shop").iterdir()) == []


# ----------------------------------------------------------------------------- verify


def test_verify_ok_then_a_corrupted_byte_is_found_and_named(app: dict):
    manifest = create(app)
    set_id = manifest["set_id"]
    assert rbs.verify_set(app["root"], "shop", set_id, [app["spec"]])["verification"]["ok"]

    copy = set_dir(app, manifest) / "db" / "main.sqlite3"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    outcome = rbs.verify_set(app["root"], "shop", set_id, [app["spec"]])
    assert not outcome["verification"]["ok"]
    assert any(
        p.startswith("db/main.sqlite3: sha256 ") for p in outcome["verification"]["problems"]
    )
    # recorded in the manifest, and seen by list_sets
    assert rbs.read_manifest(set_dir(app, manifest))["verification"]["ok"] is False
    assert rbs.list_sets(app["root"], "shop")[0]["verified"] is False

    env_copy = set_dir(app, manifest) / manifest["files"][0]["file"]
    env_copy.unlink()
    problems = rbs.verify_set(app["root"], "shop", set_id, record=False)["verification"]["problems"]
    assert f"{manifest['files'][0]['file']}: missing" in problems


def test_restore_test_compares_every_table_with_the_manifest(app: dict):
    manifest = create(app)
    outcome = rbs.verify_set(app["root"], "shop", manifest["set_id"], restore_test=True)
    assert outcome["restore_test"]["ok"], outcome
    assert outcome["restore_test"]["tables"]["main"]["orders"] == {
        "rows": 200,
        "checksum": manifest["databases"][0]["tables"]["orders"]["checksum"],
    }
    # a manifest that disagrees with the copy (same bytes) is caught by the restore test
    base = set_dir(app, manifest)
    doctored = rbs.read_manifest(base)
    doctored["databases"][0]["tables"]["orders"]["rows"] = 201
    (base / "manifest.json").write_text(json.dumps(doctored))
    outcome = rbs.verify_set(app["root"], "shop", manifest["set_id"], restore_test=True)
    assert not outcome["verification"]["ok"]
    assert "main.orders: restored 200 rows" in outcome["restore_test"]["problems"][0]
    # a failed restore test stands until one passes
    problems = rbs.verify_set(app["root"], "shop", manifest["set_id"])["verification"]["problems"]
    assert problems[0].startswith("restore test of ") and "restored 200 rows" in problems[0]


def test_the_checksum_ignores_row_order_but_not_content(tmp_path: Path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    make_db(a, 50, wal=False)
    make_db(b, 0, wal=False)
    con = sqlite3.connect(b)
    con.execute("ATTACH ? AS a", (str(a),))
    con.execute("INSERT INTO orders SELECT * FROM a.orders ORDER BY id DESC")
    con.commit()
    stats = lambda path: sqlite_engine.stats(sqlite3.connect(path), ["orders"])["orders"]  # noqa: E731
    assert stats(a)["checksum"] == stats(b)["checksum"]
    con.execute("UPDATE orders SET total = total + 0.5 WHERE id = 7")
    con.commit()
    assert stats(a)["checksum"] != stats(b)["checksum"]


# ----------------------------------------------------------------------------- prune


def test_prune_keeps_the_newest_verified_set_and_forensic_sets(app: dict, clock: dict):
    old = create(app, "scheduled")
    forensic = create(app, "forensic")
    verified = create(app, "predeploy")
    broken = [create(app, "manual"), create(app, "manual")]
    for manifest in broken:
        (set_dir(app, manifest) / manifest["files"][0]["file"]).write_text("changed")
        rbs.verify_set(app["root"], "shop", manifest["set_id"])

    dry = rbs.prune(app["root"], "shop", keep=1, dry_run=True)
    assert [r["set_id"] for r in dry["removed"]] == [broken[0]["set_id"], old["set_id"]]
    assert len(rbs.list_sets(app["root"], "shop")) == 5

    result = rbs.prune(app["root"], "shop", keep=1)
    assert [r["set_id"] for r in result["removed"]] == [broken[0]["set_id"], old["set_id"]]
    assert result["removed"][0]["reasons"] == ["beyond the newest 1"]
    assert result["freed"] > 0
    left = {s["set_id"] for s in rbs.list_sets(app["root"], "shop")}
    assert left == {broken[1]["set_id"], verified["set_id"], forensic["set_id"]}

    # by age: everything is old now, but the newest verified and the forensic set stay
    clock["now"] += timedelta(days=30)
    result = rbs.prune(app["root"], "shop", max_age_days=7)
    assert [r["set_id"] for r in result["removed"]] == [broken[1]["set_id"]]
    left = {s["set_id"] for s in rbs.list_sets(app["root"], "shop")}
    assert left == {verified["set_id"], forensic["set_id"]}


def test_prune_leaves_a_set_being_written_alone(app: dict, clock: dict):
    create(app, "scheduled")
    partial = Path(app["root"]) / "shop" / "20250120T150000Z-scheduled"
    (partial / "db").mkdir(parents=True)
    assert rbs.prune(app["root"], "shop", keep=0)["removed"] == []
    assert partial.is_dir()


# ----------------------------------------------------------------------------- restore


def test_check_restorable_refuses_another_app_a_mismatch_and_a_bad_checksum(app: dict):
    manifest = create(app)
    base = set_dir(app, manifest)
    check = rbs.check_restorable(base, "shop", [app["spec"]])
    assert check["ok"], check
    assert check["schema_versions"] == {"main": "3"} and check["set_id"] == manifest["set_id"]

    assert (
        "is app 'shop''s, not 'blog''s"
        in rbs.check_restorable(base, "blog", [app["spec"]])["problems"][0]
    )
    other = sqlite_spec(Path("/srv/other.db"))
    assert (
        "the spec says '/srv/other.db'"
        in rbs.check_restorable(base, "shop", [other])["problems"][0]
    )
    pg = {"name": "main", "engine": "postgresql", "database": "shop"}
    assert (
        "the set holds sqlite, the spec says postgresql"
        in rbs.check_restorable(base, "shop", [pg])["problems"][0]
    )
    absent = sqlite_spec(app["db"], name="reports")
    assert rbs.check_restorable(base, "shop", [absent])["problems"] == [
        "database reports: not in the set"
    ]

    with (base / "db" / "main.sqlite3").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    problems = rbs.check_restorable(base, "shop", [app["spec"]])["problems"]
    assert any(p.startswith("db/main.sqlite3: sha256") for p in problems)


def test_check_restorable_refuses_a_set_that_failed_verification(app: dict):
    manifest = create(app)
    base = set_dir(app, manifest)
    (base / manifest["files"][1]["file"]).write_text("x")
    rbs.verify_set(app["root"], "shop", manifest["set_id"])
    (base / manifest["files"][1]["file"]).unlink()
    problems = rbs.check_restorable(base, "shop", [app["spec"]])["problems"]
    assert problems[0].startswith(f"the set {manifest['set_id']} did not pass verification: ")


def test_choose_set_takes_the_newest_verified_non_forensic_set(app: dict, clock: dict):
    with pytest.raises(rbs.BackupError, match="no verified backup set of shop"):
        rbs.choose_set(app["root"], "shop")
    good = create(app, "predeploy")
    create(app, "forensic")
    bad = create(app, "manual")
    (set_dir(app, bad) / bad["files"][0]["file"]).write_text("x")
    rbs.verify_set(app["root"], "shop", bad["set_id"])
    assert rbs.choose_set(app["root"], "shop")[1]["set_id"] == good["set_id"]
    assert rbs.choose_set(app["root"], "shop", bad["set_id"])[1]["set_id"] == bad["set_id"]


def test_restore_replaces_atomically_and_the_stats_equal_the_manifest(app: dict):
    manifest = create(app)
    db = app["db"]
    os.chmod(db, 0o640)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM orders WHERE id > 50")
    con.execute("UPDATE orders SET customer = 'x'")
    con.commit()
    con.close()
    # the app died with its WAL and shared memory left behind
    Path(str(db) + "-wal").write_bytes(b"stale wal")
    Path(str(db) + "-shm").write_bytes(b"stale shm")
    inode = db.stat().st_ino

    done = rbs.restore_database(set_dir(app, manifest), manifest["databases"][0], app["spec"])
    assert done["method"] == "atomic replace"
    assert sorted(done["removed"]) == ["app.db-shm", "app.db-wal"]
    assert db.stat().st_ino != inode  # renamed over, never written in place
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith((".app", "app"))) == [
        "app.db"
    ]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    stats = sqlite_engine.stats(con, ["orders", "schema_migrations"])
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # as the live db was
    con.close()
    for table, want in manifest["databases"][0]["tables"].items():
        assert stats[table] == want


def test_migrations_each_run_in_one_transaction(app: dict, tmp_path: Path):
    good = tmp_path / "004_rollback.sql"
    good.write_text("CREATE TABLE audit (id INTEGER);\nINSERT INTO audit VALUES (1);\n")
    bad = tmp_path / "005_rollback.sql"
    bad.write_text(
        "CREATE TABLE half (id INTEGER);\nINSERT INTO half VALUES (1);\nDROP TABLE nope;\n"
    )
    spec = {**app["spec"], "migrations_rollback": [str(good), str(bad)]}
    with pytest.raises(rbs.BackupError) as info:
        rbs.run_migrations(spec)
    assert str(info.value).startswith(f"migration {bad} failed, nothing of it applied: ")
    assert "no such table: nope" in str(info.value)
    assert [m["file"] for m in info.value.result["migrations"]] == [str(good)]
    con = sqlite3.connect(app["db"])
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "audit" in tables and "half" not in tables
    assert count(app["db"], "audit") == 1


def test_integrity_failures_are_listed_with_up_to_five_rows(app: dict):
    con = sqlite3.connect(app["db"])
    con.executemany(
        "INSERT INTO orders VALUES (?, 'dup', 0, NULL)", [(i,) for i in range(900, 908)]
    )
    con.commit()
    con.close()
    spec = {
        **app["spec"],
        "integrity_checks": [
            {
                "name": "no duplicate customer dup",
                "sql": "SELECT id FROM orders WHERE customer = 'dup';",
            },
            {"name": "no negative totals", "sql": "SELECT id FROM orders WHERE total < 0"},
            {"name": "broken", "sql": "SELECT * FROM nowhere"},
        ],
    }
    result = rbs.integrity(spec)
    assert not result["ok"] and result["passed"] == ["no negative totals"]
    dup, broken = result["failures"]
    assert dup["name"] == "no duplicate customer dup" and dup["count"] == 8
    assert dup["rows"] == [[900], [901], [902], [903], [904]]
    assert "no such table: nowhere" in broken["error"]


def test_data_loss_finds_added_and_changed_rows():
    before = {"1": "a", "2": "b", "3": "c", "10": "x", "11": "y"}
    after = {"1": "a", "2": "B", "3": "c", "4": "new in the backup"}
    assert rbs.data_loss(before, after) == {
        "missing": ["10", "11"],
        "changed": ["2"],
        "missing_count": 2,
        "changed_count": 1,
    }
    many = {str(i): "v" for i in range(100)}
    loss = rbs.data_loss(many, {})
    assert loss["missing"] == [str(i) for i in range(20)] and loss["missing_count"] == 100


def test_forensic_then_restore_reports_the_rows_lost_across_a_schema_change(
    app: dict, tmp_path: Path
):
    target = create(app)
    rollback = tmp_path / "004_rollback.sql"
    rollback.write_text("DROP TABLE IF EXISTS coupons;\n")
    spec = {
        **app["spec"],
        "data_loss_tables": [{"table": "orders", "key": "id"}],
        "integrity_checks": [
            {"name": "orders have customers", "sql": "SELECT id FROM orders WHERE customer IS NULL"}
        ],
        "migrations_rollback": [str(rollback)],
    }
    # the release: a new column and table, then the app wrote and changed rows
    con = sqlite3.connect(app["db"])
    con.executescript(
        """
        ALTER TABLE orders ADD COLUMN coupon TEXT;
        CREATE TABLE coupons (code TEXT);
        UPDATE orders SET coupon = 'X';
        INSERT INTO orders VALUES (201, 'c1', 9.0, NULL, 'Y'), (202, 'c2', 9.0, NULL, 'Y');
        UPDATE orders SET total = 0 WHERE id IN (5, 6);
        """
    )
    con.close()
    made = rbs.create_forensic(app["root"], "shop", [spec], run_id="r42", target=target)
    assert made["keys"] == {"main": {"orders": 202}}
    assert made["manifest"]["kind"] == "forensic" and made["manifest"]["verification"]["ok"]
    forensic_dir, forensic = rbs.find_forensic(app["root"], "shop", "r42")
    assert forensic["set_id"] == made["manifest"]["set_id"]
    assert rbs.find_forensic(app["root"], "shop", "other-run") is None

    result = rbs.restore_set(set_dir(app, target), [spec], forensic_dir)
    assert result["ok"] and result["integrity"]["main"]["passed"] == ["orders have customers"]
    assert [m["file"] for m in result["migrations"]["main"]] == [str(rollback)]
    # the coupon column the release added is not counted as a change of every row
    assert result["data_loss"]["main"]["orders"] == {
        "missing": ["201", "202"],
        "changed": ["5", "6"],
        "missing_count": 2,
        "changed_count": 2,
        "dropped_columns": ["coupon"],
    }
    assert count(app["db"]) == 200


def test_restore_set_fails_naming_the_database_and_keeps_what_was_done(app: dict, tmp_path: Path):
    target = create(app)
    bad = tmp_path / "bad.sql"
    bad.write_text("DROP TABLE nope;")
    spec = {**app["spec"], "migrations_rollback": [str(bad)]}
    with pytest.raises(
        rbs.BackupError, match=r"^database main: migration .*bad.sql failed"
    ) as info:
        rbs.restore_set(set_dir(app, target), [spec])
    assert info.value.result["restored"][0]["name"] == "main"
    assert info.value.result["migrations"] == {"main": []}


# ----------------------------------------------------------------------------- CLI


def test_cli_create_list_verify_prune_with_a_config_file(
    app: dict, clock: dict, tmp_path: Path, capsys
):
    config = tmp_path / "backup-shop.json"
    config.write_text(
        json.dumps(
            {
                "app": "shop",
                "root": app["root"],
                "databases": [app["spec"]],
                "files": app["files"],
                "keep": 1,
            }
        )
    )
    assert job.main(["create", "--config", str(config)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["kind"] == "scheduled" and manifest["verification"]["ok"]
    assert job.main(["create", "--config", str(config), "--kind", "manual"]) == 0
    capsys.readouterr()
    assert job.main(["list", "--config", str(config)]) == 0
    assert [s["kind"] for s in json.loads(capsys.readouterr().out)] == ["manual", "scheduled"]
    assert job.main(["verify", "--config", str(config), "--restore-test"]) == 0
    assert json.loads(capsys.readouterr().out)["restore_test"]["ok"]
    assert job.main(["prune", "--config", str(config)]) == 0
    assert len(json.loads(capsys.readouterr().out)["removed"]) == 1

    config.write_text(json.dumps({"app": "shop", "databases": [{**app["spec"], "password": "x"}]}))
    assert job.main(["create", "--config", str(config)]) == 2
    assert "put passwords in the environment" in json.loads(capsys.readouterr().out)["msg"]


def install_job(lib: Path) -> None:
    """What roles/backup/tasks/schedule.yml installs under /usr/local/lib/rollback-ops: files.py
    and the backupset package's .py files in rollback_ops_utils/, an empty __init__.py."""
    utils = ROOT / "plugins/module_utils"
    (lib / "rollback_ops_utils").mkdir(parents=True)
    (lib / "rollback_ops_utils/__init__.py").write_text("")
    sources = [utils / "files.py", *utils.glob("backupset/*.py"), *utils.glob("backupset/*/*.py")]
    for source in sources:
        dest = lib / "rollback_ops_utils" / source.relative_to(utils)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)


def test_the_job_runs_standalone_as_the_timer_runs_it(app: dict, tmp_path: Path):
    """On a host the package runs by itself, as the role's unit runs it: python3 -S (the
    standard library only, no site-packages: no Ansible around) -m ...backupset.job, in the
    directory the role installs it to."""
    unit = (ROOT / "roles/backup/templates/rollback-ops-backup.service.j2").read_text()
    command = "python3 -S -m rollback_ops_utils.backupset.job"
    assert "WorkingDirectory=/usr/local/lib/rollback-ops\n" in unit
    assert f"{command} create --config" in unit and f"{command} prune --config" in unit
    lib = tmp_path / "lib"
    install_job(lib)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"app": "shop", "root": app["root"], "databases": [app["spec"]]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for python in (sys.executable, shutil.which("python3") or sys.executable):
        proc = subprocess.run(
            [python, *command.split()[1:], "create", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=lib,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["databases"][0]["tables"]["orders"]["rows"] == 200


def test_password_env_is_read_from_the_environment_and_never_written(
    monkeypatch: pytest.MonkeyPatch,
):
    spec = rbs.normalize_database(
        {"name": "pg", "engine": "postgresql", "database": "d", "password_env": "RBO_PW"}
    )
    with pytest.raises(rbs.BackupError, match="RBO_PW is not set"):
        rbs.engine_for(spec).env()
    monkeypatch.setenv("RBO_PW", PASSWORD)
    monkeypatch.setenv("PGPASSWORD", "inherited")
    monkeypatch.setenv("MYSQL_PWD", "inherited")
    engine = rbs.engine_for(spec)
    assert engine.env()["PGPASSWORD"] == PASSWORD
    assert "MYSQL_PWD" not in engine.env()  # another tool's password is never inherited
    assert engine.redact(f"FATAL: bad {PASSWORD}") == "FATAL: bad ********"


# ----------------------------------------------------------------------------- Ansible


def test_the_role_end_to_end_through_ansible_playbook(app: dict, tmp_path: Path):
    """Every entry point of the role, by ansible-playbook on localhost: Ansible ships the role's
    module_utils with the modules, and the password stays out of every output."""
    rollback = tmp_path / "004_rollback.sql"
    rollback.write_text("DROP TABLE IF EXISTS coupons;\n")
    databases = [
        {
            **app["spec"],
            "data_loss_tables": [{"table": "orders", "key": "id"}],
            "integrity_checks": [
                {"name": "no null customer", "sql": "SELECT id FROM orders WHERE customer IS NULL"}
            ],
            "migrations_rollback": [str(rollback)],
        }
    ]
    variables = {
        "backup_root": app["root"],
        "backup_app": "shop",
        "backup_databases": databases,
        "backup_passwords": {"main": PASSWORD},
        "backup_files": app["files"],
        "backup_run_id": "run-e2e",
        "out": str(tmp_path / "out.json"),
        "db": str(app["db"]),
        "ansible_python_interpreter": sys.executable,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(
        """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: create}
      check_mode: true
    - ansible.builtin.set_fact: {check_created: "{{ backup_result }}"}
    - ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: create}
      vars: {backup_kind: predeploy}
    - ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: verify}
      vars: {backup_restore_test: true}
    - {ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: list}}
    - {ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: restore_check}}
    - name: The release writes a row
      ansible.builtin.command: >-
        {{ ansible_python_interpreter }} -c "import sqlite3; c = sqlite3.connect('{{ db }}');
        c.execute('INSERT INTO orders VALUES (999, 1, 1, NULL)'); c.commit()"
      changed_when: true
    - ansible.builtin.import_role:
        {name: rollback_ops.rollback.backup, tasks_from: restore_forensic}
    - ansible.builtin.import_role:
        {name: rollback_ops.rollback.backup, tasks_from: restore_forensic}
    - ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: restore}
      vars: {backup_set_id: "{{ backup_restore_check.set_id }}"}
    - ansible.builtin.import_role: {name: rollback_ops.rollback.backup, tasks_from: prune}
      vars: {backup_keep: 1}
    - name: A password inside databases is refused
      rollback_ops.rollback.backup:
        state: listed
        app: shop
        root: "{{ backup_root }}"
        databases: [{name: main, engine: sqlite, path: /x.db, password: hunter2-hunter2}]
      register: refused
      failed_when: false
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: >-
          {{ {'created': backup_result, 'verified': backup_verification, 'sets': backup_sets,
              'check': backup_restore_check, 'forensic': backup_forensic,
              'restore': backup_restore, 'pruned': backup_pruned, 'refused': refused,
              'check_created': check_created} | to_json }}
"""
    )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PIPELINING": "1",
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-v",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert PASSWORD not in proc.stdout + proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert PASSWORD not in json.dumps(out)
    created = out["created"]
    assert created["changed"] and created["backup_file"] == str(
        Path(app["root"]) / "shop" / created["set_id"]
    )
    assert created["manifest"]["verification"]["ok"] and created["manifest"]["kind"] == "predeploy"
    assert out["verified"]["restore_test"]["ok"]
    assert out["check_created"]["changed"] and "manifest" not in out["check_created"]
    assert [s["set_id"] for s in out["sets"]["sets"]] == [created["set_id"]]
    assert out["check"]["set_id"] == created["set_id"] and out["check"]["schema_versions"] == {
        "main": "3"
    }
    assert out["forensic"]["changed"] is False  # the second call found the run's forensic set
    restore = out["restore"]
    assert restore["changed"] and restore["forensic_set_id"] == out["forensic"]["forensic_set_id"]
    assert restore["data_loss"]["main"]["orders"]["missing"] == ["999"]
    assert restore["integrity"]["main"]["ok"]
    assert out["pruned"]["removed"] == []  # the only regular set is the newest verified one
    assert count(app["db"]) == 200
    assert "put its password in the passwords option" in out["refused"]["msg"]


# ----------------------------------------------------------------------------- servers
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
SYSTEM_SERVICES = {"postgres": ["postgresql"], "mariadbd": ["mariadb"]}  # what apt would start


def _server_pids(name: str) -> set[int]:
    """The processes whose command name is ``name`` (from /proc: no procps needed)."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == name:
                pids.add(int(comm.parent.name))
    return pids


def ensure_debian_packages(packages: list[str], tools: list[str], daemon: str) -> None:
    """Install the Debian packages that provide ``tools`` (as root, with apt-get, through the
    lab's installer) unless every tool is already there; skip the test (fail it under CI),
    saying why, when that cannot be done. The packages' system services must not start
    (they would outlive the run, and take 5432/3306): policy-rc.d answers 101 ("action
    forbidden") to invoke-rc.d and deb-systemd-invoke during the install, and a ``daemon``
    process that appears anyway is stopped with the service."""
    missing = [tool for tool in tools if _find_tool(tool) is None]
    if not missing:
        return
    what = f"{', '.join(missing)} (Debian {' and '.join(packages)})"
    need(os.geteuid() == 0, f"{what} not installed, and installing it needs root")
    need(shutil.which("apt-get") is not None, f"{what} not installed, and there is no apt-get here")
    from rollback_ops.exceptions import LabError
    from rollback_ops.lab import engine

    before = _server_pids(daemon)
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text("#!/bin/sh\n# rollback-ops tests: no service starts\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        engine.install_packages(packages)
    except LabError as exc:
        unavailable(f"{what} not installed, and installing it failed: {exc}")
    finally:
        if own_policy:
            POLICY_RC_D.unlink()
    if _server_pids(daemon) - before:  # started by the install regardless: stop it
        systemd = Path("/run/systemd/system").exists()
        for service in SYSTEM_SERVICES[daemon]:
            argv = ["systemctl", "stop", service] if systemd else ["service", service, "stop"]
            subprocess.run(argv, capture_output=True, check=False)
    still = [tool for tool in tools if _find_tool(tool) is None]
    need(not still, f"{', '.join(still)} still missing after installing {' '.join(packages)}")


def _find_tool(name: str) -> str | None:
    """A tool on PATH, or a server binary in /usr/sbin or Debian's PostgreSQL bin directory."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None and name in ("initdb", "pg_ctl"):
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        found = candidates[-1] if candidates else None
    return found


# ----------------------------------------------------------------------------- PostgreSQL
# A throwaway cluster (initdb, a unix socket in a temp dir, TCP on 127.0.0.1 with
# scram-sha-256), on Debian's postgresql (installed when missing, see the top).


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(dirs[-1]).parent if dirs else None


@pytest.fixture(scope="module")
def pg():
    ensure_debian_packages(
        ["postgresql"],
        ["initdb", "pg_ctl", "psql", "pg_dump", "pg_restore", "createdb"],
        daemon="postgres",
    )
    bindir = _pg_bindir()
    assert bindir is not None
    as_root = os.geteuid() == 0
    owner = None
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root, and no postgres user to run the server as")
    base = Path(tempfile.mkdtemp(prefix="rbo-pg-"))
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def run(*argv: str) -> str:
        return subprocess.run(
            [*prefix, *argv], check=True, capture_output=True, text=True, cwd="/"
        ).stdout

    data = base / "data"
    local_auth = "peer" if as_root else "trust"
    su = {
        "name": "su",
        "engine": "postgresql",
        "database": "postgres",
        "host": str(base),
        "port": port,
        "user": "postgres",
    }
    if as_root:
        su["os_user"] = "postgres"
    info = {"base": base, "port": port, "su": su}
    try:  # the server is stopped whatever happens once initdb has run, even a failed start
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-sync")
        (data / "pg_hba.conf").write_text(
            f"local all all {local_auth}\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        options = f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w"]
        run(*pg_ctl, "-o", options, "start")
        admin(info, f"CREATE ROLE shop LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        yield info
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            cwd="/",
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def admin(pg: dict, sql: str, database: str = "postgres") -> None:
    argv = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(pg["base"]),
        "-p",
        str(pg["port"]),
    ]
    argv += ["-U", "postgres", "-d", database, "-c", sql]
    if "os_user" in pg["su"]:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, cwd="/")


def shop_sql(pg: dict, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    argv = [
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        str(pg["port"]),
    ]
    return subprocess.run(
        [*argv, "-U", "shop", "-d", "shop", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()


@pytest.fixture
def pgdb(pg: dict) -> dict:
    """A fresh database shop owned by shop, with orders (1000 rows) and schema_migrations."""
    admin(pg, "DROP DATABASE IF EXISTS shop WITH (FORCE)")
    admin(pg, "CREATE DATABASE shop OWNER shop")
    shop_sql(
        pg,
        "CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric, at timestamptz);"
        "INSERT INTO orders SELECT g, 'c' || g % 17, g * 1.5,"
        " '2025-01-01'::timestamptz + g * interval '1 min' FROM generate_series(1, 1000) g;"
        "CREATE TABLE schema_migrations (version int); INSERT INTO schema_migrations VALUES (3);",
    )
    return {
        "name": "main",
        "engine": "postgresql",
        "database": "shop",
        "host": "127.0.0.1",
        "port": pg["port"],
        "user": "shop",
        "password": PASSWORD,
        "schema_version_query": "SELECT max(version) FROM schema_migrations",
    }


def test_postgresql_set_in_one_snapshot_while_written_to(
    pg: dict, pgdb: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    argvs: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        argvs.append([str(a) for a in argv])
        return real_popen(argv, *args, **kwargs)

    writer = subprocess.Popen(
        [
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg["port"]),
            "-U",
            "shop",
            "-d",
            "shop",
            "-c",
            "DO $$ BEGIN FOR i IN 1..20000 LOOP "
            "INSERT INTO orders VALUES (100000 + i, 'w', 1, now()); COMMIT; "
            "PERFORM pg_sleep(0.001); "
            "END LOOP; END $$",
        ],
        env={**os.environ, "PGPASSWORD": PASSWORD, "PGAPPNAME": "rbo-writer"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        monkeypatch.setattr(subprocess, "Popen", recording)
        manifest = rbs.create_set(
            str(tmp_path / "b"), "shop", "predeploy", [pgdb], [], "", restore_test=True
        )
        monkeypatch.undo()
    finally:
        writer.terminate()
        writer.wait()
        admin(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'rbo-writer'",
        )
    [db] = manifest["databases"]
    assert db["file"] == "db/main.dump" and db["tool"].startswith("pg_dump (PostgreSQL)")
    assert db["schema_version"] == "3" and set(db["tables"]) == {"orders", "schema_migrations"}
    assert db["tables"]["orders"]["columns"] == ["id", "customer", "total", "at"]
    rows = db["tables"]["orders"]["rows"]
    assert rows > 1000  # the writer was writing
    # the stats were taken in the dump's snapshot: the restored copy has exactly those rows
    assert manifest["verification"]["ok"], manifest["verification"]
    assert manifest["restore_test"]["tables"]["main"]["orders"] == {
        "rows": rows,
        "checksum": db["tables"]["orders"]["checksum"],
    }
    assert any(a[0] == "pg_dump" and any(x.startswith("--snapshot=") for x in a) for a in argvs)
    assert argvs and not any(PASSWORD in " ".join(a) for a in argvs)
    set_files = [p for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert set_files and not any(PASSWORD.encode() in p.read_bytes() for p in set_files)
    # the throwaway database is gone
    assert "shop_rbo_verify" not in shop_sql(pg, "SELECT string_agg(datname, ',') FROM pg_database")


def test_postgresql_forensic_restore_migrations_integrity_and_data_loss(
    pg: dict, pgdb: dict, tmp_path: Path
):
    root = str(tmp_path / "b")
    target = rbs.create_set(root, "shop", "predeploy", [pgdb], [], "")
    rollback = tmp_path / "004_rollback.sql"
    rollback.write_text(
        "DROP TABLE IF EXISTS coupons;\nDELETE FROM schema_migrations WHERE version > 3;\n"
    )
    spec = {
        **pgdb,
        "data_loss_tables": [{"table": "orders", "key": "id"}],
        "integrity_checks": [
            {
                "name": "unique customers per id",
                "sql": "SELECT id FROM orders GROUP BY id HAVING count(*) > 1",
            },
            {"name": "totals positive", "sql": "SELECT id, total FROM orders WHERE total <= 0"},
        ],
        "migrations_rollback": [str(rollback)],
    }
    shop_sql(
        pg,
        "ALTER TABLE orders ADD COLUMN coupon text DEFAULT 'X'; CREATE TABLE coupons (code text);"
        "INSERT INTO schema_migrations VALUES (4);"
        "INSERT INTO orders VALUES (5001, 'n', 2, now(), 'Y'), (5002, 'n', 2, now(), 'Y');"
        "UPDATE orders SET customer = 'changed' WHERE id IN (7, 8, 9);",
    )
    set_dir_, chosen = rbs.choose_set(root, "shop")
    assert chosen["set_id"] == target["set_id"]
    check = rbs.check_restorable(set_dir_, "shop", [spec])
    assert check["ok"], check["problems"]
    assert any(c == "db/main.dump: pg_restore --list ok" for c in check["checks"])
    made = rbs.create_forensic(root, "shop", [spec], run_id="r1", target=target)
    assert made["keys"] == {"main": {"orders": 1002}}
    forensic_dir, _ = rbs.find_forensic(root, "shop", "r1")

    result = rbs.restore_set(set_dir_, [spec], forensic_dir)
    assert result["restored"][0]["owners_kept"] is True  # shop owns everything it restores
    assert result["ok"] and result["integrity"]["main"]["passed"] == [
        "unique customers per id",
        "totals positive",
    ]
    assert result["data_loss"]["main"]["orders"] == {
        "missing": ["5001", "5002"],
        "changed": ["7", "8", "9"],
        "missing_count": 2,
        "changed_count": 3,
        "dropped_columns": ["coupon"],
    }
    assert shop_sql(pg, "SELECT count(*) FROM orders") == "1000"
    assert shop_sql(pg, "SELECT to_regclass('coupons') IS NULL") == "t"
    assert shop_sql(pg, "SELECT max(version) FROM schema_migrations") == "3"

    shop_sql(pg, "UPDATE orders SET total = -1 WHERE id <= 6")
    failures = rbs.integrity(spec)["failures"]
    assert failures[0]["name"] == "totals positive" and failures[0]["count"] == 6
    assert len(failures[0]["rows"]) == 5 and {r[0] for r in failures[0]["rows"]} <= set("123456")


def test_postgresql_failing_migration_and_bad_password(pg: dict, pgdb: dict, tmp_path: Path):
    bad = tmp_path / "005_rollback.sql"
    bad.write_text("CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELECT 1 / 0;\n")
    with pytest.raises(
        rbs.BackupError,
        match=r"005_rollback\.sql failed, nothing of it applied: .*division by zero",
    ):
        rbs.run_migrations(pgdb, [str(bad)])
    assert shop_sql(pg, "SELECT to_regclass('half') IS NULL") == "t"

    wrong = {**pgdb, "password": "wrong-" + PASSWORD}
    with pytest.raises(rbs.BackupError, match="password authentication failed") as info:
        rbs.create_set(str(tmp_path / "b"), "shop", "manual", [wrong], [], "")
    assert PASSWORD not in str(info.value)
    assert rbs.list_sets(str(tmp_path / "b"), "shop") == []


def test_postgresql_corrupt_dump_is_refused(pg: dict, pgdb: dict, tmp_path: Path):
    root = str(tmp_path / "b")
    manifest = rbs.create_set(root, "shop", "manual", [pgdb], [], "")
    dump = Path(root) / "shop" / manifest["set_id"] / "db" / "main.dump"
    dump.write_bytes(b"not a dump" + dump.read_bytes()[10:])
    problems = rbs.check_restorable(dump.parent.parent, "shop", [pgdb])["problems"]
    assert any(p.startswith("db/main.dump: sha256") for p in problems)
    assert any(p.startswith("db/main.dump: pg_restore failed") for p in problems)


def test_postgresql_as_the_os_user_over_the_unix_socket(pg: dict, pgdb: dict, tmp_path: Path):
    need("os_user" in pg["su"], "peer authentication as another OS user needs root")
    spec = {**pg["su"], "name": "main", "database": "shop", "tables": ["orders"]}
    manifest = rbs.create_set(
        str(tmp_path / "b"), "shop", "manual", [spec], [], "", restore_test=True
    )
    assert manifest["verification"]["ok"], manifest["verification"]
    assert manifest["databases"][0]["tables"]["orders"]["rows"] == 1000
    assert list(manifest["databases"][0]["tables"]) == ["orders"]


# ----------------------------------------------------------------------------- MySQL/MariaDB
# A throwaway MariaDB server (mariadb-install-db, a socket in a temp dir, TCP on 127.0.0.1),
# on Debian's mariadb-server (installed when missing, see the top); it runs as root only.


@pytest.fixture(scope="module")
def mariadb():
    ensure_debian_packages(
        ["mariadb-server"],
        ["mariadbd", "mariadb-install-db", "mysqldump", "mysql"],
        daemon="mariadbd",
    )
    server = _find_tool("mariadbd")
    install = _find_tool("mariadb-install-db")
    assert server and install
    need(os.geteuid() == 0, "the throwaway MariaDB server is started as root (--user=mysql)")
    try:
        owner = pwd.getpwnam("mysql")
    except KeyError:
        unavailable("no mysql user to run the server as")
    base = Path(tempfile.mkdtemp(prefix="rbo-my-"))
    os.chown(base, owner.pw_uid, owner.pw_gid)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data, sock_path = base / "data", base / "sock"
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            "--skip-test-db",
            "--auth-root-authentication-method=socket",
        ],
        check=True,
        capture_output=True,
        cwd="/",
    )
    proc = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={sock_path}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=mysql",
            f"--log-error={base / 'err'}",
            f"--pid-file={base / 'pid'}",
            "--skip-log-bin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
    )
    try:
        deadline = time.time() + 30
        while not sock_path.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert sock_path.exists(), (
            f"MariaDB did not open its socket in 30 s (exit {proc.poll()}): "
            + (base / "err").read_text(errors="replace")[-2000:]
        )
        grants = (
            f"CREATE USER shop@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
            "GRANT ALL ON `shop%`.* TO shop@'127.0.0.1';"
        )
        subprocess.run(["mysql", f"--socket={sock_path}", "-uroot", "-e", grants], check=True)
        yield {"port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def my_sql(mariadb: dict, sql: str) -> str:
    argv = [
        "mysql",
        "--batch",
        "--skip-column-names",
        "-h",
        "127.0.0.1",
        "-P",
        str(mariadb["port"]),
    ]
    env = {**os.environ, "MYSQL_PWD": PASSWORD}
    return subprocess.run(
        [*argv, "-u", "shop", "shop", "-e", sql],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()


def mysql_spec(mariadb: dict, **extra: Any) -> dict:
    """A spec of the database shop on the throwaway MariaDB, as user shop."""
    return {
        "name": "main",
        "engine": "mysql",
        "database": "shop",
        "host": "127.0.0.1",
        "port": mariadb["port"],
        "user": "shop",
        "password": PASSWORD,
        "schema_version_query": "SELECT max(version) FROM schema_migrations",
        **extra,
    }


def test_mysql_set_restore_test_forensic_restore_and_failures(mariadb: dict, tmp_path: Path):
    my_sql_admin = ["mysql", "-h", "127.0.0.1", "-P", str(mariadb["port"]), "-u", "shop", "-e"]
    subprocess.run(
        [*my_sql_admin, "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop"],
        check=True,
        env={**os.environ, "MYSQL_PWD": PASSWORD},
    )
    my_sql(
        mariadb,
        "CREATE TABLE orders (id int PRIMARY KEY, customer varchar(20), total decimal(10,2));"
        "INSERT INTO orders SELECT seq, concat('c', seq % 17), seq * 1.5 FROM seq_1_to_1000;"
        "CREATE TABLE schema_migrations (version int); INSERT INTO schema_migrations VALUES (3);",
    )
    rollback = tmp_path / "004_rollback.sql"
    rollback.write_text(
        "DROP TABLE IF EXISTS coupons;\nDELETE FROM schema_migrations WHERE version > 3;\n"
    )
    spec = mysql_spec(
        mariadb,
        data_loss_tables=[{"table": "orders", "key": "id"}],
        integrity_checks=[
            {"name": "totals positive", "sql": "SELECT id FROM orders WHERE total <= 0"}
        ],
        migrations_rollback=[str(rollback)],
    )
    root = str(tmp_path / "b")
    target = rbs.create_set(root, "shop", "predeploy", [spec], [], "", restore_test=True)
    [db] = target["databases"]
    assert db["file"] == "db/main.sql.gz" and db["schema_version"] == "3"
    assert db["tables"]["orders"]["rows"] == 1000
    assert target["verification"]["ok"], target["verification"]
    assert "db/main.sql.gz: gzip whole, dump completed" in target["verification"]["checks"]
    assert target["restore_test"]["tables"]["main"]["orders"]["rows"] == 1000

    my_sql(
        mariadb,
        "ALTER TABLE orders ADD COLUMN coupon varchar(5) DEFAULT 'X';"
        "CREATE TABLE coupons (code text);"
        "INSERT INTO schema_migrations VALUES (4);"
        "INSERT INTO orders VALUES (5001, 'n', 2, 'Y'), (5002, 'n', 2, 'Y');"
        "UPDATE orders SET customer = 'changed' WHERE id IN (7, 8);",
    )
    set_dir_, _ = rbs.choose_set(root, "shop")
    assert rbs.check_restorable(set_dir_, "shop", [spec])["ok"]
    rbs.create_forensic(root, "shop", [spec], run_id="r1", target=target)
    forensic_dir, _ = rbs.find_forensic(root, "shop", "r1")
    result = rbs.restore_set(set_dir_, [spec], forensic_dir)
    assert result["ok"] and result["data_loss"]["main"]["orders"] == {
        "missing": ["5001", "5002"],
        "changed": ["7", "8"],
        "missing_count": 2,
        "changed_count": 2,
        "dropped_columns": ["coupon"],
    }
    assert my_sql(mariadb, "SELECT count(*) FROM orders") == "1000"
    assert my_sql(mariadb, "SELECT max(version) FROM schema_migrations") == "3"
    assert "coupons" not in my_sql(mariadb, "SHOW TABLES")

    my_sql(mariadb, "UPDATE orders SET total = -1 WHERE id <= 2")
    assert rbs.integrity(spec)["failures"] == [
        {"name": "totals positive", "count": 2, "rows": [["1"], ["2"]]}
    ]
    bad = tmp_path / "005_rollback.sql"
    bad.write_text("INSERT INTO orders VALUES (9999, 'z', 1);\nSELECT * FROM nope;\n")
    with pytest.raises(
        rbs.BackupError, match=r"(?s)nothing of it applied: .*'shop\.nope' doesn't exist"
    ):
        rbs.run_migrations(spec, [str(bad)])
    assert my_sql(mariadb, "SELECT count(*) FROM orders WHERE id = 9999") == "0"
    with pytest.raises(rbs.BackupError, match="Access denied") as info:
        rbs.create_set(root, "shop", "manual", [{**spec, "password": "wrong-" + PASSWORD}], [], "")
    assert PASSWORD not in str(info.value)


# ----------------------------------------------------------------------------- in-place UPDATE
# On the throwaway PostgreSQL above: an UPDATE keeps the rows and the columns, only a value
# changes; the full level restores only when live_differences names a difference.


def test_postgresql_an_in_place_update_is_a_live_difference(pg: dict, pgdb: dict, tmp_path: Path):
    manifest = rbs.create_set(str(tmp_path / "b"), "shop", "predeploy", [pgdb], [], "")
    assert rbs.live_differences(manifest, [pgdb]) == {"main": []}
    before = shop_sql(pg, "SELECT customer FROM orders WHERE id = 500")

    shop_sql(pg, "UPDATE orders SET customer = 'in-place' WHERE id = 500")
    assert shop_sql(pg, "SELECT count(*) FROM orders") == "1000"  # same rows, same columns
    assert rbs.live_differences(manifest, [pgdb]) == {"main": ["orders: checksum differ"]}

    shop_sql(pg, f"UPDATE orders SET customer = '{before}' WHERE id = 500")  # the value back
    assert rbs.live_differences(manifest, [pgdb]) == {"main": []}
