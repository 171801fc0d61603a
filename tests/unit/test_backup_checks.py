"""What the full and code levels ask of a backup set before touching anything: whether the
live databases differ from it, and whether the target release ran with an older schema
(real SQLite databases in a temporary directory)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from tests.conftest import load_module

rbs = load_module("plugins/module_utils/backupset")


def make(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, amount REAL);"
        "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY);"
        "INSERT INTO schema_migrations VALUES (1), (2), (3);"
    )
    con.executemany("INSERT INTO orders(amount) VALUES (?)", [(i * 1.5,) for i in range(50)])
    con.commit()
    con.close()


def spec(path: Path, **extra: object) -> dict:
    return {
        "name": "main",
        "engine": "sqlite",
        "path": str(path),
        "schema_version_query": "SELECT max(version) FROM schema_migrations",
        **extra,
    }


def release(tmp_path: Path) -> Path:
    """A code checkout with one commit (the release a set is taken with)."""
    code = tmp_path / "code"
    code.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        "git init -q && git commit -q --allow-empty -m r1",
        shell=True,
        cwd=code,
        env=env,
        check=True,
    )
    return code


def test_live_differences_name_what_changed_since_the_set(tmp_path: Path):
    db = tmp_path / "app.db"
    make(db)
    manifest = rbs.create_set(str(tmp_path / "b"), "app", "predeploy", [spec(db)], [])
    assert rbs.live_differences(manifest, [spec(db)]) == {"main": []}
    con = sqlite3.connect(db)
    con.execute("INSERT INTO orders(amount) VALUES (9)")
    con.execute("ALTER TABLE orders ADD COLUMN risk REAL")
    con.execute("CREATE TABLE order_scores(id INTEGER)")
    con.commit()
    con.close()
    diffs = rbs.live_differences(manifest, [spec(db)])["main"]
    assert "orders: rows differ" in diffs and "orders: columns differ" in diffs
    assert "table order_scores is not in the set" in diffs
    db.unlink()
    assert rbs.live_differences(manifest, [spec(db)]) == {"main": [f"{db} does not exist"]}


def test_schema_check_compares_the_release_s_recorded_schema_with_the_live_one(
    tmp_path: Path,
):
    db, root = tmp_path / "app.db", str(tmp_path / "b")
    make(db)
    manifest = rbs.create_set(root, "app", "predeploy", [spec(db)], [], str(release(tmp_path)))
    # no set was taken with that release: nothing to compare
    assert rbs.schema_check(root, "app", [spec(db)], "f" * 40)["set_id"] == ""
    ref = manifest["code"]["ref"]
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_migrations VALUES (10)")
    con.commit()
    con.close()
    result = rbs.schema_check(root, "app", [spec(db)], ref)
    assert result["set_id"] == manifest["set_id"]
    # 10 > 3 compared as numbers, not text
    assert result["databases"]["main"] == {
        "recorded": "3",
        "live": "10",
        "older": True,
        "migrations_rollback": False,
    }
    with_rollback = spec(db, migrations_rollback=["/srv/004_rollback.sql"])
    assert rbs.schema_check(root, "app", [with_rollback], ref)["databases"]["main"][
        "migrations_rollback"
    ]


def test_a_set_of_another_database_file_is_refused_whichever_way_the_paths_sort(tmp_path: Path):
    for recorded, wanted in (("a.db", "b.db"), ("b.db", "a.db")):
        root = tmp_path / recorded / "b"
        (tmp_path / recorded).mkdir()
        first, second = tmp_path / recorded / recorded, tmp_path / recorded / wanted
        make(first)
        make(second)
        manifest = rbs.create_set(str(root), "app", "predeploy", [spec(first)], [])
        rbs.verify_set(str(root), "app", manifest["set_id"], [spec(first)])
        set_dir = rbs.set_path(str(root), "app", manifest["set_id"])
        assert rbs.check_restorable(set_dir, "app", [spec(first)])["ok"]
        outcome = rbs.check_restorable(set_dir, "app", [spec(second)])
        assert not outcome["ok"]
        assert (
            f"database main: the set holds {str(first)!r}, the spec says {str(second)!r}"
            in (outcome["problems"])
        )


def test_a_database_the_set_does_not_hold_does_not_hide_the_next_ones(tmp_path: Path):
    db = tmp_path / "app.db"
    make(db)
    manifest = rbs.create_set(str(tmp_path / "b"), "app", "predeploy", [spec(db)], [])
    con = sqlite3.connect(db)
    con.execute("UPDATE orders SET amount = amount + 1 WHERE id = 7")
    con.commit()
    con.close()
    other = {**spec(tmp_path / "other.db"), "name": "aaa-other"}
    assert rbs.live_differences(manifest, [other, spec(db)]) == {
        "main": ["orders: checksum differ"]
    }


def test_what_makes_a_set_unrestorable_is_each_said(tmp_path: Path):
    db, root = tmp_path / "app.db", str(tmp_path / "b")
    make(db)
    manifest = rbs.create_set(root, "app", "predeploy", [spec(db)], [])
    set_dir = rbs.set_path(root, "app", manifest["set_id"])
    set_id = manifest["set_id"]
    # another app's set, whichever way the names sort
    for app in ("zzz", "aaa"):
        problems = rbs.check_restorable(set_dir, app, [spec(db)])["problems"]
        assert f"the set {set_id} is app 'app''s, not {app!r}'s" in problems
    # never verified (the set as created records no verification outcome)
    layout = load_module("plugins/module_utils/backupset/layout.py")
    stripped = layout.read_manifest(set_dir)
    stripped.pop("verification", None)
    layout.write_manifest(set_dir, stripped)
    problems = rbs.check_restorable(set_dir, "app", [spec(db)])["problems"]
    assert f"the set {set_id} did not pass verification: never verified" in problems
    # a database missing from the set does not hide a mismatch of the next one
    other = {**spec(tmp_path / "x.db"), "name": "aaa"}
    wrong = {**spec(tmp_path / "y.db")}
    problems = rbs.check_restorable(set_dir, "app", [other, wrong])["problems"]
    assert "database aaa: not in the set" in problems
    assert any(p.startswith("database main: the set holds") for p in problems)
    # no manifest at all
    empty = tmp_path / "empty"
    empty.mkdir()
    outcome = rbs.check_restorable(empty, "app", [spec(db)])
    assert outcome["ok"] is False and outcome["checks"] == [] and len(outcome["problems"]) == 1


def test_a_database_that_is_gone_does_not_hide_the_next_ones(tmp_path: Path):
    db = tmp_path / "app.db"
    make(db)
    gone = tmp_path / "gone.db"
    make(gone)
    both = [{**spec(gone), "name": "aaa"}, spec(db)]
    manifest = rbs.create_set(str(tmp_path / "b"), "app", "predeploy", both, [])
    gone.unlink()
    assert rbs.live_differences(manifest, both) == {"aaa": [f"{gone} does not exist"], "main": []}


def test_the_schema_check_reads_the_releases_own_set_never_a_forensic_one(tmp_path: Path):
    db, root = tmp_path / "app.db", str(tmp_path / "b")
    make(db)
    code = release(tmp_path)
    taken = rbs.create_set(root, "app", "predeploy", [spec(db)], [], str(code))
    rbs.verify_set(root, "app", taken["set_id"], [spec(db)])
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_migrations VALUES (4)")
    con.commit()
    con.close()
    time.sleep(1.1)  # set ids are stamped to the second
    forensic = rbs.create_set(root, "app", "forensic", [spec(db)], [], str(code))
    rbs.verify_set(root, "app", forensic["set_id"], [spec(db)])
    ref = taken["code"]["ref"]
    unversioned = {**spec(db), "name": "aaa", "schema_version_query": ""}
    result = rbs.schema_check(root, "app", [unversioned, spec(db)], ref)
    assert result["set_id"] == taken["set_id"]
    assert result["databases"] == {
        "main": {"recorded": "3", "live": "4", "older": True, "migrations_rollback": False}
    }
    # the same schema as recorded is not older
    con = sqlite3.connect(db)
    con.execute("DELETE FROM schema_migrations WHERE version = 4")
    con.commit()
    con.close()
    assert rbs.schema_check(root, "app", [spec(db)], ref)["databases"]["main"]["older"] is False


def two_database_set(tmp_path: Path) -> tuple[Path, dict, list[dict]]:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    make(first)
    make(second)
    specs = [{**spec(first), "name": "aaa"}, spec(second)]
    manifest = rbs.create_set(str(tmp_path / "b"), "app", "predeploy", specs, [])
    return rbs.set_path(str(tmp_path / "b"), "app", manifest["set_id"]), manifest, specs


def test_every_file_of_a_set_is_checked_even_after_a_missing_or_broken_one(tmp_path: Path):
    verify = load_module("plugins/module_utils/backupset/verify.py")
    set_dir, manifest, _specs = two_database_set(tmp_path)
    aaa, main = manifest["databases"]
    (set_dir / aaa["file"]).unlink()
    checks: list[str] = []
    problems: list[str] = []
    verify.check_files(set_dir, manifest, checks, problems)
    verify.check_dumps(set_dir, manifest, checks, problems)
    assert problems == [f"{aaa['file']}: missing"]
    assert f"{main['file']}: sha256 ok" in checks
    assert any(c.startswith(f"{main['file']}: ") and "sha256" not in c for c in checks)


def test_a_manifest_whose_size_disagrees_with_a_matching_file_is_a_problem(tmp_path: Path):
    verify = load_module("plugins/module_utils/backupset/verify.py")
    set_dir, manifest, _specs = two_database_set(tmp_path)
    entry = manifest["databases"][1]
    real = entry["size"]
    for size in (real - 1, real + 1):
        entry["size"] = size
        problems: list[str] = []
        verify.check_files(set_dir, manifest, [], problems)
        digest = entry["sha256"]
        assert problems == [
            f"{entry['file']}: sha256 {digest[:16]} ({real} bytes) differs from the manifest's "
            f"{digest[:16]} ({size} bytes)"
        ]


def test_a_dump_of_an_unknown_engine_is_a_problem_not_a_crash(tmp_path: Path):
    verify = load_module("plugins/module_utils/backupset/verify.py")
    set_dir, manifest, _specs = two_database_set(tmp_path)
    manifest["databases"][0]["engine"] = "nosuch"
    checks: list[str] = []
    problems: list[str] = []
    verify.check_dumps(set_dir, manifest, checks, problems)
    assert len(problems) == 1 and "unknown database engine 'nosuch'" in problems[0]
    assert len(checks) == 1  # the next database was still checked


def test_a_restore_test_compares_every_table_both_ways(tmp_path: Path):
    verify = load_module("plugins/module_utils/backupset/verify.py")
    set_dir, manifest, specs = two_database_set(tmp_path)
    good = verify.restore_test(set_dir, manifest, specs)
    assert good["ok"] and good["problems"] == []
    assert set(good["tables"]) == {"aaa", "main"}
    verification, _ = verify.verify(set_dir, manifest, specs, True)
    assert "restore test ok" in verification["checks"] and verification["ok"]
    orders = manifest["databases"][1]["tables"]["orders"]
    for rows in (orders["rows"] - 1, orders["rows"] + 1):
        manifest["databases"][1]["tables"]["orders"] = {**orders, "rows": rows}
        bad = verify.restore_test(set_dir, manifest, specs)
        assert not bad["ok"] and len(bad["problems"]) == 1, bad
        assert bad["problems"][0].startswith("main.orders: restored 50 rows")
        verification, _ = verify.verify(set_dir, manifest, specs, True)
        assert "restore test ok" not in verification["checks"] and not verification["ok"]
    manifest["databases"][1]["tables"]["orders"] = orders
    # a database that cannot be restored does not hide the next one
    manifest["databases"][0]["engine"] = "nosuch"
    broken = verify.restore_test(set_dir, manifest, specs)
    assert broken["problems"][0].startswith("aaa: unknown database engine")
    assert "main" in broken["tables"]


def test_the_schema_check_matches_the_ref_exactly_and_only_databases_with_a_record(
    tmp_path: Path,
):
    db, root = tmp_path / "app.db", str(tmp_path / "b")
    make(db)
    code = release(tmp_path)
    taken = rbs.create_set(root, "app", "predeploy", [spec(db)], [], str(code))
    rbs.verify_set(root, "app", taken["set_id"], [spec(db)])
    ref = taken["code"]["ref"]
    # a ref sorting before the set's is another release: no set was taken with it
    assert rbs.schema_check(root, "app", [spec(db)], "0" * 40)["set_id"] == ""
    # a database the set recorded no version of is not compared, even with a query
    unrecorded = {**spec(tmp_path / "other.db"), "name": "aaa"}
    make(tmp_path / "other.db")
    result = rbs.schema_check(root, "app", [unrecorded, spec(db)], ref)
    assert list(result["databases"]) == ["main"]
    # a live schema behind the recorded one is not "older"
    con = sqlite3.connect(db)
    con.execute("DELETE FROM schema_migrations WHERE version = 3")
    con.commit()
    con.close()
    main = rbs.schema_check(root, "app", [spec(db)], ref)["databases"]["main"]
    assert (main["recorded"], main["live"], main["older"]) == ("3", "2", False)


def test_a_set_of_another_engine_is_refused_whichever_way_the_names_sort(tmp_path: Path):
    layout = load_module("plugins/module_utils/backupset/layout.py")
    db, root = tmp_path / "app.db", str(tmp_path / "b")
    make(db)
    taken = rbs.create_set(root, "app", "predeploy", [spec(db)], [])
    rbs.verify_set(root, "app", taken["set_id"], [spec(db)])
    set_dir = rbs.set_path(root, "app", taken["set_id"])
    manifest = layout.read_manifest(set_dir)
    for engine in ("mysql", "zzz"):
        manifest["databases"][0]["engine"] = engine
        layout.write_manifest(set_dir, manifest)
        problems = rbs.check_restorable(set_dir, "app", [spec(db)])["problems"]
        assert f"database main: the set holds {engine}, the spec says sqlite" in problems
