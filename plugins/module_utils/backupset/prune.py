"""Prune an app's sets by count and age, never the newest verified one nor a forensic one."""

from __future__ import annotations

import shutil
from datetime import timedelta

from . import common
from .common import Json
from .layout import manifests, summary


def prune(
    root: str,
    app: str,
    keep: int | None = None,
    max_age_days: float | None = None,
    dry_run: bool = False,
) -> Json:
    """Remove sets beyond the newest ``keep`` or older than ``max_age_days`` days; never the
    newest verified non-forensic set, never a forensic set, never a set without manifest."""
    found = manifests(root, app)
    protected = None
    for path, manifest in found:
        if manifest.get("kind") != "forensic" and manifest.get("verification", {}).get("ok"):
            protected = path
            break
    now = common.now()
    removed, kept = [], []
    index = 0
    for path, manifest in found:
        if manifest.get("kind") == "forensic":
            kept.append(manifest["set_id"])
            continue
        position, index = index, index + 1
        reasons = []
        if keep is not None and position >= keep:
            reasons.append(f"beyond the newest {keep}")
        try:
            age = now - common.parse_iso(manifest["created"])
        except (KeyError, ValueError):
            age = timedelta(0)
        if max_age_days is not None and age > timedelta(days=max_age_days):
            reasons.append(f"older than {max_age_days} days")
        if not reasons or path == protected:
            kept.append(manifest["set_id"])
            continue
        gone = summary(manifest)
        gone["reasons"] = reasons
        removed.append(gone)
        if not dry_run:
            shutil.rmtree(path)
    return {"removed": removed, "kept": kept, "freed": sum(r["size"] for r in removed)}
