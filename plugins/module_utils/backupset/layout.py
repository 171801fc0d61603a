"""Where a backup set lives and what its manifest says.

``<root>/<app>/<set_id>/`` (directories 0700, files 0600), set_id
``<UTC %Y%m%dT%H%M%SZ>-<kind>[-<n>]``, holding ``manifest.json``, ``db/<name><extension>``
(each engine's own: ``.dump``, ``.sqlite3``, ``.sql.gz``) and
``files/<absolute path without the leading />``; a forensic set also holds ``keys.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import BackupError, Json, check_name, write_json_atomic

FORMAT = 1
KINDS = ("predeploy", "scheduled", "manual", "forensic", "external")
DEFAULT_ROOT = "/var/backups/rollback-ops"
MANIFEST = "manifest.json"
KEYS = "keys.json"


def set_path(root: str, app: str, set_id: str) -> Path:
    check_name("app", app)
    check_name("set_id", set_id)
    return Path(root) / app / set_id


def claim_set_dir(app_dir: Path, stamp: str, kind: str) -> tuple[str, Path]:
    """A new set directory named for its time and kind (-2, -3 ... when that one is taken)."""
    base = f"{stamp}-{kind}"
    for n in range(1, 1000):
        set_id = base if n == 1 else f"{base}-{n}"
        path = app_dir / set_id
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        path.chmod(0o700)
        return set_id, path
    raise BackupError(f"too many backup sets named {base}-*")


def read_manifest(set_dir: str | Path) -> Json:
    path = Path(set_dir) / MANIFEST
    try:
        manifest: Json = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BackupError(
            f"{set_dir}: no manifest.json (not a backup set, or still being written)"
        ) from exc
    except ValueError as exc:
        raise BackupError(f"{set_dir}: manifest.json is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{set_dir}: manifest format {manifest.get('format')!r} is not {FORMAT}")
    return manifest


def write_manifest(set_dir: Path, manifest: Json) -> None:
    write_json_atomic(set_dir / MANIFEST, manifest)


def manifests(root: str, app: str) -> list[tuple[Path, Json]]:
    """Every complete set of the app, newest first."""
    check_name("app", app)
    app_dir = Path(root) / app
    if not app_dir.is_dir():
        return []
    found = []
    for entry in app_dir.iterdir():
        if entry.name.startswith(".") or not (entry / MANIFEST).is_file():
            continue
        try:
            found.append((entry, read_manifest(entry)))
        except BackupError:
            continue
    found.sort(key=lambda item: (item[1].get("created", ""), item[0].name), reverse=True)
    return found


def summary(manifest: Json) -> Json:
    size = sum(
        int(e.get("size", 0)) for e in manifest.get("databases", []) + manifest.get("files", [])
    )
    return {
        "set_id": manifest["set_id"],
        "kind": manifest.get("kind", ""),
        "created": manifest.get("created", ""),
        "run_id": manifest.get("run_id", ""),
        "size": size,
        "verified": bool(manifest.get("verification", {}).get("ok")),
        "describe": manifest.get("code", {}).get("describe", ""),
        "databases": [d["name"] for d in manifest.get("databases", [])],
    }


def list_sets(root: str, app: str) -> list[Json]:
    """Summaries of the app's sets, newest first."""
    return [summary(manifest) for _, manifest in manifests(root, app)]
