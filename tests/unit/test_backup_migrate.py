"""The schema level's module_utils code (plugins/module_utils/backupset/migrate.py and the
engines' schema_snapshot/preview_migrations): the migration rollback files previewed in a
transaction that is rolled back, then applied after a forensic set, on real SQLite databases
and on the throwaway PostgreSQL server of test_backupset (skipped there without one)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rollback_ops.appspec import AppSpec
from rollback_ops.operations import Request, levels
from tests.conftest import load_module
from tests.unit.test_backup_external import build
from tests.unit.test_backupset import pg, pgdb, shop_sql  # noqa: F401 (fixtures)

rbs = load_module("plugins/module_utils/backupset")
migrate = load_module("plugins/module_utils/backupset/migrate.py")

ROLLBACK = (
    "ALTER TABLE orders DROP COLUMN has_video;\n"
    "ALTER TABLE orders DROP COLUMN has_media;\n"
    "DROP TABLE IF EXISTS videos;\n"
    "DELETE FROM schema_migrations WHERE version > 3;\n"
)


def sql(path: Path, query: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(query).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def bad_release(path: Path) -> None:
    """Release 4: two columns (3 and 2 non-null values), a table of 2 rows, version 4."""
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT);
        CREATE TABLE schema_migrations (version INTEGER);
        INSERT INTO schema_migrations VALUES (3);
        INSERT INTO orders(customer) VALUES ('a'), ('b'), ('c'), ('d');
        ALTER TABLE orders ADD COLUMN has_video INTEGER;
        ALTER TABLE orders ADD COLUMN has_media TEXT;
        CREATE TABLE videos (id INTEGER PRIMARY KEY, url TEXT);
        INSERT INTO schema_migrations VALUES (4);
        UPDATE orders SET has_video = 1 WHERE id <= 3;
        UPDATE orders SET has_media = 'x' WHERE id <= 2;
        INSERT INTO videos(url) VALUES ('u1'), (NULL);
        INSERT INTO orders(customer) VALUES ('written after the release');
        """
    )
    con.commit()
    con.close()


def spec_for(path: Path, script: Path, **kw: Any) -> dict:
    return {
        "name": "main",
        "engine": "sqlite",
        "path": str(path),
        "migrations_rollback": [str(script)],
        "integrity_checks": [
            {"name": "customers", "sql": "SELECT id FROM orders WHERE customer IS NULL"}
        ],
        **kw,
    }


@pytest.fixture
def app(tmp_path: Path) -> dict:
    db = tmp_path / "app.db"
    bad_release(db)
    script = tmp_path / "004_rollback.sql"
    script.write_text(ROLLBACK)
    return {"root": str(tmp_path / "backups"), "db": db, "spec": spec_for(db, script)}


def test_cost_lists_dropped_tables_and_columns_with_their_values():
    before = {
        "orders": {"rows": 5, "columns": {"id": 5, "has_video": 3, "has_media": 2}},
        "videos": {"rows": 2, "columns": {"id": 2, "url": 1}},
    }
    after = {"orders": {"rows": 5, "columns": {"id": 5}}, "new": {"rows": 0, "columns": {}}}
    cost = migrate.cost(before, after)
    assert cost["columns"] == [
        {"table": "orders", "column": "has_video", "non_null": 3},
        {"table": "orders", "column": "has_media", "non_null": 2},
    ]
    assert cost["tables"] == [{"table": "videos", "rows": 2, "non_null": 3}]
    assert cost["added"] == ["new"] and cost["values_lost"] == 8 and cost["changes"]
    same = migrate.cost(before, before)
    assert same["values_lost"] == 0 and not same["changes"] and same["columns"] == []


def test_sqlite_preview_counts_the_cost_and_changes_nothing(app: dict):
    before = app["db"].read_bytes()
    planned = rbs.preview_schema_rollback([app["spec"]])["main"]
    assert app["db"].read_bytes() == before  # not a byte
    assert [(c["column"], c["non_null"]) for c in planned["columns"]] == [
        ("has_video", 3),
        ("has_media", 2),
    ]
    assert planned["tables"] == [{"table": "videos", "rows": 2, "non_null": 3}]
    assert planned["rows_changed"] == {"schema_migrations": {"before": 2, "after": 1}}
    assert planned["values_lost"] == 8


