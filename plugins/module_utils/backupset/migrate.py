"""The schema level: the app's migration rollback files run against the live databases (no
restore), what they drop counted first (a preview in a transaction rolled back), a forensic
set before anything changes, integrity checks after."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .common import BackupError, Json, check_name, private_dir, write_json_atomic
from .engines import engine_for
from .forensic import create_forensic, find_forensic
from .restore import integrity, run_migrations
from .specs import normalize_all

# a file that ends or opens its own transaction cannot run inside ours (nor be previewed):
# BEGIN;/COMMIT;/ROLLBACK;/END; as a statement of its own (PL/pgSQL's BEGIN has no ";")
OWN_TRANSACTION = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK)(\s+(WORK|TRANSACTION))?\s*;",
    re.IGNORECASE | re.MULTILINE,
)


def read_scripts(spec: Json) -> list[bytes]:
    """The database's migrations_rollback files, read; BackupError names a missing one or
    one that controls its own transaction."""
    scripts = []
    for name in spec["migrations_rollback"]:
        try:
            script = Path(name).read_bytes()
        except OSError as exc:
            raise BackupError(f"database {spec['name']}: migration {name}: {exc}") from exc
        found = OWN_TRANSACTION.search(script.decode(errors="replace"))
        if found:
            raise BackupError(
                f"database {spec['name']}: migration {name} has its own "
                f"{found.group(1).upper()}; remove it (each file runs in one transaction)"
            )
        scripts.append(script)
    return scripts


# per app, what each database last had applied by the schema level: {db: [sha256, ...]}
APPLIED = ".schema-rollback.json"


def applied_path(root: str, app: str) -> Path:
    check_name("app", app)
    return Path(root) / app / APPLIED


def recorded(root: str, app: str) -> Json:
    """The files the schema level applied, per database ({} when none or unreadable)."""
    if not root or not app:
        return {}
    try:
        data = json.loads(applied_path(root, app).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(root: str, app: str, name: str, scripts: list[bytes]) -> None:
    """Remember that database NAME has had exactly these files applied."""
    data = recorded(root, app)
    data[name] = [hashlib.sha256(s).hexdigest() for s in scripts]
    private_dir(Path(root) / app)
    write_json_atomic(applied_path(root, app), data)


def cost(before: Json, after: Json) -> Json:
    """What going from snapshot before to after drops: tables (rows, non-null values) and
    columns of kept tables (non-null values); what it adds; the tables whose row count
    changes; values_lost, the non-null values dropped in all; changes, whether anything
    differs at all."""
    tables, columns, added, rows = [], [], [], {}
    for table, was in sorted(before.items()):
        now = after.get(table)
        if now is None:
            tables.append(
                {"table": table, "rows": was["rows"], "non_null": sum(was["columns"].values())}
            )
            continue
        for column, count in was["columns"].items():
            if column not in now["columns"]:
                columns.append({"table": table, "column": column, "non_null": count})
        added += [f"{table}.{c}" for c in now["columns"] if c not in was["columns"]]
        if now["rows"] != was["rows"]:
            rows[table] = {"before": was["rows"], "after": now["rows"]}
    added += sorted(t for t in after if t not in before)
    lost = sum(t["non_null"] for t in tables) + sum(c["non_null"] for c in columns)
    return {
        "tables": tables,
        "columns": columns,
        "added": added,
        "rows_changed": rows,
        "values_lost": lost,
        "changes": before != after,
    }


def preview(databases: list[Json], root: str = "", app: str = "") -> Json:
    """Each database's cost of its migration rollback files, run in a transaction that is
    rolled back (nothing changes). A database without files costs nothing. A file that
    cannot run again (ALTER TABLE ... DROP COLUMN without IF EXISTS, as SQLite has no other)
    fails its preview once applied: when this level recorded exactly these files as applied
    to the database (ROOT/APP/.schema-rollback.json), it costs nothing (already_applied)."""
    result: Json = {}
    done = recorded(root, app)
    for spec in normalize_all(databases):
        scripts = read_scripts(spec)
        if not scripts:
            result[spec["name"]] = cost({}, {})
            continue
        try:
            before, after = engine_for(spec).preview_migrations(scripts)
        except BackupError as exc:
            sums = [hashlib.sha256(s).hexdigest() for s in scripts]
            if done.get(spec["name"]) == sums:
                result[spec["name"]] = dict(cost({}, {}), already_applied=str(exc))
                continue
            raise BackupError(
                f"database {spec['name']}: preview of the migration rollback: {exc}"
            ) from exc
        result[spec["name"]] = cost(before, after)
    return result


def apply(
    root: str, app: str, databases: list[Json], run_id: str = "", forensic_set_id: str = ""
) -> Json:
    """Roll the schema back: the preview first; when nothing would change, nothing is done
    (changed False); else a forensic set of the live databases (the run's, when it exists),
    each database's files run (each in one transaction), the cost counted from the live
    databases before and after, then the integrity checks. Raises BackupError (what was done
    in .result) when a file fails; integrity failures come back with ok False."""
    specs = normalize_all(databases)
    planned = preview(specs, root, app)
    result: Json = {
        "changed": False,
        "planned": planned,
        "forensic_set_id": "",
        "migrations": {},
        "dropped": {},
        "integrity": {},
    }
    todo = [s for s in specs if planned[s["name"]]["changes"]]
    if todo:
        found = find_forensic(root, app, run_id, forensic_set_id) if run_id else None
        if found is None:
            made = create_forensic(root, app, specs, run_id=run_id)
            manifest = made["manifest"]
            result["forensic_set_id"] = manifest["set_id"]
            if not manifest["verification"]["ok"]:
                raise BackupError(
                    f"the forensic set {manifest['set_id']} failed its verification; "
                    "nothing was rolled back",
                    result,
                )
        else:
            result["forensic_set_id"] = found[1]["set_id"]
        result["changed"] = True
    for spec in todo:
        name = spec["name"]
        engine = engine_for(spec)
        before = engine.schema_snapshot()
        try:
            result["migrations"][name] = run_migrations(spec)
        except BackupError as exc:
            result["migrations"][name] = exc.result.get("migrations", [])
            raise BackupError(f"database {name}: {exc}", result) from exc
        record(root, app, name, read_scripts(spec))
        result["dropped"][name] = cost(before, engine.schema_snapshot())
    for spec in specs:
        result["integrity"][spec["name"]] = integrity(spec)
    result["ok"] = all(i["ok"] for i in result["integrity"].values())
    return result
