"""MySQL and MariaDB: mysqldump --single-transaction gzip-streamed, the mysql client.

Tested against MariaDB 10.11 (tests/unit/test_backupset.py, when it is installed); not
against Oracle MySQL.
"""

from __future__ import annotations

import contextlib
import gzip
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..common import CHUNK, BackupError, Json, md5, quote, tail
from .base import ServerEngine, wrapped


def ident(name: str) -> str:
    return ".".join(quote(part, "`") for part in name.split("."))


class MySQL(ServerEngine):
    name = "mysql"
    extension = ".sql.gz"
    password_var = "MYSQL_PWD"  # noqa: S105 (a variable's name)

    def conn(self) -> list[str]:
        args = []
        host = str(self.spec.get("host") or "")
        if host.startswith("/"):
            args.append("--socket=" + host)
        elif host:
            args.append("--host=" + host)
        if self.spec.get("port"):
            args.append(f"--port={self.spec['port']}")
        if self.spec.get("user"):
            args.append("--user=" + str(self.spec["user"]))
        return args

    def query(self, sql: str, database: str | None = None) -> list[list[str]]:
        argv = ["mysql", "--batch", "--skip-column-names", *self.conn(), "-e", sql]
        argv.append(database or self.spec["database"])
        out = self.run(argv).stdout.decode(errors="replace")
        return [line.split("\t") for line in out.splitlines()]

    def tables(self, database: str | None = None) -> list[str]:
        rows = self.query("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'", database)
        return sorted(row[0] for row in rows)

    def stats(self, tables: list[str], database: str | None = None) -> Json:
        stats = {}
        for table in tables:
            name = ident(table)
            rows = self.query(f"SELECT COUNT(*) FROM {name}; CHECKSUM TABLE {name}", database)  # noqa: S608
            stats[table] = {
                "rows": int(rows[0][0]),
                "checksum": rows[1][-1],
                "columns": self.columns(table, database),
            }
        return stats

    # ------------------------------------------------------------------------- a set's copy

    def dump(self, dest: Path) -> Json:
        """mysqldump --single-transaction, gzip-streamed and hashed. The table stats are taken
        just before the dump, outside its transaction: stop writers for them to match exactly."""
        spec = self.spec
        stats = self.stats(spec["tables"] or self.tables())
        schema = self.schema_version()
        argv = ["mysqldump", "--single-transaction", "--routines", "--triggers", "--hex-blob"]
        argv += [*self.conn(), spec["database"]]
        size, digest = self.stream_to_file(argv, dest, gzip_level=spec["compression"])
        return {
            "size": size,
            "sha256": digest,
            "tool": self.tool_version("mysqldump"),
            "schema_version": schema,
            "tables": stats,
        }

    def check(self, path: Path) -> tuple[bool, str]:
        """Whether the gzip stream is whole and the dump ends with mysqldump's completion line."""
        end = b""
        try:
            with gzip.open(path, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    end = (end + block)[-4096:]
        except (OSError, EOFError) as exc:
            return False, f"gzip: {exc}"
        if b"-- Dump completed" in end:
            return True, "gzip whole, dump completed"
        return False, "the dump does not end with '-- Dump completed'"

    def restore_into(self, path: Path, database: str) -> None:
        argv = self.as_os_user(["mysql", "--batch", *self.conn(), database])
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=self.env(),
                    cwd="/",
                )
            except FileNotFoundError as exc:
                raise BackupError("mysql is not installed on this host") from exc
            assert proc.stdin is not None
            try:
                with gzip.open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(CHUNK), b""):
                        proc.stdin.write(block)
            except BrokenPipeError:
                pass
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            if proc.wait() != 0:
                err.seek(0)
                msg = self.redact(err.read().decode(errors="replace"))
                raise BackupError(f"mysql restore into {database} failed: {tail(msg)}")

    def restore(self, path: Path, entry: Json) -> Json:
        self.restore_into(path, self.spec["database"])
        return {"method": "mysql < dump (DDL is not transactional in MySQL)"}

    def restore_test(self, path: Path, tables: list[str]) -> Json:
        self.connection_needed()
        scratch = self.scratch_name(64)
        name = ident(scratch)
        self.query(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")
        try:
            self.restore_into(path, scratch)
            return self.stats(tables, scratch)
        finally:
            with contextlib.suppress(BackupError):
                self.query(f"DROP DATABASE IF EXISTS {name}")

    # ------------------------------------------------------------------------- the live database

    def tables_and_stats(self, wanted: list[str]) -> tuple[list[str], Json]:
        present = self.tables()
        return present, self.stats([t for t in wanted if t in present])

    def columns(self, table: str, database: str | None = None) -> list[str]:
        literal = quote(table, "'")
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "  # noqa: S608
            f"AND table_name = {literal} ORDER BY ordinal_position"
        )
        return [row[0] for row in self.query(sql, database)]

    def row_keys(self, table: str, key: str, columns: list[str] | None = None) -> dict[str, str]:
        cols = ", ".join(ident(c) for c in columns) if columns else "t.*"
        sql = f"SELECT {ident(key)}, {cols} FROM {ident(table)} t"  # noqa: S608
        return {r[0]: md5("\t".join(r[1:]).encode()) for r in self.query(sql)}

    def value(self, sql: str) -> str:
        rows = self.query(sql)
        return rows[0][0] if rows and rows[0] else ""

    def offending_rows(self, sql: str, shown: int) -> tuple[int, list[list[Any]]]:
        counting, showing = wrapped(sql, shown)
        count = int(self.query(counting)[0][0])
        return count, self.query(showing) if count else []

    def migrate(self, script: bytes) -> None:
        body = b"START TRANSACTION;\n" + script + b"\n;\nCOMMIT;\n"
        self.run(["mysql", "--batch", *self.conn(), self.spec["database"]], data=body)