def test_sqlite_apply_makes_a_forensic_set_drops_only_what_the_file_drops(app: dict):
    done = rbs.apply_schema_rollback(app["root"], "shop", [app["spec"]], run_id="r1")
    assert done["changed"] and done["ok"]
    assert done["dropped"]["main"]["values_lost"] == 8
    assert done["dropped"]["main"]["columns"] == done["planned"]["main"]["columns"]
    assert sql(app["db"], "SELECT id, customer FROM orders ORDER BY id")[-1] == (
        5,
        "written after the release",
    )
    assert [r[1] for r in sql(app["db"], "PRAGMA table_info(orders)")] == ["id", "customer"]
    assert done["integrity"]["main"]["passed"] == ["customers"]
    _dir, manifest = rbs.find_forensic(app["root"], "shop", "r1")
    assert manifest["set_id"] == done["forensic_set_id"] and manifest["kind"] == "forensic"
    assert manifest["databases"][0]["tables"]["videos"]["rows"] == 2  # what went, kept

    # a second apply: the preview finds nothing, nothing runs, no new set
    before = app["db"].read_bytes()
    again = rbs.apply_schema_rollback(app["root"], "shop", [app["spec"]], run_id="r2")
    assert not again["changed"] and again["forensic_set_id"] == ""
    assert again["migrations"] == {} and again["dropped"] == {}
    assert not again["planned"]["main"]["changes"] and app["db"].read_bytes() == before
    assert "has_video" in again["planned"]["main"]["already_applied"]  # no IF EXISTS in SQLite
    assert rbs.find_forensic(app["root"], "shop", "r2") is None
    # a changed file is not the one recorded: its failing preview is an error again
    script = Path(app["spec"]["migrations_rollback"][0])
    script.write_text(ROLLBACK + "-- edited\n")
    with pytest.raises(rbs.BackupError, match=r"database main: preview.*has_video"):
        rbs.apply_schema_rollback(app["root"], "shop", [app["spec"]], run_id="r3")


def test_a_file_that_fails_midway_changes_nothing_and_is_named(app: dict, tmp_path: Path):
    broken = tmp_path / "broken.sql"
    broken.write_text("ALTER TABLE orders DROP COLUMN has_video;\nDROP TABLE nope;\n")
    spec = spec_for(app["db"], broken)
    before = app["db"].read_bytes()
    with pytest.raises(rbs.BackupError, match=r"preview of the migration rollback.*nope"):
        rbs.apply_schema_rollback(app["root"], "shop", [spec])
    assert app["db"].read_bytes() == before
    assert not Path(app["root"]).exists()  # refused before the forensic set


def test_a_file_with_its_own_transaction_or_missing_is_refused(app: dict, tmp_path: Path):
    own = tmp_path / "own.sql"
    own.write_text("BEGIN;\nALTER TABLE orders DROP COLUMN has_video;\nCOMMIT;\n")
    with pytest.raises(rbs.BackupError, match=r"own.sql has its own BEGIN"):
        rbs.preview_schema_rollback([spec_for(app["db"], own)])
    with pytest.raises(rbs.BackupError, match=r"migration .*missing.sql"):
        rbs.preview_schema_rollback([spec_for(app["db"], tmp_path / "missing.sql")])
    # PL/pgSQL's BEGIN (no semicolon) is not a transaction statement
    plpgsql = tmp_path / "fn.sql"
    plpgsql.write_text("CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND\n$$;\n")
    assert migrate.read_scripts(spec_for(app["db"], plpgsql)) == [plpgsql.read_bytes()]


def test_a_database_without_files_costs_nothing(app: dict):
    spec = {**app["spec"], "migrations_rollback": []}
    assert rbs.preview_schema_rollback([spec])["main"]["changes"] is False


