"""Restore a set's databases: each replaced by its engine, its migration rollback files run,
its integrity checks, and the rows lost compared with the forensic set's keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .common import BackupError, Json
from .engines import engine_for
from .forensic import data_loss
from .layout import KEYS, read_manifest
from .specs import normalize_all, normalize_database

SHOWN_ROWS = 5


def restore_database(set_dir: str | Path, manifest_db: Json, spec: Json) -> Json:
    """Replace the live database with the set's copy. PostgreSQL: pg_restore --clean
    --if-exists --single-transaction (owners kept if the user may); SQLite: atomic replace
    (temp file in the same directory, fsync, stale -wal/-shm/-journal removed, rename);
    MySQL: the dump through the mysql client."""
    spec = normalize_database(spec)
    engine = engine_for(spec)
    path = Path(set_dir) / manifest_db["file"]
    done: Json = {
        "name": spec["name"],
        "engine": spec["engine"],
        "database": engine.label,
        "from": str(path),
    }
    done.update(engine.restore(path, manifest_db))
    return done


def run_migrations(spec: Json, files: list[str] | None = None) -> list[Json]:
    """Run each SQL file in its own transaction, in order (default: the spec's
    migrations_rollback). A failing file leaves nothing of itself applied; BackupError names
    it, with the files already applied in .result["migrations"]."""
    spec = normalize_database(spec)
    engine = engine_for(spec)
    done: list[Json] = []
    for name in spec["migrations_rollback"] if files is None else files:
        try:
            script = Path(name).read_bytes()
        except OSError as exc:
            raise BackupError(f"migration {name}: {exc}", {"migrations": done}) from exc
        try:
            engine.migrate(script)
        except BackupError as exc:
            raise BackupError(
                f"migration {name} failed, nothing of it applied: {exc}", {"migrations": done}
            ) from exc
        done.append({"file": name, "sha256": hashlib.sha256(script).hexdigest()})
    return done


def migrate_first(spec: Json, dump: Path, blockers: list[str]) -> list[Json]:
    """Run the migration rollback files before the restore, because of BLOCKERS (live
    objects that make the restore fail); BackupError when there are none to run, or when
    the objects are still there after them (nothing restored yet either way)."""
    if not spec["migrations_rollback"]:
        raise BackupError(
            f"the restore would fail: {'; '.join(blockers)}; no migrations_rollback file drops "
            "them (nothing was restored)"
        )
    done = run_migrations(spec)
    left = engine_for(spec).restore_blockers(dump)
    if left:
        raise BackupError(
            f"after the migration rollback files the restore would still fail: "
            f"{'; '.join(left)} (they ran; nothing was restored)",
            {"migrations": done},
        )
    return done


def integrity(spec: Json) -> Json:
    """Run each integrity check (a query that must return no rows). Returns ok, the checks
    passed, and the failures with their row count and up to 5 offending rows."""
    spec = normalize_database(spec)
    engine = engine_for(spec)
    passed, failures = [], []
    for check in spec["integrity_checks"]:
        sql = check["sql"].strip().rstrip(";").strip()
        try:
            count, rows = engine.offending_rows(sql, SHOWN_ROWS)
        except BackupError as exc:
            failures.append({"name": check["name"], "error": str(exc), "count": -1, "rows": []})
            continue
        if count:
            failures.append({"name": check["name"], "count": count, "rows": rows})
        else:
            passed.append(check["name"])
    return {"ok": not failures, "passed": passed, "failures": failures}


def restore_set(
    set_dir: str | Path, databases: list[Json], forensic_dir: str | Path | None = None
) -> Json:
    """Restore each database from the set, run its migration rollback files, its integrity
    checks and, against the forensic set's keys.json, its data_loss. Raises BackupError (with
    what was done in .result) when a restore or a migration fails; integrity failures are
    returned (ok False), the databases staying restored."""
    set_dir = Path(set_dir)
    manifest = read_manifest(set_dir)
    by_name = {d["name"]: d for d in manifest.get("databases", [])}
    keys: Json = {}
    if forensic_dir is not None:
        try:
            keys = json.loads((Path(forensic_dir) / KEYS).read_text()).get("databases", {})
        except (OSError, ValueError) as exc:
            raise BackupError(f"the forensic set's {KEYS} cannot be read: {exc}") from exc
    result: Json = {
        "set_id": manifest["set_id"],
        "restored": [],
        "migrations": {},
        "integrity": {},
        "data_loss": {},
    }
    for spec in normalize_all(databases):
        name = spec["name"]
        if name not in by_name:
            raise BackupError(f"database {name}: not in the set {manifest['set_id']}", result)
        try:
            dump = set_dir / by_name[name]["file"]
            blockers = engine_for(spec).restore_blockers(dump)
            if blockers:
                # a table the bad release added references one the restore replaces: its
                # migration rollback (which drops it) runs first, or the restore cannot
                result["migrations"][name] = migrate_first(spec, dump, blockers)
                result.setdefault("migrations_first", {})[name] = blockers
            result["restored"].append(restore_database(set_dir, by_name[name], spec))
            if not blockers:
                result["migrations"][name] = run_migrations(spec)
        except BackupError as exc:
            if "migrations" in exc.result:
                result["migrations"][name] = exc.result["migrations"]
            raise BackupError(f"database {name}: {exc}", result) from exc
        result["integrity"][name] = integrity(spec)
        engine = engine_for(spec)
        for item in spec["data_loss_tables"]:
            table = item["table"]
            before: Any = keys.get(name, {}).get(table)
            if before is None:
                continue
            after = engine.row_keys(table, before["key"], before["columns"])
            loss = data_loss(before["rows"], after)
            loss["dropped_columns"] = before.get("dropped_columns", [])
            result["data_loss"].setdefault(name, {})[table] = loss
    result["ok"] = all(i["ok"] for i in result["integrity"].values())
    return result
