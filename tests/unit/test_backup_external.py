"""External backups (plugins/module_utils/backupset/external.py): which file is the newest
(the stamp in the name, else mtime), and, on real SQLite files, the read-only check, the
adoption into a verified set (a backup's own -wal folded in) and finding that set again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rollback_ops import appspec
from rollback_ops.appspec import AppSpec
from rollback_ops.operations import Request, levels
from tests.conftest import load_module
from tests.unit import test_backupset as backupset_tests

ext = load_module("plugins/module_utils/backupset/external.py")
rbs = load_module("plugins/module_utils/backupset")


# ----------------------------------------------------------------------------- picking


@pytest.mark.parametrize(
    ("name", "stamp"),
    [
        ("ancestry_backup_20251223_101500.db", "20251223101500"),
        ("backup_20251201.sql", "20251201000000"),
        ("db-20250102T030405.dump", "20250102030405"),
        ("v2_backup_20250230_000000.db", ""),  # no such date
        ("app_backup_latest.db", ""),
        ("x_20240101_000000_then_20250101_120000.db", "20250101120000"),  # the last stamp
        ("id_123456789012.db", ""),  # too many digits to be a date
    ],
)
def test_the_stamp_in_a_name(name: str, stamp: str):
    assert ext.name_stamp(name) == stamp


def test_newest_by_name_wins_over_a_newer_mtime():
    files = [
        ("/b/ancestry_backup_20251223_101500.db", 100.0),  # newest stamp, oldest mtime
        ("/b/ancestry_backup_20251222_235959.db", 900.0),
        ("/b/ancestry_backup_latest.db", 999.0),  # no stamp: after the stamped ones
    ]
    assert ext.newest_first(files, "name") == [
        "/b/ancestry_backup_20251223_101500.db",
        "/b/ancestry_backup_20251222_235959.db",
        "/b/ancestry_backup_latest.db",
    ]


def test_newest_by_mtime_ignores_the_names():
    files = [("/b/backup_20251223.sql", 100.0), ("/b/backup_20251201.sql", 900.0)]
    assert ext.newest_first(files, "mtime") == ["/b/backup_20251201.sql", "/b/backup_20251223.sql"]
    # without any stamp, order name falls back to mtime
    plain = [("/b/a.db", 5.0), ("/b/b.db", 7.0)]
    assert ext.newest_first(plain, "name") == ["/b/b.db", "/b/a.db"]
    with pytest.raises(ext.BackupError, match="order 'size'"):
        ext.newest_first(files, "size")


def test_resolve_picks_from_the_glob_and_leaves_sidecars_out(tmp_path: Path):
    for name, mtime in (
        ("ancestry_backup_20250101_080000.db", 2_000_000_000),
        ("ancestry_backup_20250102_090000.db", 1_000_000_000),
        ("ancestry_backup_20250103_000000.db-wal", 2_000_000_000),
    ):
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    spec = {
        "name": "main",
        "engine": "sqlite",
        "path": str(tmp_path / "live.db"),
        "external_backups": {"glob": str(tmp_path / "ancestry_backup_*.db*")},
    }
    chosen = ext.resolve(rbs.normalize_database(spec))
    assert chosen["path"] == str(tmp_path / "ancestry_backup_20250102_090000.db")
    assert chosen["format"] == "sqlite" and chosen["chosen"] == "newest of 2 by name"
    spec["external_backups"]["order"] = "mtime"
    assert ext.resolve(rbs.normalize_database(spec))["path"].endswith("20250101_080000.db")
    with pytest.raises(ext.BackupError, match="no file matches"):
        ext.resolve(rbs.normalize_database({**spec, "external_backups": {"glob": "/nope/*.db"}}))
    with pytest.raises(ext.BackupError, match="cannot restore a sqlite database"):
        ext.resolve(
            rbs.normalize_database(
                {**spec, "external_backups": {"glob": "/x", "format": "mysqldump"}}
            )
        )


# ----------------------------------------------------------------------------- SQLite files


def make_db(path: Path, rows: int, wal: bool = False) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), isolation_level=None)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE IF NOT EXISTS people(id INTEGER PRIMARY KEY, name TEXT)")
    for i in range(rows):
        con.execute("INSERT INTO people(name) VALUES (?)", (f"p{i}",))
    return con


def test_an_sqlite_backup_is_checked_adopted_once_and_its_own_wal_counted(tmp_path: Path):
    live = tmp_path / "ancestry.db"
    make_db(live, 5).close()
    backup = tmp_path / "ancestry_backup_20250102_090000.db"
    con = make_db(backup, 3, wal=True)  # held open: 3 rows live in its -wal only
    assert (tmp_path / (backup.name + "-wal")).stat().st_size > 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    spec = {"name": "main", "engine": "sqlite", "path": str(live)}
    sources = ext.external_sources([spec], {"main": str(backup)})
    checked = ext.check_external([spec], sources)
    assert checked["problems"] == [] and "integrity_check ok" in checked["checks"][0]
    # checking wrote nothing next to the backup (no -shm, no checkpoint)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    root = tmp_path / "sets"
    manifest = ext.adopt(str(root), "ancestry", [spec], sources)
    con.close()
    assert manifest["kind"] == "external" and manifest["verification"]["ok"]
    assert manifest["databases"][0]["tables"]["people"]["rows"] == 3
    assert manifest["sources"][0]["sha256"] == sources[0]["sha256"]
    assert ext.find_adopted(str(root), "ancestry", sources)[1]["set_id"] == manifest["set_id"]
    # the set restores like any other; another file is another set
    set_dir = root / "ancestry" / manifest["set_id"]
    assert rbs.check_restorable(set_dir, "ancestry", [spec])["ok"]
    other = ext.external_sources([spec], {"main": str(live)})
    assert ext.find_adopted(str(root), "ancestry", other) is None


def test_a_corrupt_sqlite_backup_is_refused(tmp_path: Path):
    backup = tmp_path / "ancestry_backup_20250102_090000.db"
    make_db(backup, 200).close()
    with backup.open("r+b") as handle:  # the table's pages overwritten
        handle.seek(4096)
        handle.write(b"\xff" * 4096)
    spec = {"name": "main", "engine": "sqlite", "path": str(tmp_path / "live.db")}
    sources = ext.external_sources([spec], {"main": str(backup)})
    problems = ext.check_external([spec], sources)["problems"]
    assert len(problems) == 1 and str(backup) in problems[0]
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello")
    sources = ext.external_sources([spec], {"main": str(not_sqlite)})
    assert "not an SQLite database" in ext.check_external([spec], sources)["problems"][0]


# ----------------------------------------------------------------------------- the level


def build(raw: dict[str, object]) -> AppSpec:
    app, problems = appspec._load_validator().validate_app(raw)
    assert not problems, problems
    return appspec.build(app)


def app(**db: object) -> AppSpec:
    return build(
        {
            "name": "ancestry",
            "units": ["ancestry"],
            "databases": [
                {"name": "main", "engine": "sqlite", "path": "/srv/a/Data/ancestry.db", **db}
            ],
        }
    )


def test_the_data_level_plan_and_its_refusals():
    external = {"external_backups": {"glob": "/srv/a/Data/backups/ancestry_backup_*.db"}}
    data = levels.Data()
    request = Request(level="data", backup_from="external")
    assert data.check(app(**external), request) == []
    steps = data.plan("web1", app(**external), request)
    text = "\n".join(steps)
    assert (
        "the newest of /srv/a/Data/backups/ancestry_backup_*.db (by the stamp in the name)" in text
    )
    assert "PRAGMA integrity_check" in steps[0] and "before anything stops" in steps[0]
    order = [
        "adopt the external",
        "stop ancestry",
        "forensic set",
        "restore main",
        "start ancestry",
    ]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(o)) for o in order]
    assert positions == sorted(positions)
    assert "code" not in text.replace("no code", "")
    # no external_backups declared, no --backup-file: one line naming the option
    (problem,) = data.check(app(), request)
    assert "declares no external_backups; give --backup-file main=PATH" in problem
    assert data.check(app(), Request(level="data", backup_files={"main": "/b.db"})) == [
        "--backup-file is for --from external"
    ]
    assert data.check(build({"name": "x"}), Request(level="data")) == [
        "app x has no rollback_app.databases to restore"
    ]


def test_the_schema_checks_external_backups():
    raw = {
        "name": "ancestry",
        "databases": [
            {
                "name": "main",
                "engine": "sqlite",
                "path": "/srv/a/Data/ancestry.db",
                "external_backups": {"glob": "Data/backups/*.db", "format": "postgresql_plain"},
            }
        ],
    }
    _, problems = appspec._load_validator().validate_app(raw)
    assert dict(problems) == {
        "rollback_app.databases[0].external_backups.glob": "'Data/backups/*.db' is not an "
        "absolute path",
        "rollback_app.databases[0].external_backups.format": "a postgresql_plain backup cannot "
        "restore a sqlite database",
    }
    spec = app(external_backups={"glob": "/b/*.db", "order": "mtime"}).databases[0]
    assert (spec.external_glob, spec.external_format, spec.external_order) == (
        "/b/*.db",
        "",
        "mtime",
    )


# ----------------------------------------------------------------------------- PostgreSQL dumps

pg = backupset_tests.pg  # a throwaway server (test_backupset), and its database shop
pgdb = backupset_tests.pgdb


def pg_dump(spec: dict, dest: Path, *options: str) -> None:
    argv = ["pg_dump", "-h", "127.0.0.1", "-p", str(spec["port"]), "-U", "shop", "-d", "shop"]
    env = {**os.environ, "PGPASSWORD": spec["password"]}
    with dest.open("wb") as out:
        subprocess.run([*argv, *options], stdout=out, env=env, check=True)


def test_postgresql_plain_and_custom_dumps_checked_and_adopted(pgdb: dict, tmp_path: Path):
    plain, custom = tmp_path / "backup_20251201.sql", tmp_path / "backup_20251201.dump"
    pg_dump(pgdb, plain)
    pg_dump(pgdb, custom, "-Fc")
    spec = {**pgdb, "external_backups": {"glob": str(plain), "format": "postgresql_plain"}}
    sources = ext.external_sources([spec], {})
    checked = ext.check_external([spec], sources)
    assert checked["problems"] == [] and "loads into a scratch database" in checked["checks"][0]
    manifest = ext.adopt(str(tmp_path / "sets"), "shop", [spec], sources)
    assert manifest["verification"]["ok"]
    (entry,) = manifest["databases"]
    assert entry["tables"]["orders"]["rows"] == 1000 and entry["schema_version"] == "3"
    assert (tmp_path / "sets" / "shop" / manifest["set_id"] / entry["file"]).read_bytes()[:5] == (
        b"PGDMP"  # stored as a custom archive: the restore is the usual pg_restore
    )
    assert rbs.live_differences(manifest, [spec]) == {"main": []}

    # a custom archive declared plain, a plain dump declared custom, a --create dump: refused
    wrong = ext.check_external([spec], ext.external_sources([spec], {"main": str(custom)}))
    assert "custom archive, not plain SQL" in wrong["problems"][0]
    as_custom = {**pgdb, "external_backups": {"glob": str(plain), "format": "postgresql_custom"}}
    wrong = ext.check_external([as_custom], ext.external_sources([as_custom], {}))
    assert "not a pg_dump custom archive" in wrong["problems"][0]
    created = tmp_path / "backup_20251202.sql"
    pg_dump(pgdb, created, "--create")
    wrong = ext.check_external([spec], ext.external_sources([spec], {"main": str(created)}))
    assert "switches database" in wrong["problems"][0]
    custom_ok = ext.check_external(
        [as_custom], ext.external_sources([as_custom], {"main": str(custom)})
    )
    assert custom_ok["problems"] == []
