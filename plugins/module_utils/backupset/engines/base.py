"""The Engine interface: what the backup sets do with one database, whatever its engine.

An engine object is bound to one database spec (``specs.normalize_database``'s output), or,
for what needs no connection (reading a dump back, an SQLite restore test), to a manifest
entry's name only (``offline``). The registry (``engines/__init__.py``) chooses the class;
nothing else names an engine.

``ServerEngine`` is the part PostgreSQL and MySQL share: a database server reached with its
client tools, run as the spec's ``os_user`` when given, the password passed in the tool's
environment variable only (``password_var``) and redacted from whatever the tool says.
"""

from __future__ import annotations

import abc
import contextlib
import gzip
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from ..common import CHUNK, BackupError, HashingWriter, Json, new_file, tail


class Engine(abc.ABC):
    """One database: dump, check, restore, stats, columns, row keys, schema version."""

    name: ClassVar[str]  # as the spec's engine names it
    extension: ClassVar[str]  # of its dump, db/<name><extension>

    def __init__(self, spec: Json, connectable: bool = True) -> None:
        self.spec = spec
        self.connectable = connectable

    @classmethod
    def offline(cls, name: str) -> Engine:
        """An engine for a database of a set only: read its dump, not a live database."""
        return cls({"name": name, "engine": cls.name}, connectable=False)

    # ------------------------------------------------------------------------- the spec

    @classmethod
    @abc.abstractmethod
    def normalize(cls, spec: Json, out: Json) -> None:
        """Check the spec's engine-specific fields, filling out (raise BackupError)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """What the manifest calls the database: its name, or its file's path."""

    # ------------------------------------------------------------------------- a set's copy

    @abc.abstractmethod
    def dump(self, dest: Path) -> Json:
        """Write the database's copy to dest (a new file, mode 0600); returns size, sha256,
        tool, schema_version and tables (per table: rows, checksum, columns)."""

    @abc.abstractmethod
    def check(self, path: Path) -> tuple[bool, str]:
        """Whether a copy reads back whole, and what was checked (or what is wrong)."""

    @abc.abstractmethod
    def restore(self, path: Path, entry: Json) -> Json:
        """Replace the live database with the copy at path (entry: its manifest entry);
        returns how (method, and what the engine adds)."""

    @abc.abstractmethod
    def restore_test(self, path: Path, tables: list[str]) -> Json:
        """Restore the copy somewhere throwaway; the stats of those tables there."""

    def space_problem(self, entry: Json) -> str | None:
        """Why the live database's place lacks room for the restore, or None."""
        return None

    def restore_blockers(self, path: Path) -> list[str]:
        """Live objects the copy does not hold that would make its restore fail (e.g. a
        foreign key from a table the bad release added to a table the copy replaces), as
        one line each; [] when the restore can proceed (a replaced file has none)."""
        return []

    # ------------------------------------------------------------------------- the live database

    def unavailable(self) -> str | None:
        """Why the live database cannot be compared at all (e.g. its file is gone), or None."""
        return None

    @abc.abstractmethod
    def tables_and_stats(self, wanted: list[str]) -> tuple[list[str], Json]:
        """The live user tables, and the stats (rows, checksum, columns) of wanted's present."""

    @abc.abstractmethod
    def columns(self, table: str) -> list[str]:
        """The live table's columns, in order."""

    @abc.abstractmethod
    def row_keys(self, table: str, key: str, columns: list[str] | None = None) -> dict[str, str]:
        """{key (as text): md5 of the row} of every live row, over columns (default: all)."""

    @abc.abstractmethod
    def value(self, sql: str) -> str:
        """The first column of the first row a query returns, as text ("" for none)."""

    @abc.abstractmethod
    def offending_rows(self, sql: str, shown: int) -> tuple[int, list[list[Any]]]:
        """How many rows a query returns, and the first shown of them."""

    @abc.abstractmethod
    def migrate(self, script: bytes) -> None:
        """Run one SQL script in one transaction: all of it applied, or nothing."""

    # ------------------------------------------------------------------------- lost rows

    @contextlib.contextmanager
    def scratch(self, path: Path) -> Iterator[Engine]:
        """An engine bound to a throwaway database restored from the set's copy at path,
        dropped afterwards (backup export-loss reads the forensic set there)."""
        raise BackupError(f"database {self.spec.get('name')}: {self.name} has no export-loss")
        yield self  # pragma: no cover

    def rows(
        self, table: str, columns: list[str], key: str, keys: list[str], literal: bool
    ) -> list[list[str | None]]:
        """The rows whose key (as text) is one of keys, each its columns' values as text
        (None for NULL), or as SQL literals with literal."""
        raise BackupError(f"database {self.spec.get('name')}: {self.name} has no export-loss")

    def insert(self, table: str, columns: list[str], literals: list[str | None]) -> str:
        """One statement inserting a row unless its key is taken (replayable twice)."""
        raise BackupError(f"database {self.spec.get('name')}: {self.name} has no export-loss")

    def after_inserts(self, table: str, key: str) -> str:
        """A statement to run after replaying rows with explicit keys ("" for none): what
        keeps the app's next insert from taking a replayed key (a sequence moved on)."""
        return ""

    def schema_snapshot(self) -> Json:
        """Each live table: its row count and, per column, its non-null values
        ({table: {"rows": n, "columns": {column: n}}})."""
        raise BackupError(f"the {self.name} engine cannot count the live schema's values")

    def preview_migrations(self, scripts: list[bytes]) -> tuple[Json, Json]:
        """schema_snapshot before and after the scripts, run in one transaction that is
        then rolled back: nothing of them stays."""
        raise BackupError(
            f"the {self.name} engine cannot preview a migration rollback (its DDL commits "
            "by itself); the schema level supports postgresql and sqlite"
        )

    def schema_version(self) -> str:
        """The live database's schema version (its schema_version_query), or ""."""
        query = self.spec["schema_version_query"]
        return self.value(query) if query else ""


