"""PostgreSQL: pg_dump -Fc in an exported snapshot, pg_restore, psql."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..common import BackupError, Json, quote, tail
from .base import ServerEngine, counting_values, wrapped

# Order-independent table checksum: the sum of a 64-bit hash of each row's text.
# hashtextextended (PG 11+) is about 3x cheaper than md5 here, and the pass runs beside
# pg_dump on every backup.
TABLE_STATS = "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} t"
USER_TABLES = (
    "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
    "('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
)


# every foreign key: its name, its table and the table it references (schema-qualified)
FOREIGN_KEYS = """
SELECT c.conname, sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname
FROM pg_constraint c
JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE c.contype = 'f' ORDER BY 1
"""
# a table entry of pg_restore --list: "215; 1259 16386 TABLE public people owner"
LISTED_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (?!DATA )(\S+) (\S+) ")


def dumped_tables(listing: str) -> set[str]:
    """The tables (schema.name) a dump's pg_restore --list holds."""
    found = (LISTED_TABLE.match(line) for line in listing.splitlines())
    return {f"{m.group(1)}.{m.group(2)}" for m in found if m}


def ident(name: str) -> str:
    return ".".join(quote(part, '"') for part in name.split("."))


def literal(text: str) -> str:
    return quote(text, "'")


literal_of = literal


