"""Verify a set: every file's sha256, every dump read back by its engine, and (asked for)
a restore into a throwaway database compared table by table with the manifest."""

from __future__ import annotations

from pathlib import Path

from . import common
from .common import BackupError, Json, size_and_sha256
from .engines import engine_class, offline_engine
from .layout import list_sets, read_manifest, set_path, write_manifest
from .specs import normalize_all


def check_files(set_dir: Path, manifest: Json, checks: list[str], problems: list[str]) -> None:
    entries = list(manifest.get("databases", [])) + list(manifest.get("files", []))
    entries += list(manifest.get("rows", []))  # the app's config rows (config.rows)
    entries += [c for c in manifest.get("crontabs", []) if c.get("present")]
    if manifest.get("keys"):
        entries.append(manifest["keys"])
    for entry in entries:
        rel = entry["file"]
        path = set_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size, digest = size_and_sha256(path)
        if digest != entry.get("sha256") or size != entry.get("size"):
            want = str(entry.get("sha256"))[:16]
            problems.append(
                f"{rel}: sha256 {digest[:16]} ({size} bytes) differs from the manifest's "
                f"{want} ({entry.get('size')} bytes)"
            )
        else:
            checks.append(f"{rel}: sha256 ok")


def check_dumps(set_dir: Path, manifest: Json, checks: list[str], problems: list[str]) -> None:
    for db in manifest.get("databases", []):
        path = set_dir / db["file"]
        if not path.is_file():
            continue
        rel = db["file"]
        try:
            ok, said = offline_engine(db).check(path)
        except BackupError as exc:
            ok, said = False, str(exc)
        (checks if ok else problems).append(f"{rel}: {said}")


def restore_test(set_dir: Path, manifest: Json, specs: list[Json]) -> Json:
    by_name = {s["name"]: s for s in specs}
    result: Json = {"ok": False, "at": common.iso(common.now()), "tables": {}, "problems": []}
    for db in manifest.get("databases", []):
        path = set_dir / db["file"]
        tables = sorted(db.get("tables", {}))
        spec = by_name.get(db["name"])
        try:
            engine = engine_class(db["engine"])(spec) if spec else offline_engine(db)
            got = engine.restore_test(path, tables)
        except BackupError as exc:
            result["problems"].append(f"{db['name']}: {exc}")
            continue
        result["tables"][db["name"]] = {
            t: {"rows": v["rows"], "checksum": v["checksum"]} for t, v in got.items()
        }
        for table in tables:
            want, have = db["tables"][table], got[table]
            if (want["rows"], want["checksum"]) != (have["rows"], have["checksum"]):
                result["problems"].append(
                    f"{db['name']}.{table}: restored {have['rows']} rows (checksum "
                    f"{have['checksum']}), the manifest says {want['rows']} (checksum "
                    f"{want['checksum']})"
                )
    result["ok"] = not result["problems"]
    return result


def verify(set_dir: Path, manifest: Json, specs: list[Json], restore: bool) -> tuple[Json, Json]:
    """(verification, restore_test) of a set: what was checked and every problem found."""
    checks: list[str] = []
    problems: list[str] = []
    check_files(set_dir, manifest, checks, problems)
    check_dumps(set_dir, manifest, checks, problems)
    tested: Json = manifest.get("restore_test") or {}
    if restore:
        tested = restore_test(set_dir, manifest, specs)
        if tested["ok"]:
            checks.append("restore test ok")
        problems.extend(f"restore test: {p}" for p in tested["problems"])
    elif tested and not tested.get("ok"):
        # a failed restore test stands until a restore test passes
        problems.extend(f"restore test of {tested.get('at')}: {p}" for p in tested["problems"])
    verification = {
        "ok": not problems,
        "at": common.iso(common.now()),
        "checks": checks,
        "problems": problems,
    }
    return verification, tested


def verify_set(
    root: str,
    app: str,
    set_id: str,
    databases: list[Json] | tuple[Json, ...] = (),
    restore_test: bool = False,
    record: bool = True,
) -> Json:
    """Check every file's sha256 and each dump (pg_restore --list, integrity_check, gzip);
    with restore_test, restore into a throwaway database and compare each table's rows and
    checksum with the manifest. Records the outcome in the manifest unless record is False."""
    set_dir = set_path(root, app, set_id)
    manifest = read_manifest(set_dir)
    verification, tested = verify(set_dir, manifest, normalize_all(databases), restore_test)
    if record:
        manifest["verification"], manifest["restore_test"] = verification, tested
        write_manifest(set_dir, manifest)
    return {"set_id": set_id, "verification": verification, "restore_test": tested}


def freshness(root: str, app: str, max_age_seconds: int) -> Json:
    """Whether a verified set (forensic ones aside) younger than ``max_age_seconds`` exists:
    ``ok``, ``max_age_seconds``, and the newest verified set's ``set_id`` and
    ``age_seconds`` (absent when there is none). Ages run from the manifest's ``created``,
    written by this host's clock."""
    out: Json = {"ok": False, "max_age_seconds": max_age_seconds}
    now = common.now()
    for item in list_sets(root, app):
        if item["kind"] == "forensic" or not item["verified"]:
            continue
        try:
            age = (now - common.parse_iso(item["created"])).total_seconds()
        except (KeyError, ValueError):
            continue
        out.update(set_id=item["set_id"], created=item["created"], age_seconds=int(age))
        out["ok"] = age <= max_age_seconds
        break
    return out


def span(seconds: float) -> str:
    """A duration in its two largest units: ``1d 2h``, ``5m 3s``, ``0s``."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])
