"""Off-host copies of a set: what a host holds of one set, whether every file of the copy
matches the manifest's sha256, and the files to copy (the manifest last).

A backup host keeps the sets of each database host under ``<root>/<db host>/<app>/<set_id>/``,
the layout of ``layout`` one level down: ``describe(<root>/<db host>, app, ...)`` reads it
like a database host's own ``<root>/<app>/<set_id>/``. Needs no database engine.
"""

from __future__ import annotations

from .common import BackupError, Json, size_and_sha256
from .layout import MANIFEST, manifests, read_manifest, set_path
from .verify import check_files


def set_files(manifest: Json) -> list[str]:
    """Every file of the set relative to its directory, the manifest last."""
    entries = list(manifest.get("databases", [])) + list(manifest.get("files", []))
    if manifest.get("keys"):
        entries.append(manifest["keys"])
    return [str(e["file"]) for e in entries] + [MANIFEST]


def newest_id(root: str, app: str, kinds: tuple[str, ...] | list[str] = ()) -> str:
    """The newest set whose verification is ok, not forensic, of one of kinds ("" for none)."""
    for _path, manifest in manifests(root, app):
        kind = manifest.get("kind")
        if kind == "forensic" or (kinds and kind not in kinds):
            continue
        if (manifest.get("verification") or {}).get("ok"):
            return str(manifest["set_id"])
    return ""


def describe(
    root: str, app: str, set_id: str = "", kinds: tuple[str, ...] | list[str] = ()
) -> Json:
    """What this host holds of the set (given, or the newest verified of kinds): present,
    verified (the manifest says its verification passed and every file matches its sha256),
    path, created, files, manifest_sha256, problems."""
    chosen = set_id or newest_id(root, app, kinds)
    out: Json = {
        "set_id": chosen,
        "present": False,
        "verified": False,
        "path": "",
        "created": "",
        "files": [],
        "manifest_sha256": "",
        "problems": [],
    }
    if not chosen:
        out["problems"].append(f"no verified backup set of {app} under {root}")
        return out
    path = set_path(root, app, chosen)
    out["path"] = str(path)
    if not (path / MANIFEST).is_file():
        out["problems"].append(f"{path}: not there")
        return out
    try:
        manifest = read_manifest(path)
    except BackupError as exc:
        out["problems"].append(str(exc))
        return out
    out.update(
        present=True,
        created=manifest.get("created", ""),
        kind=manifest.get("kind", ""),
        files=set_files(manifest),
        manifest_sha256=size_and_sha256(path / MANIFEST)[1],
    )
    checks: list[str] = []
    problems: list[str] = []
    if not (manifest.get("verification") or {}).get("ok"):
        problems.append(f"the set {chosen} did not pass verification")
    check_files(path, manifest, checks, problems)
    out["problems"] = problems
    out["verified"] = not problems
    return out
