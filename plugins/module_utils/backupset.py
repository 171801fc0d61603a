#!/usr/bin/env python3
"""Backup sets of an app's databases and files on a host: create, list, verify, prune, restore.

Pure Python 3.9+ standard library, no Ansible import. The role's modules import it as
``ansible.module_utils.rollback_backupset``; it also runs as a standalone script on a host
for scheduled jobs (passwords from the environment variables the config names)::

    python3 rollback_backupset.py create --config /etc/rollback-ops/backup-<app>.json

Layout: ``<root>/<app>/<set_id>/`` (directories 0700, files 0600), set_id
``<UTC %Y%m%dT%H%M%SZ>-<kind>[-<n>]``, holding ``manifest.json``, ``db/<name>.<ext>``
(``.dump`` PostgreSQL custom format, ``.sqlite3``, ``.sql.gz`` MySQL) and
``files/<absolute path without the leading />``; a forensic set also holds ``keys.json``.

Passwords never go into argv, results, manifests or error messages: they reach the client
tools as PGPASSWORD / MYSQL_PWD in the subprocess environment only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

FORMAT = 1
KINDS = ("predeploy", "scheduled", "manual", "forensic")
ENGINES = ("postgresql", "sqlite", "mysql")
DEFAULT_ROOT = "/var/backups/rollback-ops"
EXTENSIONS = {"postgresql": ".dump", "sqlite": ".sqlite3", "mysql": ".sql.gz"}
MANIFEST = "manifest.json"
KEYS = "keys.json"
CHUNK = 1 << 20
SHOWN_KEYS = 20
SHOWN_ROWS = 5
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Order-independent table checksum: the sum of the first 64 bits of each row's md5, signed.
# order-independent: the sum of a 64-bit hash of each row's text. hashtextextended (PG 11+)
# is about 3x cheaper than md5 here, and the pass runs beside pg_dump on every backup.
PG_TABLE_STATS = "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} t"
PG_USER_TABLES = (
    "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
    "('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
)

Json = dict[str, Any]


class BackupError(Exception):
    """A refusal or failure, with a message fit for an operator (never holding a password)."""

    def __init__(self, msg: str, result: Json | None = None) -> None:
        super().__init__(msg)
        self.result = result or {}


# ----------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


class _HashingWriter:
    """A binary sink that counts and hashes what it writes (so no second read is needed)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.size += len(data)
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        self.handle.flush()


def _new_file(path: Path) -> BinaryIO:
    """Create a new file, mode 0600, refusing to overwrite."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Json) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    with _new_file(tmp) as handle:
        handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _private_dir(path: Path) -> Path:
    """The directory, created mode 0700 if missing (an existing one is made 0700 too)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _redact(text: str, spec: Json | None) -> str:
    password = _password(spec) if spec else None
    if password and len(password) >= 3:
        text = text.replace(password, "********")
    return text.strip()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _quote(name: str, mark: str) -> str:
    """An identifier or literal between marks, the mark doubled inside."""
    return mark + name.replace(mark, mark + mark) + mark