class Session:
    """One psql session driven over a pipe: each query's rows come back parsed from CSV."""

    def __init__(self, engine: PostgreSQL, database: str | None = None) -> None:
        self.engine = engine
        self.database = database or engine.spec["database"]
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._marker = f"__rbo_end_{uuid.uuid4().hex}__"
        argv = ["psql", "-X", "-q", "-w", "--csv", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += [*engine.conn(), "-d", self.database]
        try:
            self.proc = subprocess.Popen(
                engine.as_os_user(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,
                env=engine.env(),
                cwd="/",
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except FileNotFoundError as exc:
            self._err.close()
            raise BackupError("psql is not installed on this host") from exc

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failure(self, what: str) -> BackupError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._err.seek(0)
        err = self.engine.redact(self._err.read().decode(errors="replace"))
        said = tail(err) or "session ended"
        return BackupError(f"psql on database {self.database} ({what}): {said}")

    def query(self, sql: str) -> list[list[str]]:
        sql = sql.strip().rstrip(";").strip()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{sql};\n\\echo {self._marker}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._failure(sql[:80]) from exc
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise self._failure(sql[:80])
            if line.rstrip("\n") == self._marker:
                break
            lines.append(line)
        return [row for row in csv.reader(io.StringIO("".join(lines))) if row]

    def value(self, sql: str) -> str:
        rows = self.query(sql)
        return rows[0][0] if rows and rows[0] else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("ROLLBACK;\n\\q\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._err.close()

    # ------------------------------------------------------------------------- catalog

    def tables(self) -> list[str]:
        return [
            table if schema == "public" else f"{schema}.{table}"
            for schema, table in self.query(USER_TABLES)
        ]

    def columns(self, table: str) -> list[str]:
        relation = literal(ident(table))
        sql = (
            f"SELECT attname FROM pg_attribute WHERE attrelid = {relation}::regclass "  # noqa: S608
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        return [row[0] for row in self.query(sql)]

    def snapshot(self) -> Json:
        """Each table's rows and its columns' non-null values (Engine.schema_snapshot)."""
        shot: Json = {}
        for table in self.tables():
            cols = self.columns(table)
            counts = self.query(counting_values(ident(table), cols, ident))[0]
            shot[table] = {
                "rows": int(counts[0]),
                "columns": {c: int(n) for c, n in zip(cols, counts[1:])},
            }
        return shot

    def stats(self, tables: list[str]) -> Json:
        stats = {}
        for table in tables:
            rows, checksum = self.query(TABLE_STATS.format(ident(table)))[0]
            stats[table] = {
                "rows": int(rows),
                "checksum": checksum,
                "columns": self.columns(table),
            }
        return stats


class PostgreSQL(ServerEngine):
    name = "postgresql"
    extension = ".dump"
    password_var = "PGPASSWORD"  # noqa: S105 (a variable's name)

    def client_env(self, env: dict[str, str]) -> None:
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        env["PGAPPNAME"] = "rollback-ops"

    def lock_timeout_env(self) -> dict[str, str]:
        """Fail, rather than wait forever, when something still holds a lock (the app)."""
        timeout = f"-c lock_timeout={int(self.spec.get('lock_wait_timeout', 60))}s"
        return {"PGOPTIONS": (os.environ.get("PGOPTIONS", "") + " " + timeout).strip()}

    def conn(self) -> list[str]:
        args = []
        if self.spec.get("host"):
            args += ["-h", str(self.spec["host"])]
        if self.spec.get("port"):
            args += ["-p", str(self.spec["port"])]
        if self.spec.get("user"):
            args += ["-U", str(self.spec["user"])]
        return args

    def session(self, database: str | None = None) -> Session:
        return Session(self, database)

    # ------------------------------------------------------------------------- a set's copy

    def dump(self, dest: Path) -> Json:
        """pg_dump -Fc in the snapshot exported by a REPEATABLE READ session, which computes
        the table stats in that same snapshot while pg_dump runs (streamed and hashed by a
        thread)."""
        spec = self.spec
        with self.session() as session:
            session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = session.value("SELECT pg_export_snapshot()")
            argv = ["pg_dump", "-Fc", f"-Z{spec['compression']}", "-w", f"--snapshot={snapshot}"]
            argv += [f"--lock-wait-timeout={spec['lock_wait_timeout'] * 1000}"]
            argv += [*self.conn(), "-d", spec["database"]]
            outcome: Json = {}

            def dump() -> None:
                try:
                    outcome["size"], outcome["sha256"] = self.stream_to_file(argv, dest)
                except BaseException as exc:
                    outcome["error"] = exc

            worker = threading.Thread(target=dump, name=f"pg_dump-{spec['name']}", daemon=True)
            worker.start()
            try:
                stats = session.stats(spec["tables"] or session.tables())
                query = spec["schema_version_query"]
                schema = session.value(query) if query else ""
            finally:
                worker.join()
            if "error" in outcome:
                raise outcome["error"]
        return {
            "size": outcome["size"],
            "sha256": outcome["sha256"],
            "tool": self.tool_version("pg_dump"),
            "schema_version": schema,
            "tables": stats,
        }

    def restore_list(self, path: Path) -> str:
        with path.open("rb") as handle:
            proc = self.run(["pg_restore", "--list"], stdin=handle, as_user=False)
        return proc.stdout.decode(errors="replace")

    def check(self, path: Path) -> tuple[bool, str]:
        try:
            self.restore_list(path)
        except BackupError as exc:
            return False, str(exc)
        return True, "pg_restore --list ok"

    def can_keep_owners(self, listing: str) -> bool:
        """Keep the dump's owners if the user is a superuser or a member of every owner role."""
        owners = set()
        for line in listing.splitlines():
            if line.strip() and not line.startswith(";"):
                owner = line.split()[-1]
                if owner != "-":
                    owners.add(owner)
        with self.session() as session:
            if session.value("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t":
                return True
            for owner in owners:
                sql = f"SELECT pg_has_role(current_user, {literal(owner)}, 'MEMBER')"
                try:
                    if session.value(sql) != "t":
                        return False
                except BackupError:
                    return False
        return True

    def restore_blockers(self, path: Path) -> list[str]:
        """Foreign keys of live tables the dump does not hold that reference a table it
        replaces: pg_restore --clean cannot drop that table while they exist (it does not
        cascade into objects that are not its own), so the restore would fail."""
        dumped = dumped_tables(self.restore_list(path))
        with self.session() as session:
            rows = session.query(FOREIGN_KEYS)
        return sorted(
            f"foreign key {name} of {referencing} references {referenced}"
            for name, referencing, referenced in rows
            if referenced in dumped and referencing not in dumped
        )

    def restore_into(self, path: Path, keep_owners: bool) -> None:
        argv = ["pg_restore", "-w", "--single-transaction", "--exit-on-error"]
        argv += ["--clean", "--if-exists"]
        if not keep_owners:
            argv += ["--no-owner"]
        argv += [*self.conn(), "-d", self.spec["database"]]
        with path.open("rb") as handle:
            self.run(argv, stdin=handle, extra_env=self.lock_timeout_env())

    def restore(self, path: Path, entry: Json) -> Json:
        keep = self.can_keep_owners(self.restore_list(path))
        self.restore_into(path, keep)
        method = "pg_restore --clean --if-exists --single-transaction"
        return {"method": method, "owners_kept": keep}

    def restore_test(self, path: Path, tables: list[str]) -> Json:
        self.connection_needed()
        with self.scratch(path, self.scratch_name(63)) as copy, copy.session() as session:
            return session.stats(tables)

    @contextlib.contextmanager
    def scratch(self, path: Path, name: str = "") -> Iterator[PostgreSQL]:
        """An engine bound to a throwaway database NAME restored from the copy at path (no
        owners, no privileges), dropped afterwards whatever happens."""
        self.connection_needed()
        scratch = name or f"{self.spec['database']}_rbo_loss_{os.getpid()}"[:63]
        conn = self.conn()
        self.run(["dropdb", "-w", "--if-exists", *conn, scratch])
        self.run(["createdb", "-w", *conn, scratch])
        try:
            argv = ["pg_restore", "-w", "--single-transaction", "--exit-on-error", "--no-owner"]
            argv += ["--no-privileges", *conn, "-d", scratch]
            with path.open("rb") as handle:
                self.run(argv, stdin=handle)
            yield PostgreSQL({**self.spec, "database": scratch})
        finally:
            self.run(["dropdb", "-w", "--if-exists", *conn, scratch], check=False)

    def rows(
        self, table: str, columns: list[str], key: str, keys: list[str], literal: bool
    ) -> list[list[str | None]]:
        if not keys:
            return []
        wrap = "quote_nullable({})" if literal else "({})::text"
        cols = ", ".join(wrap.format(ident(c)) for c in columns)
        nulls = ", ".join(f"{ident(c)} IS NULL" for c in columns)
        wanted = ", ".join(literal_of(k) for k in keys)
        sql = (
            f"SELECT {nulls}, {cols} FROM {ident(table)} "  # noqa: S608
            f"WHERE ({ident(key)})::text IN ({wanted}) ORDER BY {ident(key)}"
        )
        n = len(columns)
        with self.session() as session:
            return [
                [None if row[i] == "t" else row[n + i] for i in range(n)]
                for row in session.query(sql)
            ]

    def insert(self, table: str, columns: list[str], literals: list[str | None]) -> str:
        values = ", ".join("NULL" if v is None else v for v in literals)
        cols = ", ".join(ident(c) for c in columns)
        # the values are literals quote_nullable made
        sql = f"INSERT INTO {ident(table)} ({cols}) VALUES ({values})"  # noqa: S608
        return sql + " ON CONFLICT DO NOTHING;"

    def after_inserts(self, table: str, key: str) -> str:
        """The key's sequence (serial or identity) moved past the largest key, so the app's
        next insert does not collide with a replayed row; nothing when it has none."""
        return (
            f"SELECT setval(s, (SELECT max({ident(key)}) FROM {ident(table)})) "  # noqa: S608
            f"FROM pg_get_serial_sequence({literal(ident(table))}, {literal(key)}) AS s "
            "WHERE s IS NOT NULL;"
        )

    # ------------------------------------------------------------------------- the live database

    def tables_and_stats(self, wanted: list[str]) -> tuple[list[str], Json]:
        with self.session() as session:
            present = session.tables()
            return present, session.stats([t for t in wanted if t in present])

    def columns(self, table: str) -> list[str]:
        with self.session() as session:
            return session.columns(table)

    def row_keys(self, table: str, key: str, columns: list[str] | None = None) -> dict[str, str]:
        row = f"ROW({', '.join(ident(c) for c in columns)})" if columns else "t"
        sql = f"SELECT ({ident(key)})::text, md5({row}::text) FROM {ident(table)} t"  # noqa: S608
        with self.session() as session:
            return {r[0]: r[1] for r in session.query(sql)}

    def value(self, sql: str) -> str:
        with self.session() as session:
            return session.value(sql)

    def offending_rows(self, sql: str, shown: int) -> tuple[int, list[list[Any]]]:
        counting, showing = wrapped(sql, shown)
        with self.session() as session:
            count = int(session.value(counting))
            rows = session.query(showing) if count else []
        return count, [list(r) for r in rows]

    def migrate(self, script: bytes) -> None:
        argv = ["psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
        argv += [*self.conn(), "-d", self.spec["database"], "-f", "-"]
        self.run(argv, data=script, extra_env=self.lock_timeout_env())

    def schema_snapshot(self) -> Json:
        with self.session() as session:
            return session.snapshot()

    def preview_migrations(self, scripts: list[bytes]) -> tuple[Json, Json]:
        timeout = int(self.spec.get("lock_wait_timeout", 60))
        with self.session() as session:
            before = session.snapshot()
            session.query("BEGIN")
            session.query(f"SET LOCAL lock_timeout = '{timeout}s'")
            for script in scripts:
                session.query(script.decode())
            after = session.snapshot()
            session.query("ROLLBACK")
        return before, after
