"""backup export-loss on the host (plugins/module_utils/backupset/lossexport.py), SQLite: the
rows a restore lost come back from the forensic set as SQL a replay applies once, or CSV."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import load_module

rbs = load_module("plugins/module_utils/backupset")
loss = load_module("plugins/module_utils/backupset/lossexport.py")


def spec(path: Path) -> dict:
    return {
        "name": "main",
        "engine": "sqlite",
        "path": str(path),
        "data_loss_tables": [{"table": "orders", "key": "id"}],
    }


@pytest.fixture
def restored(tmp_path: Path) -> tuple[str, Path]:
    """A forensic set of 5 orders (run r1), then the live database back to orders 1..3 with
    order 2 changed: rows 4 and 5 are missing, row 2 differs."""
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, note BLOB)")
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?)",
        [
            (1, "ann", None),
            (2, "bo'b", b"\x00\x01"),
            (3, "cy", None),
            (4, "d,e", None),
            (5, None, b"x"),
        ],
    )
    con.commit()
    root = str(tmp_path / "sets")
    rbs.create_forensic(root, "shop", [spec(db)], run_id="r1")
    con.execute("DELETE FROM orders WHERE id > 3")
    con.execute("UPDATE orders SET customer = 'bob' WHERE id = 2")
    con.commit()
    con.close()
    return root, db


def test_sql_holds_the_lost_rows_and_replays_once(restored: tuple[str, Path]):
    root, db = restored
    out = loss.export_loss(root, "shop", [spec(db)], "r1", "", "sql")
    (table,) = out["tables"]
    assert (table["missing_count"], table["changed_count"], table["rows"]) == (2, 1, 3)
    assert "INSERT OR IGNORE INTO" in table["content"]
    con = sqlite3.connect(db)
    con.executescript(table["content"])
    con.executescript(table["content"])  # a second replay adds nothing
    rows = con.execute("SELECT id, customer, note FROM orders ORDER BY id").fetchall()
    assert rows == [
        (1, "ann", None),
        (2, "bob", b"\x00\x01"),
        (3, "cy", None),
        (4, "d,e", None),
        (5, None, b"x"),
    ]


def test_csv_has_a_header_and_the_lost_rows(restored: tuple[str, Path]):
    root, db = restored
    out = loss.export_loss(root, "shop", [spec(db)], "r1", "", "csv")
    rows = list(csv.reader(io.StringIO(out["tables"][0]["content"])))
    assert rows[0] == ["id", "customer", "note"]
    assert [r[0] for r in rows[1:]] == ["2", "4", "5"]
    assert rows[2] == ["4", "d,e", ""]


def test_an_unknown_run_is_one_line(restored: tuple[str, Path]):
    root, db = restored
    with pytest.raises(rbs.BackupError, match="no verified forensic set of run nope"):
        loss.export_loss(root, "shop", [spec(db)], "nope", "", "sql")
