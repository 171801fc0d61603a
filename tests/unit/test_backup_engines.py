"""The backup engine's registry and each Engine class on its own (plugins/module_utils/backupset/
engines/): which class a spec gets, what each refuses, and each engine's live-database parts
(columns, row keys, values, offending rows) and dump check, on real SQLite files and on the
throwaway PostgreSQL and MariaDB servers of test_backupset (the same fixtures)."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

import pytest

import tests.unit.test_backupset as servers
from tests.conftest import load_module
from tests.requirements import need

engines = load_module("plugins/module_utils/backupset/engines")
specs = load_module("plugins/module_utils/backupset/specs.py")
BackupError = load_module("plugins/module_utils/backupset/common.py").BackupError

pg = servers.pg
pgdb = servers.pgdb
mariadb = servers.mariadb


def sqlite_db(path: Path) -> dict:
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL);"
        "INSERT INTO orders VALUES (1, 'a', 1.5), (2, 'b', 0), (3, NULL, -2);"
        "CREATE TABLE schema_migrations (version INTEGER);"
        "INSERT INTO schema_migrations VALUES (7);"
    )
    con.commit()
    con.close()
    return specs.normalize_database(
        {
            "name": "main",
            "engine": "sqlite",
            "path": str(path),
            "schema_version_query": "SELECT max(version) FROM schema_migrations",
        }
    )


# ----------------------------------------------------------------------------- the registry


def test_the_registry_gives_each_engine_its_class_and_names_an_unknown_one():
    assert list(engines.ENGINES) == ["postgresql", "sqlite", "mysql"]
    for name, cls in engines.ENGINES.items():
        assert cls.name == name and issubclass(cls, engines.Engine)
        assert engines.engine_class(name) is cls
    assert engines.engine_for({"name": "m", "engine": "mysql", "database": "d"}).name == "mysql"
    for unknown in ("oracle", None, ["sqlite"]):
        with pytest.raises(BackupError, match=r"unknown database engine .*: one of postgresql"):
            engines.engine_for({"name": "x", "engine": unknown})
    with pytest.raises(BackupError, match="'oracle'"):
        engines.offline_engine({"name": "x", "engine": "oracle"})


def test_each_engine_checks_its_own_spec_fields():
    with pytest.raises(BackupError, match="database x: engine must be one of postgresql, sqlite"):
        specs.normalize_database({"name": "x", "engine": ["sqlite"]})
    with pytest.raises(BackupError, match="database x: sqlite needs an absolute path"):
        specs.normalize_database({"name": "x", "engine": "sqlite", "path": "app.db"})
    for engine in ("postgresql", "mysql"):
        with pytest.raises(BackupError, match=f"database x: {engine} needs database"):
            specs.normalize_database({"name": "x", "engine": engine})
    spec = specs.normalize_database({"name": "x", "engine": "postgresql", "database": "d"})
    assert engines.engine_for(spec).label == "d"
    assert engines.engine_for(specs.normalize_database({**spec, "engine": "mysql"})).label == "d"


def test_a_server_engine_without_a_spec_reads_dumps_but_cannot_connect(tmp_path: Path):
    for name in ("postgresql", "mysql"):
        engine = engines.offline_engine({"name": "main", "engine": name})
        with pytest.raises(BackupError, match="no database spec given to connect with"):
            engine.restore_test(tmp_path / "x", ["orders"])
    db = tmp_path / "app.db"
    sqlite_db(db)
    offline = engines.offline_engine({"name": "main", "engine": "sqlite"})
    assert offline.restore_test(db, ["orders"])["orders"]["rows"] == 3


def test_each_password_reaches_its_own_tool_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PGPASSWORD", "inherited-pg")
    monkeypatch.setenv("MYSQL_PWD", "inherited-my")
    my = engines.engine_for({"name": "m", "engine": "mysql", "database": "d", "password": "pw-my"})
    env = my.env()
    assert env["MYSQL_PWD"] == "pw-my" and "PGPASSWORD" not in env
    assert "PGAPPNAME" not in env  # PostgreSQL's own settings go to PostgreSQL's tools
    pg_env = engines.engine_for({"name": "p", "engine": "postgresql", "database": "d"}).env()
    assert "PGPASSWORD" not in pg_env and "MYSQL_PWD" not in pg_env
    assert pg_env["PGAPPNAME"] == "rollback-ops"


# ----------------------------------------------------------------------------- dump checks


def test_each_engine_reads_its_own_dump_back(tmp_path: Path):
    db = tmp_path / "app.db"
    sqlite_db(db)
    sqlite = engines.offline_engine({"name": "main", "engine": "sqlite"})
    assert sqlite.check(db) == (True, "integrity_check ok")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database at all" * 100)
    ok, said = sqlite.check(junk)
    assert not ok and said.startswith("integrity_check: ")

    mysql = engines.offline_engine({"name": "main", "engine": "mysql"})
    whole = tmp_path / "whole.sql.gz"
    whole.write_bytes(gzip.compress(b"CREATE TABLE t (id int);\n-- Dump completed on 2025\n"))
    assert mysql.check(whole) == (True, "gzip whole, dump completed")
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(gzip.compress(b"CREATE TABLE t (id int);\n"))
    assert mysql.check(cut) == (False, "the dump does not end with '-- Dump completed'")
    truncated = tmp_path / "truncated.sql.gz"
    truncated.write_bytes(whole.read_bytes()[:20])
    ok, said = mysql.check(truncated)
    assert not ok and said.startswith("gzip: ")

    need(servers.shutil.which("pg_restore") is not None, "pg_restore is not installed")
    ok, said = engines.offline_engine({"name": "main", "engine": "postgresql"}).check(junk)
    assert not ok and said.startswith("pg_restore failed")


# ----------------------------------------------------------------------------- live databases


def test_sqlite_columns_row_keys_values_and_offending_rows(tmp_path: Path):
    spec = sqlite_db(tmp_path / "app.db")
    engine = engines.engine_for(spec)
    assert engine.columns("orders") == ["id", "customer", "total"]
    keys = engine.row_keys("orders", "id")
    assert sorted(keys) == ["1", "2", "3"] and len(set(keys.values())) == 3
    # over some columns only: rows equal in those columns hash alike
    assert engine.row_keys("orders", "id", ["total"])["2"] != keys["2"]
    assert engine.schema_version() == "7" and engine.unavailable() is None
    assert engine.offending_rows("SELECT id FROM orders WHERE total <= 0", 1) == (2, [[2]])
    present, stats = engine.tables_and_stats(["orders", "gone"])
    assert present == ["orders", "schema_migrations"] and list(stats) == ["orders"]
    with pytest.raises(BackupError, match="no such table: nowhere"):
        engine.row_keys("nowhere", "id")
    os.unlink(spec["path"])
    assert engine.unavailable() == f"{spec['path']} does not exist"


def test_postgresql_columns_row_keys_values_and_offending_rows(pgdb: dict):
    engine = engines.engine_for(specs.normalize_database(pgdb))
    assert engine.columns("orders") == ["id", "customer", "total", "at"]
    keys = engine.row_keys("orders", "id")
    assert len(keys) == 1000 and "1000" in keys
    narrow = engine.row_keys("orders", "id", ["customer"])
    assert narrow["1"] == narrow["18"] != keys["1"]  # customer c1 both
    assert engine.schema_version() == "3"
    count, rows = engine.offending_rows("SELECT id FROM orders WHERE id <= 7 ORDER BY id", 5)
    assert (count, rows) == (7, [["1"], ["2"], ["3"], ["4"], ["5"]])


def test_mysql_columns_row_keys_values_and_offending_rows(mariadb: dict):
    admin = ["mysql", "-h", "127.0.0.1", "-P", str(mariadb["port"]), "-u", "shop", "-e"]
    sql = (
        "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop; USE shop;"
        "CREATE TABLE orders (id int PRIMARY KEY, customer varchar(20), total int);"
        "INSERT INTO orders SELECT seq, concat('c', seq % 17), seq FROM seq_1_to_40;"
        "CREATE TABLE schema_migrations (version int); INSERT INTO schema_migrations VALUES (9);"
    )
    env = {**os.environ, "MYSQL_PWD": servers.PASSWORD}
    servers.subprocess.run([*admin, sql], check=True, env=env)
    spec = servers.mysql_spec(mariadb)
    engine = engines.engine_for(specs.normalize_database(spec))
    assert engine.columns("orders") == ["id", "customer", "total"]
    keys = engine.row_keys("orders", "id")
    assert len(keys) == 40
    narrow = engine.row_keys("orders", "id", ["customer"])
    assert narrow["1"] == narrow["18"] != keys["1"]
    assert engine.schema_version() == "9"
    assert engine.offending_rows("SELECT id FROM orders WHERE id > 38 ORDER BY id", 5) == (
        2,
        [["39"], ["40"]],
    )


def test_dumped_tables_reads_the_table_entries_of_a_pg_restore_listing():
    dumped_tables = load_module(
        "plugins/module_utils/backupset/engines/postgresql.py"
    ).dumped_tables
    listing = (
        ";\n; Archive created at 2026-12-03 07:00:00 UTC\n;\n"
        "215; 1259 16386 TABLE public orders analyticbot\n"
        "216; 1259 16390 TABLE billing invoices analyticbot\n"
        "3340; 0 16386 TABLE DATA public orders analyticbot\n"
        "3190; 2606 16400 CONSTRAINT public orders orders_pkey analyticbot\n"
        "3195; 2606 16410 FK CONSTRAINT public lines lines_order_fk analyticbot\n"
    )
    assert dumped_tables(listing) == {"public.orders", "billing.invoices"}