def test_postgresql_preview_apply_and_a_second_apply(
    pg: dict,  # noqa: F811
    pgdb: dict,  # noqa: F811
    tmp_path: Path,
):
    shop_sql(
        pg,
        "ALTER TABLE orders ADD COLUMN has_video boolean, ADD COLUMN has_media text;"
        "UPDATE orders SET has_video = true WHERE id <= 30;"
        "UPDATE orders SET has_media = 'm' WHERE id <= 20;"
        "INSERT INTO schema_migrations VALUES (4);"
        "INSERT INTO orders(id, customer, total) VALUES (5001, 'after', 1);",
    )
    script = tmp_path / "004_rollback.sql"
    script.write_text(
        "ALTER TABLE orders DROP COLUMN IF EXISTS has_video, DROP COLUMN IF EXISTS has_media;\n"
        "DELETE FROM schema_migrations WHERE version > 3;\n"
    )
    spec = {**pgdb, "migrations_rollback": [str(script)]}
    planned = rbs.preview_schema_rollback([spec])["main"]
    assert [(c["column"], c["non_null"]) for c in planned["columns"]] == [
        ("has_video", 30),
        ("has_media", 20),
    ]
    assert planned["values_lost"] == 50
    assert shop_sql(pg, "SELECT count(has_video) FROM orders") == "30"  # rolled back

    root = str(tmp_path / "b")
    done = rbs.apply_schema_rollback(root, "shop", [spec], run_id="r1")
    assert done["ok"] and done["dropped"]["main"]["values_lost"] == 50
    assert shop_sql(pg, "SELECT count(*), max(id) FROM orders") == "1001|5001"
    assert shop_sql(pg, "SELECT max(version) FROM schema_migrations") == "3"
    assert rbs.find_forensic(root, "shop", "r1") is not None
    again = rbs.apply_schema_rollback(root, "shop", [spec], run_id="r2")
    assert not again["changed"] and again["migrations"] == {}


def _app(**db: Any) -> AppSpec:
    raw = {
        "name": "vidapp",
        "units": ["vidapp"],
        "databases": [{"name": "main", "engine": "sqlite", "path": "/srv/v/app.db", **db}],
    }
    return build(raw)


def test_the_schema_level_plan_and_its_refusals():
    schema = levels.Schema()
    request = Request(level="schema")
    app = _app(migrations_rollback=["/srv/v/004_rollback.sql"])
    assert schema.check(app, request) == []
    steps = schema.plan("web1", app, request)
    order = ["preview", "forensic set", "run main: /srv/v/004_rollback.sql"]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(o)) for o in order]
    assert positions == sorted(positions)
    assert "rolled back" in steps[0] and not any(s.startswith("stop") for s in steps)
    assert schema.check(_app(), request) == [
        "app vidapp has no rollback_app.databases[].migrations_rollback to run"
    ]
    mysql = build(
        {
            "name": "vidapp",
            "databases": [
                {
                    "name": "my",
                    "engine": "mysql",
                    "database": "v",
                    "migrations_rollback": ["/r.sql"],
                }
            ],
        }
    )
    (problem,) = schema.check(mysql, request)
    assert problem.startswith("database my: the schema level runs on postgresql and sqlite")


def test_the_level_end_to_end_through_the_cli_on_a_local_sqlite_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], app: dict
):
    """The real CLI and playbook (the demo's sandbox, local connection): check mode shows the
    cost and changes nothing; the apply drops the columns after a forensic set, the recap and
    the Rollback Log list them; a second apply changes nothing."""
    from rollback_ops import report
    from tests.unit.ci_sandbox import run, sandbox

    backups = str(tmp_path / "backups")
    sandbox(tmp_path, databases=[app["spec"]], backup={"root": backups})
    argv = ("apply", "--level", "schema", "-i", "local", "--yes")
    before = app["db"].read_bytes()
    code, _out, err = run(capsys, tmp_path, *argv, "--check", "--diff")
    assert code == 0, err
    assert app["db"].read_bytes() == before and not Path(backups).exists()
    assert (
        "main: migration rollback would drop column orders.has_video (3 value(s)); column "
        "orders.has_media (2 value(s)); table videos (2 row(s), 3 value(s)) - "
        "8 non-null value(s) lost" in err
    ), err

    code, out, err = run(capsys, tmp_path, *argv, "--json")
    assert code == 0, err
    receipt = json.loads(out)
    data = receipt["hosts"]["localhost"]["data"]
    assert data["dropped"]["main"]["values_lost"] == 8 and data["forensic_set_id"]
    assert [r[1] for r in sql(app["db"], "PRAGMA table_info(orders)")] == ["id", "customer"]
    assert sql(app["db"], "SELECT count(*) FROM orders") == [(5,)]
    log = report.render(tmp_path, receipt["run_id"])
    assert "| main | column orders.has_video | - | 3 |" in log
    assert f"kept in forensic set `{data['forensic_set_id']}`" in log

    code, out, err = run(capsys, tmp_path, *argv, "--json")
    assert code == 0, err
    assert json.loads(out)["changed"] == 0
    assert "main: schema already rolled back, nothing to drop" in err
