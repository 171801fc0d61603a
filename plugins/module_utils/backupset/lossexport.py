"""The rows a restore lost, for the app team to replay (backup export-loss, seed 002
strategy 4: restore the forensic dump into a temp database, export, import).

The forensic set taken before the restore is restored into a scratch database (PostgreSQL:
a temporary database; SQLite: a temporary file); the rows of each database's
data_loss_tables whose key the live database lacks, or holds with other values (over the
columns both have), are written as SQL (one INSERT each that skips a taken key: PostgreSQL
``ON CONFLICT DO NOTHING``, SQLite ``INSERT OR IGNORE``) or CSV (a header, NULL as empty).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .common import BackupError, Json, natural
from .engines import Engine, engine_for
from .forensic import find_forensic
from .specs import normalize_all

FORMATS = ("sql", "csv")


def lost_keys(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], int, int]:
    """The keys of before missing from after or different there; and the two counts."""
    missing = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    return sorted(missing + changed, key=natural), len(missing), len(changed)


def export_table(engine: Engine, scratch: Engine, table: str, key: str, fmt: str) -> Json:
    live = engine.columns(table)
    columns = [c for c in scratch.columns(table) if c in live]
    if key not in columns:
        raise BackupError(f"{table}: its key {key} is not a column of both databases")
    keys, missing, changed = lost_keys(
        scratch.row_keys(table, key, columns), engine.row_keys(table, key, columns)
    )
    rows = scratch.rows(table, columns, key, keys, literal=fmt == "sql")
    if fmt == "sql":
        text = "".join(engine.insert(table, columns, row) + "\n" for row in rows)
        after = engine.after_inserts(table, key) if rows else ""
        text += after + "\n" if after else ""
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        text = out.getvalue()
    return {
        "table": table,
        "key": key,
        "columns": columns,
        "rows": len(rows),
        "missing_count": missing,
        "changed_count": changed,
        "content": text,
    }


def export_loss(
    root: str, app: str, databases: list[Json], run_id: str, set_id: str, fmt: str
) -> Json:
    """{forensic_set_id, tables: [per database and table: rows, counts, content]}."""
    if fmt not in FORMATS:
        raise BackupError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    found = find_forensic(root, app, run_id, set_id)
    if found is None:
        raise BackupError(
            f"no verified forensic set of run {run_id} for {app} under {root} (the data and "
            "full levels take one before a restore)"
        )
    set_dir, manifest = found
    entries = {d["name"]: d for d in manifest.get("databases", [])}
    exported: list[Json] = []
    for spec in normalize_all(databases):
        if not spec["data_loss_tables"]:
            continue
        entry = entries.get(spec["name"])
        if entry is None:
            raise BackupError(f"the forensic set {manifest['set_id']} holds no {spec['name']}")
        engine = engine_for(spec)
        with engine.scratch(Path(set_dir) / entry["file"]) as scratch:
            for item in spec["data_loss_tables"]:
                done = export_table(engine, scratch, item["table"], item["key"], fmt)
                exported.append({"database": spec["name"], **done})
    return {"forensic_set_id": manifest["set_id"], "format": fmt, "tables": exported}
