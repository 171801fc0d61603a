"""Backups the team already makes (a database's ``external_backups``, or a file given on the
command line): pick the newest, verify it read-only before anything stops, and adopt it into
a verified set of kind ``external`` that the restore then uses like any other set.

The formats, by the name ``external_backups.format`` gives, one class each in ``FORMATS``:

- ``sqlite``: a database file; checked with ``PRAGMA integrity_check`` on a private copy (its
  own ``-wal`` copied with it, so the file and its sidecars are never opened in place);
  adopted with the online backup API into the set's one self-contained file.
- ``postgresql_custom``: a ``pg_dump -Fc`` archive; checked with ``pg_restore --list``,
  adopted as it is (its tables counted in a scratch database).
- ``postgresql_plain``: a ``pg_dump`` SQL script (gzip allowed); checked by loading it into a
  scratch database in one transaction (``ON_ERROR_STOP``); adopted as the ``pg_dump -Fc`` of
  that scratch database, so the restore is the usual ``pg_restore --clean``.
- ``mysqldump``: a mysqldump script (gzip allowed); checked for mysqldump's completion line,
  adopted gzip-compressed (its tables counted in a scratch database).

The adoption is idempotent: a verified external set made from the same files (path and
sha256) is found again instead of made twice.
"""

from __future__ import annotations

import contextlib
import glob as globbing
import gzip
import os
import re
import shutil
import socket
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, ClassVar

from . import common
from .common import CHUNK, BackupError, HashingWriter, Json, check_name, new_file, private_dir
from .engines import engine_for
from .engines.postgresql import PostgreSQL
from .layout import FORMAT, claim_set_dir, manifests, write_manifest
from .specs import normalize_all
from .verify import verify

SIDECARS = ("-wal", "-shm", "-journal")
# YYYYMMDD, then optionally [_-T]HHMMSS: the last such stamp in a file's name
STAMP_RE = re.compile(r"(?<!\d)(\d{8})(?:[_T-]?(\d{6}))?(?!\d)")
ORDERS = ("name", "mtime")


# ----------------------------------------------------------------------------- picking


def name_stamp(name: str) -> str:
    """The last valid date(-time) stamp in a file's name as YYYYMMDDHHMMSS, or ""."""
    for match in reversed(list(STAMP_RE.finditer(name))):
        text = match.group(1) + (match.group(2) or "000000")
        try:
            datetime.strptime(text, "%Y%m%d%H%M%S")
        except ValueError:
            continue
        return text
    return ""


def newest_first(candidates: list[tuple[str, float]], order: str = "name") -> list[str]:
    """Paths (with their mtimes) newest first: order ``name`` by the stamp in the name (the
    ones without a stamp after, by mtime), ``mtime`` by modification time only."""
    if order not in ORDERS:
        raise BackupError(f"external_backups order {order!r}: one of {', '.join(ORDERS)}")

    def key(item: tuple[str, float]) -> tuple[str, float, str]:
        path, mtime = item
        stamp = name_stamp(os.path.basename(path)) if order == "name" else ""
        return stamp, mtime, path

    return [path for path, _ in sorted(candidates, key=key, reverse=True)]


def candidates(pattern: str) -> list[tuple[str, float]]:
    """The regular files a glob matches (SQLite sidecars left out), with their mtimes."""
    out = []
    for path in globbing.glob(pattern):
        if path.endswith(SIDECARS):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append((path, st.st_mtime))
    return out


def resolve(spec: Json, given: str = "") -> Json:
    """The external backup to restore for one database spec: the given file, or the newest
    its ``external_backups`` glob matches. Returns path, format and how it was chosen."""
    declared = spec.get("external_backups") or {}
    fmt = str(declared.get("format") or default_format(spec))
    if fmt not in FORMATS:
        raise BackupError(
            f"database {spec['name']}: external backup format {fmt!r}: one of {', '.join(FORMATS)}"
        )
    if FORMATS[fmt].engine != spec["engine"]:
        raise BackupError(
            f"database {spec['name']}: a {fmt} backup cannot restore a {spec['engine']} database"
        )
    if given:
        if not os.path.isabs(given):
            raise BackupError(f"--backup-file {spec['name']}={given}: an absolute path is needed")
        if not os.path.isfile(given):
            raise BackupError(f"--backup-file {spec['name']}={given}: no such file on this host")
        return {"name": spec["name"], "path": given, "format": fmt, "chosen": "given"}
    pattern = str(declared.get("glob") or "")
    if not pattern:
        raise BackupError(
            f"database {spec['name']}: no external_backups declared and no --backup-file "
            f"{spec['name']}=PATH given"
        )
    order = str(declared.get("order") or "name")
    found = newest_first(candidates(pattern), order)
    if not found:
        raise BackupError(f"database {spec['name']}: no file matches {pattern}")
    return {
        "name": spec["name"],
        "path": found[0],
        "format": fmt,
        "chosen": f"newest of {len(found)} by {order}",
        "others": found[1:6],
    }


