"""SQLite: the online backup API, PRAGMA integrity_check, an atomic replace (python sqlite3)."""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

from ...files import FileError, free_bytes, safe_write
from ..common import BackupError, Json, md5, new_file, quote, size_and_sha256
from .base import Engine, counting_values


def ident(name: str) -> str:
    return quote(name, '"')


def signed64(hex16: str) -> int:
    value = int(hex16, 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def row_text(row: Any) -> bytes:
    values = [("\\x" + bytes(v).hex()) if isinstance(v, (bytes, memoryview)) else v for v in row]
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sql_text(value: Any) -> str:
    """A value as CSV text (a blob as hex)."""
    if isinstance(value, (bytes, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"sqlite database {path} does not exist")
    return sqlite3.connect(f"file:{url_quote(str(path))}?mode=ro", uri=True, timeout=30)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    """The database read-only; an sqlite3 error becomes a BackupError with its message."""
    try:
        con = read_only(path)
        try:
            yield con
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise BackupError(str(exc)) from exc


def tables(con: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [row[0] for row in con.execute(sql)]


def columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in con.execute(f"PRAGMA table_info({ident(table)})")]


def stats(con: sqlite3.Connection, names: list[str]) -> Json:
    """Per table: rows, an order-independent checksum (the sum of the first 64 bits of each
    row's md5, signed) and the columns."""
    out = {}
    for table in names:
        rows = total = 0
        for row in con.execute(f"SELECT * FROM {ident(table)}"):  # noqa: S608 (quoted identifier)
            rows += 1
            total += signed64(md5(row_text(row))[:16])
        out[table] = {"rows": rows, "checksum": str(total), "columns": columns(con, table)}
    return out


def snapshot(con: sqlite3.Connection) -> Json:
    """Each table's rows and its columns' non-null values (Engine.schema_snapshot)."""
    shot: Json = {}
    for table in tables(con):
        cols = columns(con, table)
        counts = con.execute(counting_values(ident(table), cols, ident)).fetchone()
        shot[table] = {
            "rows": int(counts[0]),
            "columns": {c: int(n) for c, n in zip(cols, counts[1:])},
        }
    return shot


def value(con: sqlite3.Connection, sql: str) -> str:
    row = con.execute(sql).fetchone()
    return "" if row is None or row[0] is None else str(row[0])


class SQLite(Engine):
    name = "sqlite"
    extension = ".sqlite3"

    @classmethod
    def normalize(cls, spec: Json, out: Json) -> None:
        if not spec.get("path") or not Path(str(spec["path"])).is_absolute():
            raise BackupError(f"database {out['name']}: sqlite needs an absolute path")
        out["path"] = str(spec["path"])

    @property
    def label(self) -> str:
        return str(self.spec["path"])

    @property
    def path(self) -> Path:
        return Path(self.spec["path"])

    # ------------------------------------------------------------------------- a set's copy

    def dump(self, dest: Path) -> Json:
        """The online backup API (one step: a consistent copy even while the app writes), the
        copy switched to rollback-journal mode so it is one self-contained file."""
        src_path = self.path
        new_file(dest).close()
        src = read_only(src_path)
        try:
            journal_mode = value(src, "PRAGMA journal_mode")
            dst = sqlite3.connect(str(dest))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise BackupError(f"sqlite backup of {src_path} failed: {exc}") from exc
        finally:
            src.close()
        dest.chmod(0o600)
        con = read_only(dest)
        try:
            table_stats = stats(con, self.spec["tables"] or tables(con))
            query = self.spec["schema_version_query"]
            schema = value(con, query) if query else ""
        except sqlite3.Error as exc:
            raise BackupError(f"sqlite stats of {src_path} failed: {exc}") from exc
        finally:
            con.close()
        size, digest = size_and_sha256(dest)
        return {
            "size": size,
            "sha256": digest,
            "tool": f"python sqlite3 {sqlite3.sqlite_version}",
            "schema_version": schema,
            "tables": table_stats,
            "journal_mode": journal_mode,
        }

    def check(self, path: Path) -> tuple[bool, str]:
        """PRAGMA integrity_check on the copy, opened read-only."""
        try:
            con = read_only(path)
            try:
                rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            said = str(exc)
        else:
            said = "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])
        if said == "ok":
            return True, "integrity_check ok"
        return False, f"integrity_check: {said}"

    def space_problem(self, entry: Json) -> str | None:
        """Room for the temp copy beside the live file, and a margin as large again."""
        parent = self.path.parent
        free = free_bytes(str(parent)) if parent.is_dir() else 0
        need = int(entry.get("size", 0)) * 2
        return f"{free} bytes free in {parent}, need {need}" if free < need else None

    def restore(self, path: Path, entry: Json) -> Json:
        """An atomic replace (files.safe_write: temp file beside the target, fsync, the live
        file's mode and owner, rename), the copy back in the live file's journal mode and the
        live file's stale -wal/-shm/-journal removed just before the rename."""
        live = self.path
        journal_mode = entry.get("journal_mode", "")
        removed: list[str] = []

        def before_rename(tmp: str) -> None:
            if journal_mode and journal_mode.lower() not in ("delete", "memory", "off"):
                con = sqlite3.connect(tmp, isolation_level=None)
                try:
                    con.execute(f"PRAGMA journal_mode={journal_mode.upper()}")
                finally:
                    con.close()
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            for suffix in ("-wal", "-shm", "-journal"):
                stale = live.with_name(live.name + suffix)
                if stale.exists():
                    stale.unlink()
                    removed.append(stale.name)

        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # mapped, not read: a large database is not held in memory
            data: Any = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            try:
                safe_write(
                    str(live),
                    None,
                    data,
                    backup=False,
                    before_rename=before_rename,
                    mode=None if live.exists() else 0o640,
                )
            except FileError as exc:
                raise BackupError(str(exc)) from exc
            finally:
                if size:
                    data.close()
        return {
            "method": "atomic replace",
            "removed": removed,
            "journal_mode": journal_mode or "delete",
        }

    def restore_test(self, path: Path, tables: list[str]) -> Json:
        with tempfile.TemporaryDirectory(prefix="rbo-verify-") as tmp:
            copy = Path(tmp) / "restore.sqlite3"
            shutil.copyfile(path, copy)
            with opened(copy) as con:
                return stats(con, tables)

    @contextlib.contextmanager
    def scratch(self, path: Path) -> Iterator[SQLite]:
        with tempfile.TemporaryDirectory(prefix="rbo-loss-") as tmp:
            copy = Path(tmp) / "forensic.sqlite3"
            shutil.copyfile(path, copy)
            yield SQLite({**self.spec, "path": str(copy)})

    def rows(
        self, table: str, columns: list[str], key: str, keys: list[str], literal: bool
    ) -> list[list[str | None]]:
        wanted = set(keys)
        cols = ", ".join(ident(c) for c in columns)
        sql = f"SELECT {ident(key)}, {cols} FROM {ident(table)} ORDER BY {ident(key)}"  # noqa: S608
        found: list[list[str | None]] = []
        with opened(self.path) as con:
            for row in con.execute(sql):
                if str(row[0]) not in wanted:
                    continue
                values = list(row[1:])
                if literal:
                    quoted = con.execute(
                        "SELECT " + ", ".join("quote(?)" for _ in values), values
                    ).fetchone()
                    found.append([str(v) for v in quoted])
                else:
                    found.append([None if v is None else sql_text(v) for v in values])
        return found

    def insert(self, table: str, columns: list[str], literals: list[str | None]) -> str:
        values = ", ".join("NULL" if v is None else v for v in literals)
        cols = ", ".join(ident(c) for c in columns)
        # the values are literals quote() made
        return f"INSERT OR IGNORE INTO {ident(table)} ({cols}) VALUES ({values});"  # noqa: S608

    # ------------------------------------------------------------------------- the live database

    def unavailable(self) -> str | None:
        return None if self.path.is_file() else f"{self.path} does not exist"

    def tables_and_stats(self, wanted: list[str]) -> tuple[list[str], Json]:
        with opened(self.path) as con:
            present = tables(con)
            return present, stats(con, [t for t in wanted if t in present])

    def columns(self, table: str) -> list[str]:
        with opened(self.path) as con:
            return columns(con, table)

    def row_keys(self, table: str, key: str, columns: list[str] | None = None) -> dict[str, str]:
        cols = ", ".join(ident(c) for c in columns) if columns else "*"
        sql = f"SELECT {ident(key)}, {cols} FROM {ident(table)}"  # noqa: S608
        with opened(self.path) as con:
            return {str(row[0]): md5(row_text(row[1:])) for row in con.execute(sql)}

    def value(self, sql: str) -> str:
        with opened(self.path) as con:
            return value(con, sql)

    def offending_rows(self, sql: str, shown: int) -> tuple[int, list[list[Any]]]:
        with opened(self.path) as con:
            count, rows = 0, []
            for row in con.execute(sql):
                count += 1
                if len(rows) < shown:
                    rows.append([v.hex() if isinstance(v, bytes) else v for v in row])
            return count, rows

    def migrate(self, script: bytes) -> None:
        if not self.path.is_file():
            raise BackupError(f"sqlite database {self.path} does not exist")
        try:
            text = script.decode()
            con = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            try:
                # One executescript from BEGIN to COMMIT: executescript commits a pending
                # transaction before it runs, so a BEGIN issued separately would not hold it.
                con.executescript(f"BEGIN;\n{text}\n;\nCOMMIT;")
            except sqlite3.Error:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise BackupError(str(exc)) from exc

    def schema_snapshot(self) -> Json:
        with opened(self.path) as con:
            return snapshot(con)

    def preview_migrations(self, scripts: list[bytes]) -> tuple[Json, Json]:
        if not self.path.is_file():
            raise BackupError(f"sqlite database {self.path} does not exist")
        try:
            text = "\n;\n".join(s.decode() for s in scripts)
            con = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            try:
                before = snapshot(con)
                # one executescript (it would commit a transaction begun before it), the
                # transaction left open, counted, then rolled back
                con.executescript(f"BEGIN;\n{text}\n;")
                after = snapshot(con)
            finally:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                con.close()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise BackupError(str(exc)) from exc
        return before, after
