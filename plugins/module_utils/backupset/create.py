"""Create a set: dump every database with its engine, copy every file, record the code."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Callable

from . import common
from .common import (
    CHUNK,
    BackupError,
    HashingWriter,
    Json,
    check_name,
    new_file,
    private_dir,
    size_and_sha256,
)
from .crontab import save_crontab
from .engines import engine_for
from .layout import FORMAT, KINDS, claim_set_dir, write_manifest
from .specs import normalize_all
from .verify import verify


def code_ref(code_path: str) -> Json:
    """The code directory's git HEAD and describe, or {} when it is not a git checkout."""
    if not code_path or not Path(code_path).is_dir():
        return {}
    git = ["git", "-c", "safe.directory=*", "-C", code_path]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        if head.returncode != 0:
            return {}
        describe = subprocess.run(
            [*git, "describe", "--tags", "--always"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return {}
    return {"path": code_path, "ref": head.stdout.strip(), "describe": describe.stdout.strip()}


def copy_file(source: str, set_dir: Path) -> Json:
    """A file copied to files/<its absolute path>, hashed on the way, its mode and owner."""
    src = Path(source)
    if not src.is_absolute() or ".." in src.parts:
        raise BackupError(f"file {source}: an absolute path without .. is needed")
    try:
        st = src.stat()
    except FileNotFoundError as exc:
        raise BackupError(f"file {source} does not exist") from exc
    if not stat.S_ISREG(st.st_mode):
        raise BackupError(f"file {source} is not a regular file")
    rel = "files/" + str(src).lstrip("/")
    dest = set_dir / rel
    parent = set_dir
    for part in Path(rel).parent.parts:
        parent = parent / part
        if not parent.is_dir():
            parent.mkdir(mode=0o700)
            parent.chmod(0o700)
    with src.open("rb") as fin, new_file(dest) as fout:
        writer = HashingWriter(fout)
        for block in iter(lambda: fin.read(CHUNK), b""):
            writer.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return {
        "path": str(src),
        "file": rel,
        "size": writer.size,
        "sha256": writer.digest.hexdigest(),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def dump(spec: Json, set_dir: Path) -> Json:
    """The manifest's entry of one database, its copy written by its engine."""
    engine = engine_for(spec)
    rel = f"db/{spec['name']}{engine.extension}"
    entry = {"name": spec["name"], "engine": spec["engine"], "database": engine.label, "file": rel}
    entry.update(engine.dump(set_dir / rel))
    return entry


def dump_rows(row: Json, set_dir: Path, dumper: Callable[[Json, str], None]) -> Json:
    """The manifest's entry of one of the app's config rows (rollback_app.config.rows), its
    dump written to rows/<name> by DUMPER (module_utils/configrows.py: the app's command)."""
    check_name("config rows", row["name"])
    rel = f"rows/{row['name']}"
    private_dir(set_dir / "rows")
    dumper(row, str(set_dir / rel))
    size, digest = size_and_sha256(set_dir / rel)
    return {"name": row["name"], "file": rel, "size": size, "sha256": digest}


def create_set(
    root: str,
    app: str,
    kind: str,
    databases: list[Json],
    files: list[str],
    code_path: str = "",
    run_id: str = "",
    restore_test: bool = False,
    rows: list[Json] | None = None,
    dumper: Callable[[Json, str], None] | None = None,
    crontabs: list[str] | tuple[str, ...] = (),
) -> Json:
    """Dump every database, copy every file and every user's crontab, record the code,
    verify, write the manifest.

    Returns the manifest. A set whose verification fails is kept (its manifest says so); a
    set whose creation fails is removed and BackupError raised."""
    check_name("app", app)
    if kind not in KINDS:
        raise BackupError(f"kind must be one of {', '.join(KINDS)}")
    specs = normalize_all(databases)
    moment = common.now()
    root_dir = Path(root)
    if not root_dir.is_dir():
        private_dir(root_dir)
    set_id, set_dir = claim_set_dir(
        private_dir(root_dir / app), moment.strftime("%Y%m%dT%H%M%SZ"), kind
    )
    try:
        if specs:
            private_dir(set_dir / "db")
        manifest: Json = {
            "format": FORMAT,
            "app": app,
            "set_id": set_id,
            "kind": kind,
            "created": common.iso(moment),
            "host": socket.gethostname(),
            "run_id": run_id,
            "code": code_ref(code_path),
            "databases": [dump(spec, set_dir) for spec in specs],
            "files": [copy_file(f, set_dir) for f in files],
            "rows": [dump_rows(r, set_dir, dumper) for r in rows or [] if dumper],
            "crontabs": [save_crontab(user, set_dir) for user in crontabs],
            "verification": {},
            "restore_test": {},
        }
        write_manifest(set_dir, manifest)
        manifest["verification"], manifest["restore_test"] = verify(
            set_dir, manifest, specs, restore_test
        )
        write_manifest(set_dir, manifest)
    except BaseException:
        shutil.rmtree(set_dir, ignore_errors=True)
        raise
    return manifest