def default_format(spec: Json) -> str:
    return {"sqlite": "sqlite", "postgresql": "postgresql_custom", "mysql": "mysqldump"}.get(
        str(spec.get("engine")), ""
    )


# ----------------------------------------------------------------------------- formats


def head(path: Path, size: int = 16) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


@contextlib.contextmanager
def reader(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, gunzipped when it is gzip-compressed."""
    if head(path, 2) == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            yield handle  # type: ignore[misc]
    else:
        with path.open("rb") as handle:
            yield handle


class ExternalFormat:
    """One kind of file a team's backup can be: check it read-only, adopt it into a set."""

    name: ClassVar[str]
    engine: ClassVar[str]  # the engine of the databases it restores
    extension: ClassVar[str]  # of the adopted copy, as the engine's own sets have it

    def check(self, spec: Json, path: Path) -> str:
        """What was checked; BackupError saying what is wrong. Changes nothing."""
        raise NotImplementedError

    def adopt(self, spec: Json, path: Path, dest: Path) -> Json:
        """Write the set's copy to dest; its manifest entry's fields (as engine.dump)."""
        raise NotImplementedError


class SQLiteFile(ExternalFormat):
    name = "sqlite"
    engine = "sqlite"
    extension = ".sqlite3"

    @contextlib.contextmanager
    def staged(self, path: Path, where: Path | None = None) -> Iterator[Path]:
        """A private copy of the file and its own -wal (never the -shm): opening it in
        place could write a -shm or checkpoint next to the team's backup."""
        if head(path, 16) != b"SQLite format 3\x00":
            raise BackupError(f"{path} is not an SQLite database file")
        with tempfile.TemporaryDirectory(prefix="rbo-external-", dir=where) as tmp:
            copy = Path(tmp) / "external.sqlite3"
            shutil.copyfile(path, copy)
            wal = path.with_name(path.name + "-wal")
            if wal.is_file():  # the backup's own WAL, checkpointed into the private copy
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            try:  # one self-contained file, whatever journal mode the backup was left in
                con = sqlite3.connect(str(copy), isolation_level=None)
                try:
                    con.execute("PRAGMA journal_mode=DELETE")
                finally:
                    con.close()
            except sqlite3.Error as exc:
                raise BackupError(f"{path}: {exc}") from exc
            yield copy

    def check(self, spec: Json, path: Path) -> str:
        with self.staged(path) as copy:
            try:
                con = sqlite3.connect(str(copy))
                try:
                    rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
                finally:
                    con.close()
            except sqlite3.Error as exc:
                raise BackupError(f"{path}: {exc}") from exc
        if rows != ["ok"]:
            raise BackupError(f"{path}: integrity_check: {'; '.join(map(str, rows[:5]))}")
        return f"{path}: integrity_check ok"

    def adopt(self, spec: Json, path: Path, dest: Path) -> Json:
        live_mode = ""
        live = Path(spec["path"])
        if live.is_file():  # the restore puts the copy back in the live file's journal mode
            with contextlib.suppress(sqlite3.Error):
                con = sqlite3.connect(f"file:{live}?mode=ro", uri=True, timeout=30)
                try:
                    live_mode = str(con.execute("PRAGMA journal_mode").fetchone()[0])
                finally:
                    con.close()
        with self.staged(path, dest.parent) as copy:
            entry = engine_for({**spec, "path": str(copy)}).dump(dest)
        if live_mode:
            entry["journal_mode"] = live_mode
        return entry


class PostgreSQLFormat(ExternalFormat):
    engine = "postgresql"
    extension = ".dump"

    @contextlib.contextmanager
    def scratch(self, spec: Json) -> Iterator[tuple[PostgreSQL, str]]:
        """A throwaway database beside the app's, dropped afterwards."""
        pg = engine_for(spec)
        assert isinstance(pg, PostgreSQL)
        name = pg.scratch_name(63).replace("_rbo_verify_", "_rbo_ext_")
        conn = pg.conn()
        pg.run(["dropdb", "-w", "--if-exists", *conn, name])
        pg.run(["createdb", "-w", *conn, name])
        try:
            yield pg, name
        finally:
            pg.run(["dropdb", "-w", "--if-exists", *conn, name], check=False)

    def load(self, pg: PostgreSQL, path: Path, database: str) -> None:
        raise NotImplementedError

    def stats(self, spec: Json, pg: PostgreSQL, database: str) -> Json:
        with pg.session(database) as session:
            tables = spec["tables"] or session.tables()
            query = spec["schema_version_query"]
            return {
                "tables": session.stats(tables),
                "schema_version": session.value(query) if query else "",
            }


class PostgreSQLCustom(PostgreSQLFormat):
    name = "postgresql_custom"

    def check(self, spec: Json, path: Path) -> str:
        if head(path, 5) != b"PGDMP":
            raise BackupError(f"{path} is not a pg_dump custom archive (format: postgresql_plain?)")
        engine_for(spec).restore_list(path)  # type: ignore[attr-defined]
        return f"{path}: pg_restore --list ok"

    def load(self, pg: PostgreSQL, path: Path, database: str) -> None:
        argv = ["pg_restore", "-w", "--single-transaction", "--exit-on-error", "--no-owner"]
        argv += ["--no-privileges", *pg.conn(), "-d", database]
        with path.open("rb") as handle:
            pg.run(argv, stdin=handle)

    def adopt(self, spec: Json, path: Path, dest: Path) -> Json:
        self.check(spec, path)
        with path.open("rb") as fin, new_file(dest) as fout:
            writer = HashingWriter(fout)
            for block in iter(lambda: fin.read(CHUNK), b""):
                writer.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        with self.scratch(spec) as (pg, name):
            self.load(pg, dest, name)
            counted = self.stats(spec, pg, name)
        return {
            "size": writer.size,
            "sha256": writer.digest.hexdigest(),
            "tool": "adopted pg_dump -Fc archive",
            **counted,
        }


class PostgreSQLPlain(PostgreSQLFormat):
    name = "postgresql_plain"

    def load(self, pg: PostgreSQL, path: Path, database: str) -> None:
        with reader(path) as handle:
            first = handle.read(5)
        if first == b"PGDMP":
            raise BackupError(
                f"{path} is a pg_dump custom archive, not plain SQL (format: postgresql_custom)"
            )
        with reader(path) as handle:
            for line in handle:
                if line.startswith((b"\\connect", b"\\c ")):
                    raise BackupError(
                        f"{path} switches database (\\connect: made with pg_dump --create?); "
                        "a dump of the one database is needed"
                    )
        argv = ["psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
        argv += [*pg.conn(), "-d", database, "-f", "-"]
        if head(path, 2) != b"\x1f\x8b":
            with path.open("rb") as handle:
                pg.run(argv, stdin=handle)
            return
        with reader(path) as handle, tempfile.TemporaryFile() as plain:  # gunzipped first
            shutil.copyfileobj(handle, plain, CHUNK)
            plain.seek(0)
            pg.run(argv, stdin=plain)  # type: ignore[arg-type]

    def check(self, spec: Json, path: Path) -> str:
        with self.scratch(spec) as (pg, name):
            self.load(pg, path, name)
        return f"{path}: loads into a scratch database (psql, one transaction, ON_ERROR_STOP)"

    def adopt(self, spec: Json, path: Path, dest: Path) -> Json:
        with self.scratch(spec) as (pg, name):
            self.load(pg, path, name)
            argv = ["pg_dump", "-Fc", f"-Z{spec['compression']}", "-w", *pg.conn(), "-d", name]
            size, digest = pg.stream_to_file(argv, dest)
            counted = self.stats(spec, pg, name)
        return {
            "size": size,
            "sha256": digest,
            "tool": "plain SQL loaded into a scratch database, then " + pg.tool_version("pg_dump"),
            **counted,
        }


class MySQLDump(ExternalFormat):
    name = "mysqldump"
    engine = "mysql"
    extension = ".sql.gz"

    def check(self, spec: Json, path: Path) -> str:
        end = b""
        try:
            with reader(path) as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    end = (end + block)[-4096:]
        except (OSError, EOFError) as exc:
            raise BackupError(f"{path}: {exc}") from exc
        if b"-- Dump completed" not in end:
            raise BackupError(f"{path}: does not end with mysqldump's '-- Dump completed'")
        return f"{path}: mysqldump completed"

    def adopt(self, spec: Json, path: Path, dest: Path) -> Json:
        self.check(spec, path)
        names: list[str] = []
        with reader(path) as handle, new_file(dest) as fout:
            writer = HashingWriter(fout)
            with gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as sink:  # type: ignore[arg-type]
                for line in handle:
                    match = re.match(rb"CREATE TABLE `([^`]+)`", line)
                    if match:
                        names.append(match.group(1).decode())
                    sink.write(line)
            fout.flush()
            os.fsync(fout.fileno())
        engine = engine_for(spec)
        tables = engine.restore_test(dest, spec["tables"] or names)
        return {
            "size": writer.size,
            "sha256": writer.digest.hexdigest(),
            "tool": "adopted mysqldump",
            "schema_version": "",
            "tables": tables,
        }


FORMATS: dict[str, ExternalFormat] = {
    cls.name: cls() for cls in (SQLiteFile, PostgreSQLCustom, PostgreSQLPlain, MySQLDump)
}


# ----------------------------------------------------------------------------- operations


def source_of(chosen: Json) -> Json:
    """What identifies an external file: path, format, size, sha256, mtime, owner."""
    path = Path(chosen["path"])
    size, digest = common.size_and_sha256(path)
    st = path.stat()
    return {
        "name": chosen["name"],
        "path": str(path),
        "format": chosen["format"],
        "size": size,
        "sha256": digest,
        "mtime": common.iso(datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)),
    }


def resolve_all(databases: list[Json], given: dict[str, str]) -> list[Json]:
    """The external backup of every database (all must have one), every problem at once."""
    specs = normalize_all(databases)
    unknown = sorted(set(given) - {s["name"] for s in specs})
    problems = [f"--backup-file {n}=...: the app has no database {n}" for n in unknown]
    chosen = []
    for spec in specs:
        try:
            chosen.append(resolve(spec, given.get(spec["name"], "")))
        except BackupError as exc:
            problems.append(str(exc))
    if problems:
        raise BackupError("; ".join(problems))
    return chosen


def external_sources(
    databases: list[Json], given: dict[str, str], reasons: dict[str, str] | None = None
) -> list[Json]:
    """Every database's external backup, resolved and hashed (source_of). REASONS: how an
    earlier check chose a file of GIVEN (kept instead of "given")."""
    sources = []
    for chosen in resolve_all(databases, given):
        source = source_of(chosen)
        source["chosen"] = (reasons or {}).get(chosen["name"]) or chosen["chosen"]
        sources.append(source)
    return sources


def check_external(databases: list[Json], sources: list[Json]) -> Json:
    """Verify every external backup, read-only (before anything stops): what was checked,
    and the problems."""
    specs = {s["name"]: s for s in normalize_all(databases)}
    checks, problems = [], []
    for source in sources:
        try:
            fmt = FORMATS[source["format"]]
            checks.append(fmt.check(specs[source["name"]], Path(source["path"])))
        except BackupError as exc:
            problems.append(f"external backup {source['path']}: {exc}")
    return {"checks": checks, "problems": problems}


def same_sources(manifest: Json, sources: list[Json]) -> bool:
    recorded = {
        (s.get("name"), s.get("path"), s.get("sha256")) for s in manifest.get("sources", [])
    }
    return recorded == {(s["name"], s["path"], s["sha256"]) for s in sources}


def find_adopted(root: str, app: str, sources: list[Json]) -> tuple[Path, Json] | None:
    """The newest verified external set made from exactly these files, or None."""
    for path, manifest in manifests(root, app):
        if (
            manifest.get("kind") == "external"
            and manifest.get("verification", {}).get("ok")
            and same_sources(manifest, sources)
        ):
            return path, manifest
    return None


def adopt(
    root: str, app: str, databases: list[Json], sources: list[Json], run_id: str = ""
) -> Json:
    """A verified set of kind external made from the sources (as check_external returned
    them; each file's sha256 is checked again as it is adopted). Returns the manifest."""
    check_name("app", app)
    specs = {s["name"]: s for s in normalize_all(databases)}
    moment = common.now()
    root_dir = Path(root)
    if not root_dir.is_dir():
        private_dir(root_dir)
    set_id, set_dir = claim_set_dir(
        private_dir(root_dir / app), moment.strftime("%Y%m%dT%H%M%SZ"), "external"
    )
    try:
        private_dir(set_dir / "db")
        entries = []
        for source in sources:
            now_ = source_of(source)
            if now_["sha256"] != source["sha256"]:
                raise BackupError(f"{source['path']} changed since it was checked")
            fmt = FORMATS[source["format"]]
            spec = specs[source["name"]]
            engine = engine_for(spec)
            rel = f"db/{spec['name']}{engine.extension}"
            entry = {
                "name": spec["name"],
                "engine": spec["engine"],
                "database": engine.label,
                "file": rel,
            }
            entry.update(fmt.adopt(spec, Path(source["path"]), set_dir / rel))
            entries.append(entry)
        manifest: Json = {
            "format": FORMAT,
            "app": app,
            "set_id": set_id,
            "kind": "external",
            "created": common.iso(moment),
            "host": socket.gethostname(),
            "run_id": run_id,
            "code": {},
            "sources": [
                {k: s[k] for k in ("name", "path", "format", "size", "sha256", "mtime")}
                for s in sources
            ],
            "databases": entries,
            "files": [],
            "verification": {},
            "restore_test": {},
        }
        write_manifest(set_dir, manifest)
        manifest["verification"], manifest["restore_test"] = verify(
            set_dir, manifest, list(specs.values()), False
        )
        write_manifest(set_dir, manifest)
    except BaseException:
        shutil.rmtree(set_dir, ignore_errors=True)
        raise
    return manifest
