"""What the full and code levels ask of a backup set before touching anything: whether the
live databases differ from it, and whether the target release ran with an older schema
(real SQLite databases in a temporary directory)."""

from __future__ import annotations

import sqlite3
import subprocess
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
    manifest = rbs.create_set(root, "app", "predeploy", [spec(db)], [], str(code))
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
