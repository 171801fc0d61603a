"""Choose the set to restore and check it before anything is stopped: is it this app's,
verified, whole, with room to restore; how do the live databases differ from it; did the
target release run with an older schema."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .common import BackupError, Json, natural
from .engines import Engine, engine_for
from .layout import manifests, read_manifest, set_path
from .specs import normalize_all
from .verify import check_dumps, check_files


def choose_set(
    root: str, app: str, set_id: str = "", kinds: tuple[str, ...] = ()
) -> tuple[Path, Json]:
    """The given set, or the newest whose verification is ok, which is not forensic and (when
    kinds are given) is of one of those kinds."""
    if set_id:
        path = set_path(root, app, set_id)
        return path, read_manifest(path)
    found = newest_holding(root, app, lambda m: not kinds or m.get("kind") in kinds)
    if found is not None:
        return found
    which = f"{'/'.join(kinds)} " if kinds else ""
    raise BackupError(
        f"no verified {which}backup set of {app} under {root} (forensic sets excluded; "
        "`rollback-ops backup list` shows them, --backup-id chooses one)"
    )


def newest_holding(root: str, app: str, holds: Callable[[Json], bool]) -> tuple[Path, Json] | None:
    """The newest verified set that is not forensic and for which holds(manifest) is true
    (e.g. it holds the files or rows to restore), or None; each manifest read once."""
    for path, manifest in manifests(root, app):
        if manifest.get("kind") == "forensic" or not manifest.get("verification", {}).get("ok"):
            continue
        if holds(manifest):
            return path, manifest
    return None


def check_restorable(set_dir: str | Path, app: str, databases: list[Json]) -> Json:
    """Everything that must hold before anything is stopped: the set is this app's, verified,
    holds every database of the spec with the same engine and database, every file matches
    its sha256, every dump reads, every migration rollback file is there to read. Returns ok,
    problems, checks and what the set is."""
    set_dir = Path(set_dir)
    problems: list[str] = []
    checks: list[str] = []
    try:
        manifest = read_manifest(set_dir)
    except BackupError as exc:
        return {"ok": False, "problems": [str(exc)], "checks": []}
    specs = normalize_all(databases)
    set_id = manifest.get("set_id")
    if manifest.get("app") != app:
        problems.append(f"the set {set_id} is app {manifest.get('app')!r}'s, not {app!r}'s")
    verification = manifest.get("verification") or {}
    if not verification.get("ok"):
        said = "; ".join(verification.get("problems", [])) or "never verified"
        problems.append(f"the set {set_id} did not pass verification: {said}")
    by_name = {d["name"]: d for d in manifest.get("databases", [])}
    for spec in specs:
        name = spec["name"]
        for script in spec["migrations_rollback"]:  # run after the restore: must be there now
            if not Path(script).is_file() or not os.access(script, os.R_OK):
                problems.append(f"database {name}: migration rollback file {script} is not there")
        entry = by_name.get(name)
        if entry is None:
            problems.append(f"database {name}: not in the set")
            continue
        engine = engine_for(spec)
        if entry["engine"] != spec["engine"]:
            problems.append(
                f"database {name}: the set holds {entry['engine']}, the spec says {spec['engine']}"
            )
        elif entry["database"] != engine.label:
            problems.append(
                f"database {name}: the set holds {entry['database']!r}, "
                f"the spec says {engine.label!r}"
            )
        else:
            lacking = engine.space_problem(entry)
            if lacking:
                problems.append(f"database {name}: {lacking}")
            blocked = restore_order(engine, set_dir / entry["file"], spec)
            if blocked:
                (checks if spec["migrations_rollback"] else problems).append(
                    f"database {name}: {blocked}"
                )
    check_files(set_dir, manifest, checks, problems)
    check_dumps(set_dir, manifest, checks, problems)
    return {
        "ok": not problems,
        "problems": problems,
        "checks": checks,
        "set_id": manifest.get("set_id"),
        "kind": manifest.get("kind"),
        "created": manifest.get("created"),
        "code": manifest.get("code", {}),
        "schema_versions": {
            d["name"]: d.get("schema_version", "") for d in manifest.get("databases", [])
        },
    }


def restore_order(engine: Engine, path: Path, spec: Json) -> str:
    """What the live database holds that would make the restore fail ("" for nothing),
    and what the run does about it: the migration rollback files run first."""
    try:
        blockers = engine.restore_blockers(path)
    except BackupError:
        return ""  # the dump or the database cannot be read: said by the other checks
    if not blockers:
        return ""
    if spec["migrations_rollback"]:
        return f"{'; '.join(blockers)}: its migration rollback files run before the restore"
    return (
        f"the restore would fail: {'; '.join(blockers)}; add a migrations_rollback file that "
        "drops them (it runs before the restore when they exist)"
    )


def live_differences(manifest: Json, databases: list[Json] | tuple[Json, ...]) -> Json:
    """Per database of the set, how the live one differs from it: tables missing or added,
    rows, checksums or columns that differ ([] when the live database equals the set)."""
    out: Json = {}
    recorded = {d["name"]: d for d in manifest.get("databases", [])}
    for spec in normalize_all(databases):
        entry = recorded.get(spec["name"])
        if entry is None:
            continue
        want = entry.get("tables") or {}
        engine = engine_for(spec)
        gone = engine.unavailable()
        if gone:
            out[spec["name"]] = [gone]
            continue
        present, live = engine.tables_and_stats(list(want))
        diffs = [f"table {t} is missing" for t in want if t not in present]
        if not spec["tables"]:  # every table was recorded: one the release added is a change
            diffs += [f"table {t} is not in the set" for t in present if t not in want]
        for table, stats in live.items():
            for field in ("rows", "checksum", "columns"):
                if stats[field] != want[table].get(field):
                    diffs.append(f"{table}: {field} differ")
        out[spec["name"]] = diffs
    return out


def schema_check(root: str, app: str, databases: list[Json], code_ref: str) -> Json:
    """The schema versions recorded with release code_ref (in the newest verified set taken
    with it) against the live ones: a code rollback to an older schema needs the full level
    unless the app has migration rollback files."""
    specs = normalize_all(databases)
    found = next(
        (
            m
            for _p, m in manifests(root, app)
            if m.get("kind") != "forensic"
            and (m.get("code") or {}).get("ref") == code_ref
            and (m.get("verification") or {}).get("ok")
        ),
        None,
    )
    out: Json = {"set_id": found["set_id"] if found else "", "databases": {}}
    if found is None:
        return out
    recorded = {d["name"]: str(d.get("schema_version") or "") for d in found["databases"]}
    for spec in specs:
        then = recorded.get(spec["name"], "")
        if not then or not spec["schema_version_query"]:
            continue
        now = engine_for(spec).schema_version()
        out["databases"][spec["name"]] = {
            "recorded": then,
            "live": now,
            "older": bool(now) and natural(then) < natural(now),
            "migrations_rollback": bool(spec["migrations_rollback"]),
        }
    return out