def _natural(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def _signed64(hex16: str) -> int:
    value = int(hex16, 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def _row_text(row: Any) -> bytes:
    values = [("\\x" + bytes(v).hex()) if isinstance(v, (bytes, memoryview)) else v for v in row]
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# ----------------------------------------------------------------------------- specs


def _password(spec: Json) -> str | None:
    """The database password: given (module option), or from the environment variable named
    by ``password_env`` (standalone jobs, e.g. systemd EnvironmentFile=)."""
    if spec.get("password"):
        return str(spec["password"])
    env = spec.get("password_env")
    if env:
        if env not in os.environ:
            raise BackupError(f"database {spec.get('name')}: environment variable {env} is not set")
        return os.environ[env]
    return None


def normalize_database(spec: Json) -> Json:
    """Check a database spec and fill its defaults (returns a new dict)."""
    if not isinstance(spec, dict):
        raise BackupError(f"a database spec must be a mapping, got {type(spec).__name__!r}")
    name = str(spec.get("name") or "")
    if not NAME_RE.match(name):
        raise BackupError(f"database name {name!r}: letters, digits and . _ - only")
    engine = spec.get("engine")
    if engine not in ENGINES:
        raise BackupError(f"database {name}: engine must be one of {', '.join(ENGINES)}")
    out = dict(spec)
    if engine == "sqlite":
        if not spec.get("path") or not Path(str(spec["path"])).is_absolute():
            raise BackupError(f"database {name}: sqlite needs an absolute path")
        out["path"] = str(spec["path"])
    elif not spec.get("database"):
        raise BackupError(f"database {name}: {engine} needs database (its name)")
    out["compression"] = int(spec.get("compression", 6))
    out["lock_wait_timeout"] = int(spec.get("lock_wait_timeout", 60))
    out["tables"] = [str(t) for t in spec.get("tables") or []]
    out["schema_version_query"] = str(spec.get("schema_version_query") or "")
    out["migrations_rollback"] = [str(f) for f in spec.get("migrations_rollback") or []]
    for key, fields in (
        ("integrity_checks", ("name", "sql")),
        ("data_loss_tables", ("table", "key")),
    ):
        items = spec.get(key) or []
        for item in items:
            if not isinstance(item, dict) or any(not item.get(f) for f in fields):
                needs = " and ".join(fields)
                raise BackupError(f"database {name}: each of {key} needs {needs}")
        out[key] = [dict(item) for item in items]
    return out


def _specs(databases: list[Json] | tuple[Json, ...]) -> list[Json]:
    specs = [normalize_database(d) for d in databases]
    names = [s["name"] for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BackupError(f"database names must be unique: {', '.join(dupes)}")
    return specs


def _label(spec: Json) -> str:
    """What the manifest calls the database: its name, or the sqlite file's path."""
    return str(spec["path"] if spec["engine"] == "sqlite" else spec["database"])


# ----------------------------------------------------------------------------- processes


def _env(spec: Json) -> dict[str, str]:
    env = dict(os.environ)
    password = _password(spec)
    for var in ("PGPASSWORD", "MYSQL_PWD"):
        env.pop(var, None)
    if password is not None:
        env["MYSQL_PWD" if spec["engine"] == "mysql" else "PGPASSWORD"] = password
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "rollback-ops"
    return env


def _as_os_user(spec: Json, argv: list[str]) -> list[str]:
    """Run a client tool as the spec's os_user (peer authentication over the unix socket)."""
    user = spec.get("os_user")
    if not user or user == pwd.getpwuid(os.geteuid()).pw_name:
        return argv
    if os.geteuid() != 0:
        raise BackupError(f"database {spec['name']}: running as os_user {user} needs root")
    return ["runuser", "-u", str(user), "--", *argv]


def _run(
    spec: Json,
    argv: list[str],
    stdin: BinaryIO | None = None,
    data: bytes | None = None,
    as_user: bool = True,
    check: bool = True,
    lock_timeout: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    full = _as_os_user(spec, argv) if as_user else argv
    env = _env(spec)
    if lock_timeout:
        # fail, rather than wait forever, when something still holds a lock (the app running)
        timeout = f"-c lock_timeout={int(spec.get('lock_wait_timeout', 60))}s"
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " " + timeout).strip()
    try:
        proc = subprocess.run(
            full,
            stdin=stdin,
            input=data,
            capture_output=True,
            env=env,
            cwd="/",
            check=False,
        )
    except FileNotFoundError as exc:
        raise BackupError(f"{full[0]} is not installed on this host") from exc
    if check and proc.returncode != 0:
        err = _redact(proc.stderr.decode(errors="replace"), spec)
        raise BackupError(f"{argv[0]} failed (exit {proc.returncode}): {_tail(err)}")
    return proc


def _tool_version(spec: Json, tool: str) -> str:
    try:
        return _run(spec, [tool, "--version"], as_user=False).stdout.decode().strip()
    except BackupError:
        return ""


def _stream_to_file(
    spec: Json, argv: list[str], dest: Path, gzip_level: int | None = None
) -> tuple[int, str]:
    """Run argv, writing its stdout to dest (gzip-compressed if asked) while hashing it."""
    with tempfile.TemporaryFile() as err, _new_file(dest) as out:
        writer = _HashingWriter(out)
        try:
            proc = subprocess.Popen(
                _as_os_user(spec, argv),
                stdout=subprocess.PIPE,
                stderr=err,
                env=_env(spec),
                cwd="/",
            )
        except FileNotFoundError as exc:
            raise BackupError(f"{argv[0]} is not installed on this host") from exc
        stdout = proc.stdout
        assert stdout is not None
        sink: Any = writer
        if gzip_level is not None:
            sink = gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=gzip_level, mtime=0)  # type: ignore[arg-type]
        try:
            for block in iter(lambda: stdout.read(CHUNK), b""):
                sink.write(block)
            if gzip_level is not None:
                sink.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        out.flush()
        os.fsync(out.fileno())
        if code != 0:
            err.seek(0)
            msg = _redact(err.read().decode(errors="replace"), spec)
            raise BackupError(f"{argv[0]} failed (exit {code}): {_tail(msg)}")
    return writer.size, writer.digest.hexdigest()


# ----------------------------------------------------------------------------- PostgreSQL


def _pg_conn(spec: Json) -> list[str]:
    args = []
    if spec.get("host"):
        args += ["-h", str(spec["host"])]
    if spec.get("port"):
        args += ["-p", str(spec["port"])]
    if spec.get("user"):
        args += ["-U", str(spec["user"])]
    return args


def _pg_ident(name: str) -> str:
    return ".".join(_quote(part, '"') for part in name.split("."))


def _pg_literal(text: str) -> str:
    return _quote(text, "'")


class _PgSession:
    """One psql session driven over a pipe: each query's rows come back parsed from CSV."""

    def __init__(self, spec: Json, database: str | None = None) -> None:
        self.spec = spec
        self.database = database or spec["database"]
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._marker = f"__rbo_end_{uuid.uuid4().hex}__"
        argv = ["psql", "-X", "-q", "-w", "--csv", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += [*_pg_conn(spec), "-d", self.database]
        try:
            self.proc = subprocess.Popen(
                _as_os_user(spec, argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,
                env=_env(spec),
                cwd="/",
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except FileNotFoundError as exc:
            self._err.close()
            raise BackupError("psql is not installed on this host") from exc

    def __enter__(self) -> _PgSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failure(self, what: str) -> BackupError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._err.seek(0)
        err = _redact(self._err.read().decode(errors="replace"), self.spec)
        said = _tail(err) or "session ended"
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


def _pg_tables(session: _PgSession) -> list[str]:
    return [
        table if schema == "public" else f"{schema}.{table}"
        for schema, table in session.query(PG_USER_TABLES)
    ]


def _pg_stats(session: _PgSession, tables: list[str]) -> Json:
    stats = {}
    for table in tables:
        ident = _pg_ident(table)
        rows, checksum = session.query(PG_TABLE_STATS.format(ident))[0]
        stats[table] = {
            "rows": int(rows),
            "checksum": checksum,
            "columns": _pg_columns(session, table),
        }
    return stats


def _pg_columns(session: _PgSession, table: str) -> list[str]:
    relation = _pg_literal(_pg_ident(table))
    sql = (
        f"SELECT attname FROM pg_attribute WHERE attrelid = {relation}::regclass "  # noqa: S608
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    return [row[0] for row in session.query(sql)]


def _dump_postgresql(spec: Json, dest: Path) -> Json:
    """pg_dump -Fc in the snapshot exported by a REPEATABLE READ session, which computes the
    table stats in that same snapshot while pg_dump runs (streamed and hashed by a thread)."""
    with _PgSession(spec) as session:
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = session.value("SELECT pg_export_snapshot()")
        argv = ["pg_dump", "-Fc", f"-Z{spec['compression']}", "-w", f"--snapshot={snapshot}"]
        argv += [f"--lock-wait-timeout={spec['lock_wait_timeout'] * 1000}"]
        argv += [*_pg_conn(spec), "-d", spec["database"]]
        outcome: Json = {}

        def dump() -> None:
            try:
                outcome["size"], outcome["sha256"] = _stream_to_file(spec, argv, dest)
            except BaseException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=dump, name=f"pg_dump-{spec['name']}", daemon=True)
        worker.start()
        try:
            tables = spec["tables"] or _pg_tables(session)
            stats = _pg_stats(session, tables)
            schema = (
                session.value(spec["schema_version_query"]) if spec["schema_version_query"] else ""
            )
        finally:
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
    return {
        "size": outcome["size"],
        "sha256": outcome["sha256"],
        "tool": _tool_version(spec, "pg_dump"),
        "schema_version": schema,
        "tables": stats,
    }


def _pg_restore_list(spec: Json, path: Path) -> str:
    with path.open("rb") as handle:
        return _run(spec, ["pg_restore", "--list"], stdin=handle, as_user=False).stdout.decode(
            errors="replace"
        )


def _pg_owners(listing: str) -> set[str]:
    owners = set()
    for line in listing.splitlines():
        if line.strip() and not line.startswith(";"):
            owner = line.split()[-1]
            if owner != "-":
                owners.add(owner)
    return owners


def _pg_restore_into(spec: Json, path: Path, database: str, keep_owners: bool) -> None:
    argv = ["pg_restore", "-w", "--single-transaction", "--exit-on-error"]
    if database == spec["database"]:
        argv += ["--clean", "--if-exists"]
    if not keep_owners:
        argv += ["--no-owner"]
    argv += [*_pg_conn(spec), "-d", database]
    with path.open("rb") as handle:
        _run(spec, argv, stdin=handle, lock_timeout=True)


def _pg_can_keep_owners(spec: Json, listing: str) -> bool:
    """Keep the dump's owners if the user is a superuser or a member of every owner role."""
    owners = _pg_owners(listing)
    with _PgSession(spec) as session:
        if session.value("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == "t":
            return True
        for owner in owners:
            sql = f"SELECT pg_has_role(current_user, {_pg_literal(owner)}, 'MEMBER')"
            try:
                if session.value(sql) != "t":
                    return False
            except BackupError:
                return False
    return True


def _pg_restore_test(spec: Json, path: Path, tables: list[str]) -> Json:
    scratch = f"{spec['database']}_rbo_verify_{os.getpid()}"[:63]
    conn = _pg_conn(spec)
    _run(spec, ["dropdb", "-w", "--if-exists", *conn, scratch])
    _run(spec, ["createdb", "-w", *conn, scratch])
    try:
        argv = ["pg_restore", "-w", "--single-transaction", "--exit-on-error", "--no-owner"]
        argv += ["--no-privileges", *conn, "-d", scratch]
        with path.open("rb") as handle:
            _run(spec, argv, stdin=handle)
        with _PgSession(spec, scratch) as session:
            return _pg_stats(session, tables)
    finally:
        _run(spec, ["dropdb", "-w", "--if-exists", *conn, scratch], check=False)


# ----------------------------------------------------------------------------- SQLite


def _sqlite_ro(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"sqlite database {path} does not exist")
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)


def _sqlite_ident(name: str) -> str:
    return _quote(name, '"')


def _sqlite_tables(con: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [row[0] for row in con.execute(sql)]


def _sqlite_columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in con.execute(f"PRAGMA table_info({_sqlite_ident(table)})")]


def _sqlite_stats(con: sqlite3.Connection, tables: list[str]) -> Json:
    stats = {}
    for table in tables:
        rows = total = 0
        for row in con.execute(f"SELECT * FROM {_sqlite_ident(table)}"):  # noqa: S608 (quoted identifier)
            rows += 1
            total += _signed64(_md5(_row_text(row))[:16])
        stats[table] = {
            "rows": rows,
            "checksum": str(total),
            "columns": _sqlite_columns(con, table),
        }
    return stats


def _sqlite_value(con: sqlite3.Connection, sql: str) -> str:
    row = con.execute(sql).fetchone()
    return "" if row is None or row[0] is None else str(row[0])


def _sqlite_integrity(path: Path) -> str:
    """'ok', or what PRAGMA integrity_check says (the file opened read-only)."""
    try:
        con = _sqlite_ro(path)
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])


def _dump_sqlite(spec: Json, dest: Path) -> Json:
    """The online backup API (one step: a consistent copy even while the app writes), the copy
    switched to rollback-journal mode so it is one self-contained file."""
    src_path = Path(spec["path"])
    _new_file(dest).close()
    src = _sqlite_ro(src_path)
    try:
        journal_mode = _sqlite_value(src, "PRAGMA journal_mode")
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
    con = _sqlite_ro(dest)
    try:
        tables = spec["tables"] or _sqlite_tables(con)
        stats = _sqlite_stats(con, tables)
        query = spec["schema_version_query"]
        schema = _sqlite_value(con, query) if query else ""
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite stats of {src_path} failed: {exc}") from exc
    finally:
        con.close()
    size, digest = _sha256_file(dest)
    return {
        "size": size,
        "sha256": digest,
        "tool": f"python sqlite3 {sqlite3.sqlite_version}",
        "schema_version": schema,
        "tables": stats,
        "journal_mode": journal_mode,
    }


def _sqlite_restore_test(path: Path, tables: list[str]) -> Json:
    with tempfile.TemporaryDirectory(prefix="rbo-verify-") as tmp:
        copy = Path(tmp) / "restore.sqlite3"
        shutil.copyfile(path, copy)
        con = _sqlite_ro(copy)
        try:
            return _sqlite_stats(con, tables)
        finally:
            con.close()


# ----------------------------------------------------------------------------- MySQL
# Tested against MariaDB 10.11 (tests/unit/test_backupset.py, when it is installed); not
# against Oracle MySQL.


def _mysql_conn(spec: Json) -> list[str]:
    args = []
    host = str(spec.get("host") or "")
    if host.startswith("/"):
        args.append("--socket=" + host)
    elif host:
        args.append("--host=" + host)
    if spec.get("port"):
        args.append(f"--port={spec['port']}")
    if spec.get("user"):
        args.append("--user=" + str(spec["user"]))
    return args


def _mysql_ident(name: str) -> str:
    return ".".join(_quote(part, "`") for part in name.split("."))


def _mysql(spec: Json, sql: str, database: str | None = None) -> list[list[str]]:
    argv = ["mysql", "--batch", "--skip-column-names", *_mysql_conn(spec), "-e", sql]
    argv.append(database or spec["database"])
    out = _run(spec, argv).stdout.decode(errors="replace")
    return [line.split("\t") for line in out.splitlines()]


def _mysql_tables(spec: Json, database: str | None = None) -> list[str]:
    rows = _mysql(spec, "SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'", database)
    return sorted(row[0] for row in rows)


def _mysql_columns(spec: Json, table: str, database: str | None = None) -> list[str]:
    literal = _quote(table, "'")
    sql = (
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "  # noqa: S608
        f"AND table_name = {literal} ORDER BY ordinal_position"
    )
    return [row[0] for row in _mysql(spec, sql, database)]


def _mysql_stats(spec: Json, tables: list[str], database: str | None = None) -> Json:
    stats = {}
    for table in tables:
        ident = _mysql_ident(table)
        rows = _mysql(spec, f"SELECT COUNT(*) FROM {ident}; CHECKSUM TABLE {ident}", database)  # noqa: S608
        stats[table] = {
            "rows": int(rows[0][0]),
            "checksum": rows[1][-1],
            "columns": _mysql_columns(spec, table, database),
        }
    return stats


def _dump_mysql(spec: Json, dest: Path) -> Json:
    """mysqldump --single-transaction, gzip-streamed and hashed. The table stats are taken
    just before the dump, outside its transaction: stop writers for them to match exactly."""
    tables = spec["tables"] or _mysql_tables(spec)
    stats = _mysql_stats(spec, tables)
    query = spec["schema_version_query"]
    schema = (_mysql(spec, query) or [[""]])[0][0] if query else ""
    argv = ["mysqldump", "--single-transaction", "--routines", "--triggers", "--hex-blob"]
    argv += [*_mysql_conn(spec), spec["database"]]
    size, digest = _stream_to_file(spec, argv, dest, gzip_level=spec["compression"])
    return {
        "size": size,
        "sha256": digest,
        "tool": _tool_version(spec, "mysqldump"),
        "schema_version": schema,
        "tables": stats,
    }


def _mysql_check_dump(path: Path) -> str:
    """'ok' if the gzip stream is whole and the dump ends with mysqldump's completion line."""
    tail = b""
    try:
        with gzip.open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                tail = (tail + block)[-4096:]
    except (OSError, EOFError) as exc:
        return f"gzip: {exc}"
    return (
        "ok" if b"-- Dump completed" in tail else "the dump does not end with '-- Dump completed'"
    )


def _mysql_restore_into(spec: Json, path: Path, database: str) -> None:
    argv = _as_os_user(spec, ["mysql", "--batch", *_mysql_conn(spec), database])
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_env(spec),
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
            msg = _redact(err.read().decode(errors="replace"), spec)
            raise BackupError(f"mysql restore into {database} failed: {_tail(msg)}")


def _mysql_restore_test(spec: Json, path: Path, tables: list[str]) -> Json:
    scratch = f"{spec['database']}_rbo_verify_{os.getpid()}"[:64]
    ident = _mysql_ident(scratch)
    _mysql(spec, f"DROP DATABASE IF EXISTS {ident}; CREATE DATABASE {ident}")
    try:
        _mysql_restore_into(spec, path, scratch)
        return _mysql_stats(spec, tables, scratch)
    finally:
        with contextlib.suppress(BackupError):
            _mysql(spec, f"DROP DATABASE IF EXISTS {ident}")


# ----------------------------------------------------------------------------- sets


def set_path(root: str, app: str, set_id: str) -> Path:
    _check_name("app", app)
    _check_name("set_id", set_id)
    return Path(root) / app / set_id


def _check_name(what: str, value: str) -> None:
    if not value or not NAME_RE.match(value):
        raise BackupError(f"{what} {value!r}: letters, digits and . _ - only")


def _claim_set_dir(app_dir: Path, stamp: str, kind: str) -> tuple[str, Path]:
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


def _code_ref(code_path: str) -> Json:
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


def _copy_file(source: str, set_dir: Path) -> Json:
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
    with src.open("rb") as fin, _new_file(dest) as fout:
        writer = _HashingWriter(fout)
        for block in iter(lambda: fin.read(CHUNK), b""):
            writer.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return {
        "path": str(src),
        "file": rel,
        "size": writer.size,
        "sha256": writer.digest.hexdigest(),
        "mode": _mode(st),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _dump(spec: Json, set_dir: Path) -> Json:
    rel = f"db/{spec['name']}{EXTENSIONS[spec['engine']]}"
    dest = set_dir / rel
    if spec["engine"] == "postgresql":
        info = _dump_postgresql(spec, dest)
    elif spec["engine"] == "sqlite":
        info = _dump_sqlite(spec, dest)
    else:
        info = _dump_mysql(spec, dest)
    entry = {"name": spec["name"], "engine": spec["engine"], "database": _label(spec), "file": rel}
    entry.update(info)
    return entry


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


def _manifests(root: str, app: str) -> list[tuple[Path, Json]]:
    """Every complete set of the app, newest first."""
    _check_name("app", app)
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


def _set_size(manifest: Json) -> int:
    return sum(
        int(e.get("size", 0)) for e in manifest.get("databases", []) + manifest.get("files", [])
    )


def _summary(manifest: Json) -> Json:
    return {
        "set_id": manifest["set_id"],
        "kind": manifest.get("kind", ""),
        "created": manifest.get("created", ""),
        "run_id": manifest.get("run_id", ""),
        "size": _set_size(manifest),
        "verified": bool(manifest.get("verification", {}).get("ok")),
        "describe": manifest.get("code", {}).get("describe", ""),
        "databases": [d["name"] for d in manifest.get("databases", [])],
    }


def create_set(
    root: str,
    app: str,
    kind: str,
    databases: list[Json],
    files: list[str],
    code_path: str = "",
    run_id: str = "",
    restore_test: bool = False,
) -> Json:
    """Dump every database, copy every file, record the code, verify, write the manifest.

    Returns the manifest. A set whose verification fails is kept (its manifest says so); a
    set whose creation fails is removed and BackupError raised."""
    _check_name("app", app)
    if kind not in KINDS:
        raise BackupError(f"kind must be one of {', '.join(KINDS)}")
    specs = _specs(databases)
    moment = _now()
    root_dir = Path(root)
    if not root_dir.is_dir():
        _private_dir(root_dir)
    set_id, set_dir = _claim_set_dir(
        _private_dir(root_dir / app), moment.strftime("%Y%m%dT%H%M%SZ"), kind
    )
    try:
        if specs:
            _private_dir(set_dir / "db")
        manifest: Json = {
            "format": FORMAT,
            "app": app,
            "set_id": set_id,
            "kind": kind,
            "created": _iso(moment),
            "host": socket.gethostname(),
            "run_id": run_id,
            "code": _code_ref(code_path),
            "databases": [_dump(spec, set_dir) for spec in specs],
            "files": [_copy_file(f, set_dir) for f in files],
            "verification": {},
            "restore_test": {},
        }
        _write_json_atomic(set_dir / MANIFEST, manifest)
        manifest["verification"], manifest["restore_test"] = _verify(
            set_dir, manifest, specs, restore_test
        )
        _write_json_atomic(set_dir / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(set_dir, ignore_errors=True)
        raise
    return manifest


def list_sets(root: str, app: str) -> list[Json]:
    """Summaries of the app's sets, newest first."""
    return [_summary(manifest) for _, manifest in _manifests(root, app)]


def choose_set(
    root: str, app: str, set_id: str = "", kinds: tuple[str, ...] = ()
) -> tuple[Path, Json]:
    """The given set, or the newest whose verification is ok, which is not forensic and (when
    kinds are given) is of one of those kinds."""
    if set_id:
        path = set_path(root, app, set_id)
        return path, read_manifest(path)
    for path, manifest in _manifests(root, app):
        kind = manifest.get("kind")
        if kind == "forensic" or (kinds and kind not in kinds):
            continue
        if manifest.get("verification", {}).get("ok"):
            return path, manifest
    which = f"{'/'.join(kinds)} " if kinds else ""
    raise BackupError(
        f"no verified {which}backup set of {app} under {root} (forensic sets excluded; "
        "`rollback-ops backup list` shows them, --backup-id chooses one)"
    )


def with_passwords(databases: list[Json], passwords: dict[str, str]) -> list[Json]:
    """The database specs with their passwords merged in, for the client tools only (never
    returned by the modules). A spec holding a password itself is refused: passwords travel
    in the modules' no_log ``passwords`` option, so the specs and results stay printable."""
    merged = []
    for spec in databases:
        if "password" in spec:
            raise BackupError(
                f"database {spec.get('name')}: put its password in the passwords option, "
                "not in databases"
            )
        spec = dict(spec)
        if passwords.get(str(spec.get("name"))):
            spec["password"] = passwords[str(spec["name"])]
        merged.append(spec)
    return merged


def live_schema_version(spec: Json) -> str:
    """The live database's schema version (its schema_version_query), or ""."""
    query = spec["schema_version_query"]
    if not query:
        return ""
    if spec["engine"] == "postgresql":
        with _PgSession(spec) as session:
            return session.value(query)
    if spec["engine"] == "sqlite":
        con = _sqlite_ro(Path(spec["path"]))
        try:
            return _sqlite_value(con, query)
        finally:
            con.close()
    rows = _mysql(spec, query)
    return rows[0][0] if rows and rows[0] else ""


def schema_check(root: str, app: str, databases: list[Json], code_ref: str) -> Json:
    """The schema versions recorded with release code_ref (in the newest verified set taken
    with it) against the live ones: a code rollback to an older schema needs the full level
    unless the app has migration rollback files."""
    specs = _specs(databases)
    found = next(
        (
            m
            for _p, m in _manifests(root, app)
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
        now = live_schema_version(spec)
        out["databases"][spec["name"]] = {
            "recorded": then,
            "live": now,
            "older": bool(now) and _natural(then) < _natural(now),
            "migrations_rollback": bool(spec["migrations_rollback"]),
        }
    return out


def live_differences(manifest: Json, databases: list[Json] | tuple[Json, ...]) -> Json:
    """Per database of the set, how the live one differs from it: tables missing or added,
    rows, checksums or columns that differ ([] when the live database equals the set)."""
    out: Json = {}
    recorded = {d["name"]: d for d in manifest.get("databases", [])}
    for spec in _specs(databases):
        entry = recorded.get(spec["name"])
        if entry is None:
            continue
        want = entry.get("tables") or {}
        if spec["engine"] == "postgresql":
            with _PgSession(spec) as session:
                present = _pg_tables(session)
                live = _pg_stats(session, [t for t in want if t in present])
        elif spec["engine"] == "sqlite":
            if not Path(spec["path"]).is_file():
                out[spec["name"]] = [f"{spec['path']} does not exist"]
                continue
            con = _sqlite_ro(Path(spec["path"]))
            try:
                present = _sqlite_tables(con)
                live = _sqlite_stats(con, [t for t in want if t in present])
            finally:
                con.close()
        else:
            present = _mysql_tables(spec)
            live = _mysql_stats(spec, [t for t in want if t in present])
        diffs = [f"table {t} is missing" for t in want if t not in present]
        if not spec["tables"]:  # every table was recorded: one the release added is a change
            diffs += [f"table {t} is not in the set" for t in present if t not in want]
        for table, stats in live.items():
            for field in ("rows", "checksum", "columns"):
                if stats[field] != want[table].get(field):
                    diffs.append(f"{table}: {field} differ")
        out[spec["name"]] = diffs
    return out


def _check_files(set_dir: Path, manifest: Json, checks: list[str], problems: list[str]) -> None:
    entries = list(manifest.get("databases", [])) + list(manifest.get("files", []))
    if manifest.get("keys"):
        entries.append(manifest["keys"])
    for entry in entries:
        rel = entry["file"]
        path = set_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size, digest = _sha256_file(path)
        if digest != entry.get("sha256") or size != entry.get("size"):
            want = str(entry.get("sha256"))[:16]
            problems.append(
                f"{rel}: sha256 {digest[:16]} ({size} bytes) differs from the manifest's "
                f"{want} ({entry.get('size')} bytes)"
            )
        else:
            checks.append(f"{rel}: sha256 ok")


def _check_dumps(set_dir: Path, manifest: Json, checks: list[str], problems: list[str]) -> None:
    for db in manifest.get("databases", []):
        path = set_dir / db["file"]
        if not path.is_file():
            continue
        rel = db["file"]
        if db["engine"] == "postgresql":
            try:
                _pg_restore_list({"name": db["name"], "engine": "postgresql"}, path)
                checks.append(f"{rel}: pg_restore --list ok")
            except BackupError as exc:
                problems.append(f"{rel}: {exc}")
        elif db["engine"] == "sqlite":
            said = _sqlite_integrity(path)
            if said == "ok":
                checks.append(f"{rel}: integrity_check ok")
            else:
                problems.append(f"{rel}: integrity_check: {said}")
        else:
            said = _mysql_check_dump(path)
            if said == "ok":
                checks.append(f"{rel}: gzip whole, dump completed")
            else:
                problems.append(f"{rel}: {said}")


def _restore_test(set_dir: Path, manifest: Json, specs: list[Json]) -> Json:
    by_name = {s["name"]: s for s in specs}
    result: Json = {"ok": False, "at": _iso(_now()), "tables": {}, "problems": []}
    for db in manifest.get("databases", []):
        path = set_dir / db["file"]
        tables = sorted(db.get("tables", {}))
        spec = by_name.get(db["name"])
        try:
            if db["engine"] == "sqlite":
                got = _sqlite_restore_test(path, tables)
            elif spec is None:
                raise BackupError("no database spec given to connect with")
            elif db["engine"] == "postgresql":
                got = _pg_restore_test(spec, path, tables)
            else:
                got = _mysql_restore_test(spec, path, tables)
        except (BackupError, sqlite3.Error) as exc:
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


def _verify(
    set_dir: Path, manifest: Json, specs: list[Json], restore_test: bool
) -> tuple[Json, Json]:
    checks: list[str] = []
    problems: list[str] = []
    _check_files(set_dir, manifest, checks, problems)
    _check_dumps(set_dir, manifest, checks, problems)
    tested: Json = manifest.get("restore_test") or {}
    if restore_test:
        tested = _restore_test(set_dir, manifest, specs)
        if tested["ok"]:
            checks.append("restore test ok")
        problems.extend(f"restore test: {p}" for p in tested["problems"])
    elif tested and not tested.get("ok"):
        # a failed restore test stands until a restore test passes
        problems.extend(f"restore test of {tested.get('at')}: {p}" for p in tested["problems"])
    verification = {"ok": not problems, "at": _iso(_now()), "checks": checks, "problems": problems}
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
    verification, tested = _verify(set_dir, manifest, _specs(databases), restore_test)
    if record:
        manifest["verification"], manifest["restore_test"] = verification, tested
        _write_json_atomic(set_dir / MANIFEST, manifest)
    return {"set_id": set_id, "verification": verification, "restore_test": tested}


def prune(
    root: str,
    app: str,
    keep: int | None = None,
    max_age_days: float | None = None,
    dry_run: bool = False,
) -> Json:
    """Remove sets beyond the newest ``keep`` or older than ``max_age_days`` days; never the
    newest verified non-forensic set, never a forensic set, never a set without manifest."""
    manifests = _manifests(root, app)
    protected = None
    for path, manifest in manifests:
        if manifest.get("kind") != "forensic" and manifest.get("verification", {}).get("ok"):
            protected = path
            break
    now = _now()
    removed, kept = [], []
    index = 0
    for path, manifest in manifests:
        if manifest.get("kind") == "forensic":
            kept.append(manifest["set_id"])
            continue
        position, index = index, index + 1
        reasons = []
        if keep is not None and position >= keep:
            reasons.append(f"beyond the newest {keep}")
        try:
            age = now - _parse_iso(manifest["created"])
        except (KeyError, ValueError):
            age = timedelta(0)
        if max_age_days is not None and age > timedelta(days=max_age_days):
            reasons.append(f"older than {max_age_days} days")
        if not reasons or path == protected:
            kept.append(manifest["set_id"])
            continue
        summary = _summary(manifest)
        summary["reasons"] = reasons
        removed.append(summary)
        if not dry_run:
            shutil.rmtree(path)
    return {"removed": removed, "kept": kept, "freed": sum(r["size"] for r in removed)}


def check_restorable(set_dir: str | Path, app: str, databases: list[Json]) -> Json:
    """Everything that must hold before anything is stopped: the set is this app's, verified,
    holds every database of the spec with the same engine and database, every file matches
    its sha256, every dump reads. Returns ok, problems, checks and what the set is."""
    set_dir = Path(set_dir)
    problems: list[str] = []
    checks: list[str] = []
    try:
        manifest = read_manifest(set_dir)
    except BackupError as exc:
        return {"ok": False, "problems": [str(exc)], "checks": []}
    specs = _specs(databases)
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
        entry = by_name.get(name)
        if entry is None:
            problems.append(f"database {name}: not in the set")
            continue
        if entry["engine"] != spec["engine"]:
            problems.append(
                f"database {name}: the set holds {entry['engine']}, the spec says {spec['engine']}"
            )
        elif entry["database"] != _label(spec):
            problems.append(
                f"database {name}: the set holds {entry['database']!r}, "
                f"the spec says {_label(spec)!r}"
            )
        elif spec["engine"] == "sqlite":
            parent = Path(spec["path"]).parent
            free = shutil.disk_usage(parent).free if parent.is_dir() else 0
            if free < int(entry.get("size", 0)) * 2:
                need = int(entry["size"]) * 2
                problems.append(f"database {name}: {free} bytes free in {parent}, need {need}")
    _check_files(set_dir, manifest, checks, problems)
    _check_dumps(set_dir, manifest, checks, problems)
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


def restore_database(set_dir: str | Path, manifest_db: Json, spec: Json) -> Json:
    """Replace the live database with the set's copy. PostgreSQL: pg_restore --clean
    --if-exists --single-transaction (owners kept if the user may); SQLite: atomic replace
    (temp file in the same directory, fsync, stale -wal/-shm/-journal removed, rename)."""
    spec = normalize_database(spec)
    path = Path(set_dir) / manifest_db["file"]
    done: Json = {
        "name": spec["name"],
        "engine": spec["engine"],
        "database": _label(spec),
        "from": str(path),
    }
    if spec["engine"] == "postgresql":
        listing = _pg_restore_list(spec, path)
        keep = _pg_can_keep_owners(spec, listing)
        _pg_restore_into(spec, path, spec["database"], keep)
        done.update(method="pg_restore --clean --if-exists --single-transaction", owners_kept=keep)
    elif spec["engine"] == "sqlite":
        done.update(_sqlite_replace(path, Path(spec["path"]), manifest_db.get("journal_mode", "")))
    else:
        _mysql_restore_into(spec, path, spec["database"])
        done.update(method="mysql < dump (DDL is not transactional in MySQL)")
    return done


def _sqlite_replace(backup: Path, live: Path, journal_mode: str) -> Json:
    directory = live.parent
    try:
        st: os.stat_result | None = live.stat()
    except FileNotFoundError:
        st = None
    fd, name = tempfile.mkstemp(prefix=f".{live.name}.rbo-restore-", dir=str(directory))
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, backup.open("rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        if journal_mode and journal_mode.lower() not in ("delete", "memory", "off"):
            con = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                con.execute(f"PRAGMA journal_mode={journal_mode.upper()}")
            finally:
                con.close()
        if st is not None:
            os.chown(str(tmp), st.st_uid, st.st_gid)
            tmp.chmod(stat.S_IMODE(st.st_mode))
        else:
            tmp.chmod(0o640)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        removed = []
        for suffix in ("-wal", "-shm", "-journal"):
            stale = live.with_name(live.name + suffix)
            if stale.exists():
                stale.unlink()
                removed.append(stale.name)
        tmp.replace(live)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return {
        "method": "atomic replace",
        "removed": removed,
        "journal_mode": journal_mode or "delete",
    }


def run_migrations(spec: Json, files: list[str] | None = None) -> list[Json]:
    """Run each SQL file in its own transaction, in order (default: the spec's
    migrations_rollback). A failing file leaves nothing of itself applied; BackupError names
    it, with the files already applied in .result["migrations"]."""
    spec = normalize_database(spec)
    done: list[Json] = []
    for name in spec["migrations_rollback"] if files is None else files:
        path = Path(name)
        try:
            script = path.read_bytes()
        except OSError as exc:
            raise BackupError(f"migration {name}: {exc}", {"migrations": done}) from exc
        try:
            if spec["engine"] == "postgresql":
                argv = ["psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
                argv += [*_pg_conn(spec), "-d", spec["database"], "-f", "-"]
                _run(spec, argv, data=script, lock_timeout=True)
            elif spec["engine"] == "sqlite":
                _sqlite_script(Path(spec["path"]), script.decode())
            else:
                body = b"START TRANSACTION;\n" + script + b"\n;\nCOMMIT;\n"
                _run(spec, ["mysql", "--batch", *_mysql_conn(spec), spec["database"]], data=body)
        except (BackupError, sqlite3.Error, UnicodeDecodeError) as exc:
            raise BackupError(
                f"migration {name} failed, nothing of it applied: {exc}", {"migrations": done}
            ) from exc
        done.append({"file": name, "sha256": hashlib.sha256(script).hexdigest()})
    return done


def _sqlite_script(path: Path, script: str) -> None:
    if not path.is_file():
        raise BackupError(f"sqlite database {path} does not exist")
    con = sqlite3.connect(str(path), isolation_level=None, timeout=30)
    try:
        # One executescript from BEGIN to COMMIT: executescript commits a pending transaction
        # before it runs, so a BEGIN issued separately would not hold the script.
        con.executescript(f"BEGIN;\n{script}\n;\nCOMMIT;")
    except sqlite3.Error:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def integrity(spec: Json) -> Json:
    """Run each integrity check (a query that must return no rows). Returns ok, the checks
    passed, and the failures with their row count and up to 5 offending rows."""
    spec = normalize_database(spec)
    passed, failures = [], []
    for check in spec["integrity_checks"]:
        sql = check["sql"].strip().rstrip(";").strip()
        try:
            count, rows = _offending_rows(spec, sql)
        except (BackupError, sqlite3.Error) as exc:
            failures.append({"name": check["name"], "error": str(exc), "count": -1, "rows": []})
            continue
        if count:
            failures.append({"name": check["name"], "count": count, "rows": rows})
        else:
            passed.append(check["name"])
    return {"ok": not failures, "passed": passed, "failures": failures}


def _offending_rows(spec: Json, sql: str) -> tuple[int, list[list[Any]]]:
    if spec["engine"] == "sqlite":
        con = _sqlite_ro(Path(spec["path"]))
        try:
            count, rows = 0, []
            for row in con.execute(sql):
                count += 1
                if len(rows) < SHOWN_ROWS:
                    rows.append([v.hex() if isinstance(v, bytes) else v for v in row])
            return count, rows
        finally:
            con.close()
    # the inventory's own query, wrapped to count its rows and show the first few
    counting = f"SELECT count(*) FROM ({sql}) rbo_q"  # noqa: S608
    showing = f"SELECT * FROM ({sql}) rbo_q LIMIT {SHOWN_ROWS}"  # noqa: S608
    if spec["engine"] == "postgresql":
        with _PgSession(spec) as session:
            count = int(session.value(counting))
            rows = session.query(showing) if count else []
        return count, [list(r) for r in rows]
    count = int(_mysql(spec, counting)[0][0])
    return count, _mysql(spec, showing) if count else []


def columns(spec: Json, table: str) -> list[str]:
    """The table's columns, in order, in the live database."""
    spec = normalize_database(spec)
    if spec["engine"] == "sqlite":
        con = _sqlite_ro(Path(spec["path"]))
        try:
            return _sqlite_columns(con, table)
        finally:
            con.close()
    if spec["engine"] == "postgresql":
        with _PgSession(spec) as session:
            return _pg_columns(session, table)
    return _mysql_columns(spec, table)


def row_keys(spec: Json, table: str, key: str, columns: list[str] | None = None) -> dict[str, str]:
    """{key (as text): md5 of the row} for every row of the live table; the md5 is over the
    given columns only (default: all), so states across a schema change can be compared."""
    spec = normalize_database(spec)
    if spec["engine"] == "sqlite":
        cols = ", ".join(_sqlite_ident(c) for c in columns) if columns else "*"
        sql = f"SELECT {_sqlite_ident(key)}, {cols} FROM {_sqlite_ident(table)}"  # noqa: S608
        con = _sqlite_ro(Path(spec["path"]))
        try:
            return {str(row[0]): _md5(_row_text(row[1:])) for row in con.execute(sql)}
        finally:
            con.close()
    if spec["engine"] == "postgresql":
        row = f"ROW({', '.join(_pg_ident(c) for c in columns)})" if columns else "t"
        sql = f"SELECT ({_pg_ident(key)})::text, md5({row}::text) FROM {_pg_ident(table)} t"  # noqa: S608
        with _PgSession(spec) as session:
            return {r[0]: r[1] for r in session.query(sql)}
    cols = ", ".join(_mysql_ident(c) for c in columns) if columns else "t.*"
    sql = f"SELECT {_mysql_ident(key)}, {cols} FROM {_mysql_ident(table)} t"  # noqa: S608
    return {r[0]: _md5("\t".join(r[1:]).encode()) for r in _mysql(spec, sql)}


def data_loss(before: dict[str, str], after: dict[str, str]) -> Json:
    """Rows of the state before the restore that the restored database lacks, or holds
    differently (first 20 keys of each, and the counts)."""
    missing = sorted((k for k in before if k not in after), key=_natural)
    changed = sorted((k for k in before if k in after and after[k] != before[k]), key=_natural)
    return {
        "missing": missing[:SHOWN_KEYS],
        "changed": changed[:SHOWN_KEYS],
        "missing_count": len(missing),
        "changed_count": len(changed),
    }


def save_keys(set_dir: str | Path, databases: list[Json], target: Json | None = None) -> Json:
    """Write keys.json into a (forensic) set: row_keys of each database's data_loss_tables,
    hashed over the columns the live table shares with the target set's copy (its manifest
    records them), so a later comparison with the restored database is not thrown by a
    column the release added. Records keys.json's sha256 in the manifest."""
    set_dir = Path(set_dir)
    manifest = read_manifest(set_dir)
    target_tables = {d["name"]: d.get("tables", {}) for d in (target or {}).get("databases", [])}
    keys: Json = {"target_set_id": (target or {}).get("set_id", ""), "databases": {}}
    for spec in _specs(databases):
        for item in spec["data_loss_tables"]:
            table, key = item["table"], item["key"]
            live = columns(spec, table)
            kept = target_tables.get(spec["name"], {}).get(table, {}).get("columns")
            cols = [c for c in kept if c in live] if kept else live
            keys["databases"].setdefault(spec["name"], {})[table] = {
                "key": key,
                "columns": cols,
                "dropped_columns": [c for c in live if c not in cols],
                "rows": row_keys(spec, table, key, cols),
            }
    path = set_dir / KEYS
    _write_json_atomic(path, keys)
    size, digest = _sha256_file(path)
    manifest["keys"] = {"file": KEYS, "size": size, "sha256": digest}
    _write_json_atomic(set_dir / MANIFEST, manifest)
    return {
        name: {table: len(v["rows"]) for table, v in tables.items()}
        for name, tables in keys["databases"].items()
    }


def find_forensic(
    root: str, app: str, run_id: str = "", set_id: str = ""
) -> tuple[Path, Json] | None:
    """The given forensic set, or the newest forensic set of the run (any run if run_id is
    empty) that holds keys.json and passed verification."""
    if set_id:
        path = set_path(root, app, set_id)
        manifest = read_manifest(path)
        if manifest.get("kind") != "forensic":
            raise BackupError(f"the set {set_id} is {manifest.get('kind')}, not forensic")
        return path, manifest
    for path, manifest in _manifests(root, app):
        if manifest.get("kind") != "forensic" or not manifest.get("keys"):
            continue
        if run_id and manifest.get("run_id") != run_id:
            continue
        if manifest.get("verification", {}).get("ok"):
            return path, manifest
    return None


def create_forensic(
    root: str,
    app: str,
    databases: list[Json],
    files: list[str] | tuple[str, ...] = (),
    code_path: str = "",
    run_id: str = "",
    target: Json | None = None,
) -> Json:
    """A forensic set of the live databases (never pruned) with keys.json for data_loss.
    Returns the manifest and the keys' row counts."""
    manifest = create_set(root, app, "forensic", databases, list(files), code_path, run_id)
    set_dir = set_path(root, app, manifest["set_id"])
    counts = save_keys(set_dir, databases, target)
    return {"manifest": read_manifest(set_dir), "keys": counts}


def restore_set(
    set_dir: str | Path, databases: list[Json], forensic_dir: str | Path | None = None
) -> Json:
    """Restore each database from the set, run its migration rollback files, its integrity
    checks and, against the forensic set's keys.json, its data_loss. Raises BackupError (with
    what was done in .result) when a restore or a migration fails; integrity failures are
    returned (ok False), the databases staying restored."""
    set_dir = Path(set_dir)
    manifest = read_manifest(set_dir)
    by_name = {d["name"]: d for d in manifest.get("databases", [])}
    keys: Json = {}
    if forensic_dir is not None:
        try:
            keys = json.loads((Path(forensic_dir) / KEYS).read_text()).get("databases", {})
        except (OSError, ValueError) as exc:
            raise BackupError(f"the forensic set's {KEYS} cannot be read: {exc}") from exc
    result: Json = {
        "set_id": manifest["set_id"],
        "restored": [],
        "migrations": {},
        "integrity": {},
        "data_loss": {},
    }
    for spec in _specs(databases):
        name = spec["name"]
        if name not in by_name:
            raise BackupError(f"database {name}: not in the set {manifest['set_id']}", result)
        try:
            result["restored"].append(restore_database(set_dir, by_name[name], spec))
            result["migrations"][name] = run_migrations(spec)
        except BackupError as exc:
            if "migrations" in exc.result:
                result["migrations"][name] = exc.result["migrations"]
            raise BackupError(f"database {name}: {exc}", result) from exc
        result["integrity"][name] = integrity(spec)
        for item in spec["data_loss_tables"]:
            table = item["table"]
            before = keys.get(name, {}).get(table)
            if before is None:
                continue
            after = row_keys(spec, table, before["key"], before["columns"])
            loss = data_loss(before["rows"], after)
            loss["dropped_columns"] = before.get("dropped_columns", [])
            result["data_loss"].setdefault(name, {})[table] = loss
    result["ok"] = all(i["ok"] for i in result["integrity"].values())
    return result


# ----------------------------------------------------------------------------- CLI


def _load_config(path: str) -> Json:
    try:
        config: Json = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"config {path}: {exc}") from exc
    if not config.get("app"):
        raise BackupError(f"config {path}: app is required")
    for spec in config.get("databases") or []:
        if isinstance(spec, dict) and "password" in spec:
            raise BackupError(
                f"config {path}: put passwords in the environment (password_env), not the file"
            )
    return config


def main(argv: list[str] | None = None) -> int:
    """Standalone use on a host (scheduled jobs). Prints JSON; exit 1 when a verification
    fails, 2 on an error."""
    parser = argparse.ArgumentParser(
        prog="rollback_backupset.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["create", "list", "verify", "prune"])
    parser.add_argument(
        "--config",
        required=True,
        help="JSON: app, root, kind, databases, files, code_path, keep, max_age_days",
    )
    parser.add_argument("--kind", help="create: overrides the config's kind (default scheduled)")
    parser.add_argument("--run-id", default="", help="create: recorded in the manifest")
    parser.add_argument("--set-id", default="", help="verify: the set (default: the newest)")
    parser.add_argument(
        "--restore-test",
        action="store_true",
        help="create, verify: restore into a throwaway database",
    )
    parser.add_argument("--keep", type=int, help="prune: overrides the config's keep")
    parser.add_argument(
        "--max-age-days", type=float, help="prune: overrides the config's max_age_days"
    )
    args = parser.parse_args(argv)
    code = 0
    try:
        config = _load_config(args.config)
        root = config.get("root") or DEFAULT_ROOT
        app = config["app"]
        databases = config.get("databases") or []
        restore_test = args.restore_test or bool(config.get("restore_test"))
        out: Any
        if args.command == "create":
            out = create_set(
                root,
                app,
                args.kind or config.get("kind") or "scheduled",
                databases,
                config.get("files") or [],
                config.get("code_path") or "",
                args.run_id or config.get("run_id") or "",
                restore_test,
            )
            code = 0 if out["verification"]["ok"] else 1
        elif args.command == "list":
            out = list_sets(root, app)
        elif args.command == "verify":
            set_id = args.set_id or (list_sets(root, app) or [{}])[0].get("set_id", "")
            if not set_id:
                raise BackupError(f"no backup set of {app} under {root}")
            out = verify_set(root, app, set_id, databases, restore_test)
            code = 0 if out["verification"]["ok"] else 1
        else:
            keep = args.keep if args.keep is not None else config.get("keep")
            age = args.max_age_days if args.max_age_days is not None else config.get("max_age_days")
            out = prune(root, app, keep, age)
    except BackupError as exc:
        out, code = {"failed": True, "msg": str(exc)}, 2
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
