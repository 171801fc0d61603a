"""The forensic set: a copy of the live databases taken before a restore (never pruned),
with keys.json, each data_loss_tables row's key and md5, to report the rows a restore lost."""

from __future__ import annotations

from pathlib import Path

from .common import BackupError, Json, natural, size_and_sha256, write_json_atomic
from .create import create_set
from .engines import engine_for
from .layout import KEYS, manifests, read_manifest, set_path, write_manifest
from .specs import normalize_all

SHOWN_KEYS = 20


def data_loss(before: dict[str, str], after: dict[str, str]) -> Json:
    """Rows of the state before the restore that the restored database lacks, or holds
    differently (first 20 keys of each, and the counts)."""
    missing = sorted((k for k in before if k not in after), key=natural)
    changed = sorted((k for k in before if k in after and after[k] != before[k]), key=natural)
    return {
        "missing": missing[:SHOWN_KEYS],
        "changed": changed[:SHOWN_KEYS],
        "missing_count": len(missing),
        "changed_count": len(changed),
    }


def save_keys(set_dir: str | Path, databases: list[Json], target: Json | None = None) -> Json:
    """Write keys.json into a (forensic) set: row_keys of each database's data_loss_tables,
    hashed over the columns the live table shares with the target set's copy (its manifest
    records them), so a later comparison with the restored database is not thrown by a
    column the release added. Records keys.json's sha256 in the manifest."""
    set_dir = Path(set_dir)
    manifest = read_manifest(set_dir)
    target_tables = {d["name"]: d.get("tables", {}) for d in (target or {}).get("databases", [])}
    keys: Json = {"target_set_id": (target or {}).get("set_id", ""), "databases": {}}
    for spec in normalize_all(databases):
        engine = engine_for(spec)
        for item in spec["data_loss_tables"]:
            table, key = item["table"], item["key"]
            live = engine.columns(table)
            kept = target_tables.get(spec["name"], {}).get(table, {}).get("columns")
            cols = [c for c in kept if c in live] if kept else live
            keys["databases"].setdefault(spec["name"], {})[table] = {
                "key": key,
                "columns": cols,
                "dropped_columns": [c for c in live if c not in cols],
                "rows": engine.row_keys(table, key, cols),
            }
    path = set_dir / KEYS
    write_json_atomic(path, keys)
    size, digest = size_and_sha256(path)
    manifest["keys"] = {"file": KEYS, "size": size, "sha256": digest}
    write_manifest(set_dir, manifest)
    return {
        name: {table: len(v["rows"]) for table, v in tables.items()}
        for name, tables in keys["databases"].items()
    }


def find_forensic(
    root: str, app: str, run_id: str = "", set_id: str = ""
) -> tuple[Path, Json] | None:
    """The given forensic set, or the newest forensic set of the run (any run if run_id is
    empty) that holds keys.json and passed verification."""
    if set_id:
        path = set_path(root, app, set_id)
        manifest = read_manifest(path)
        if manifest.get("kind") != "forensic":
            raise BackupError(f"the set {set_id} is {manifest.get('kind')}, not forensic")
        return path, manifest
    for path, manifest in manifests(root, app):
        if manifest.get("kind") != "forensic" or not manifest.get("keys"):
            continue
        if run_id and manifest.get("run_id") != run_id:
            continue
        if manifest.get("verification", {}).get("ok"):
            return path, manifest
    return None


def create_forensic(
    root: str,
    app: str,
    databases: list[Json],
    files: list[str] | tuple[str, ...] = (),
    code_path: str = "",
    run_id: str = "",
    target: Json | None = None,
) -> Json:
    """A forensic set of the live databases (never pruned) with keys.json for data_loss.
    Returns the manifest and the keys' row counts."""
    manifest = create_set(root, app, "forensic", databases, list(files), code_path, run_id)
    set_dir = set_path(root, app, manifest["set_id"])
    counts = save_keys(set_dir, databases, target)
    return {"manifest": read_manifest(set_dir), "keys": counts}