def counting_values(table_sql: str, columns: list[str], ident_of: Any) -> str:
    """One query counting a table's rows and each column's non-null values."""
    counts = ", ".join(["count(*)"] + [f"count({ident_of(c)})" for c in columns])
    return f"SELECT {counts} FROM {table_sql}"  # noqa: S608


def wrapped(sql: str, shown: int) -> tuple[str, str]:
    """An inventory query wrapped to count its rows, and to show the first few."""
    counting = f"SELECT count(*) FROM ({sql}) rbo_q"  # noqa: S608
    showing = f"SELECT * FROM ({sql}) rbo_q LIMIT {shown}"  # noqa: S608
    return counting, showing


class ServerEngine(Engine):
    """A database server driven with its client tools (argv, never a shell)."""

    password_var: ClassVar[str]  # the client tools' password environment variable
    _password_vars: ClassVar[set[str]] = set()  # every server engine's, none inherited

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "password_var", None):
            ServerEngine._password_vars.add(cls.password_var)

    @classmethod
    def normalize(cls, spec: Json, out: Json) -> None:
        if not spec.get("database"):
            raise BackupError(f"database {out['name']}: {cls.name} needs database (its name)")

    @property
    def label(self) -> str:
        return str(self.spec["database"])

    def scratch_name(self, limit: int) -> str:
        """A throwaway database's name for a restore test."""
        return f"{self.spec['database']}_rbo_verify_{os.getpid()}"[:limit]

    def connection_needed(self) -> None:
        if not self.connectable:
            raise BackupError("no database spec given to connect with")

    # ------------------------------------------------------------------------- passwords

    def password(self) -> str | None:
        """The database password: given (module option), or from the environment variable
        named by ``password_env`` (standalone jobs, e.g. systemd EnvironmentFile=)."""
        spec = self.spec
        if spec.get("password"):
            return str(spec["password"])
        env = spec.get("password_env")
        if env:
            if env not in os.environ:
                raise BackupError(
                    f"database {spec.get('name')}: environment variable {env} is not set"
                )
            return os.environ[env]
        return None

    def client_env(self, env: dict[str, str]) -> None:
        """Set what the client tools read from the environment besides the password."""

    def env(self) -> dict[str, str]:
        """The client tools' environment: this one's password only, never one inherited."""
        env = dict(os.environ)
        password = self.password()
        for var in sorted(self._password_vars):
            env.pop(var, None)
        if password is not None:
            env[self.password_var] = password
        self.client_env(env)
        return env

    def redact(self, text: str) -> str:
        password = self.password()
        if password and len(password) >= 3:
            text = text.replace(password, "********")
        return text.strip()

    # ------------------------------------------------------------------------- processes

    def as_os_user(self, argv: list[str]) -> list[str]:
        """Run a client tool as the spec's os_user (peer authentication over the unix socket)."""
        user = self.spec.get("os_user")
        if not user or user == pwd.getpwuid(os.geteuid()).pw_name:
            return argv
        if os.geteuid() != 0:
            raise BackupError(f"database {self.spec['name']}: running as os_user {user} needs root")
        return ["runuser", "-u", str(user), "--", *argv]

    def run(
        self,
        argv: list[str],
        stdin: BinaryIO | None = None,
        data: bytes | None = None,
        as_user: bool = True,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        full = self.as_os_user(argv) if as_user else argv
        env = self.env()
        env.update(extra_env or {})
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
            err = self.redact(proc.stderr.decode(errors="replace"))
            raise BackupError(f"{argv[0]} failed (exit {proc.returncode}): {tail(err)}")
        return proc

    def tool_version(self, tool: str) -> str:
        try:
            return self.run([tool, "--version"], as_user=False).stdout.decode().strip()
        except BackupError:
            return ""

    def stream_to_file(
        self, argv: list[str], dest: Path, gzip_level: int | None = None
    ) -> tuple[int, str]:
        """Run argv, writing its stdout to dest (gzip-compressed if asked) while hashing it."""
        with tempfile.TemporaryFile() as err, new_file(dest) as out:
            writer = HashingWriter(out)
            try:
                proc = subprocess.Popen(
                    self.as_os_user(argv),
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=self.env(),
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
                msg = self.redact(err.read().decode(errors="replace"))
                raise BackupError(f"{argv[0]} failed (exit {code}): {tail(msg)}")
        return writer.size, writer.digest.hexdigest()
