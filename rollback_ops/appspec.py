"""The inventory's description of an app (``rollback_app``) and its validation.

Every problem is reported with the file it came from and the key, all at once, before any
host is touched. The roles' ``meta/argument_specs.yml`` check the same again on the host side.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Host, Inventory
from rollback_ops.text import short

ENVIRONMENTS = ("production", "staging", "lab", "local")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: not before a final newline
# what shells, systemd and dotenv do not take inside a one-line value: control characters
# but TAB, and the characters Python's splitlines() (and some editors) break lines on
BAD_VALUE_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# a key matching one of these is a secret: its values are shown as mask(value) everywhere
DEFAULT_SECRET_KEYS = ("*_KEY", "*_TOKEN", "*PASSWORD*", "*SECRET*")


def mask(value: str) -> str:
    """How a secret value is shown: never its bytes, a short hash to compare runs by."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return f"<secret sha256:{digest[:8]}>"


def env_value_problem(value: str) -> str:
    """Why a value cannot be written to an env file as one line ("" when it can)."""
    bad = BAD_VALUE_CHARS.search(value)
    if bad:
        return (
            f"holds the control character {bad.group()!r} (at {bad.start()}); only TAB is "
            "allowed in a one-line env value"
        )
    return ""


@dataclass(frozen=True)
class HealthSpec:
    url: str = ""
    expect: dict[str, Any] = field(default_factory=dict)
    config_field: str = ""
    timeout: int = 5
    retries: int = 30
    delay: int = 1


@dataclass(frozen=True)
class LogSpec:
    path: str = ""
    error_pattern: str = ""


@dataclass(frozen=True)
class CodeSpec:
    """How the code level reverts the app's code (``rollback_app.code``)."""

    path: str = ""
    method: str = ""  # git | files | "" (not configured)
    git_mode: str = "checkout"
    release_tags: str = "*"
    restore: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    requirements: str = ""
    venv: str = ""


@dataclass(frozen=True)
class MaintenanceSpec:
    file: str = ""
    env: dict[str, str] = field(default_factory=dict)
    env_off: dict[str, str] = field(default_factory=dict)
    enable_command: tuple[str, ...] = ()
    disable_command: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.file or self.env or self.enable_command)


@dataclass(frozen=True)
class ImageSpec:
    context: str
    tag: str
    dockerfile: str = "Dockerfile"
    nocache: bool = False


@dataclass(frozen=True)
class DockerSpec:
    images: tuple[ImageSpec, ...] = ()
    project_dir: str = ""
    services: tuple[str, ...] = ()
    settle: int = 5
    log_error_pattern: str = ""


ENGINES = ("postgresql", "sqlite", "mysql")
DATABASE_KEYS = {
    "name",
    "engine",
    "database",
    "path",
    "host",
    "port",
    "user",
    "password",
    "password_env",
    "os_user",
    "compression",
    "tables",
    "schema_version_query",
    "integrity_checks",
    "data_loss_tables",
    "migrations_rollback",
}


@dataclass(frozen=True)
class DatabaseSpec:
    """One of the app's databases (``rollback_app.databases[]``); passwords stay in Ansible."""

    name: str
    engine: str
    database: str = ""
    path: str = ""
    password_env: str = ""
    has_password: bool = False
    integrity_checks: tuple[str, ...] = ()
    data_loss_tables: tuple[str, ...] = ()
    migrations_rollback: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.path if self.engine == "sqlite" else self.database


@dataclass(frozen=True)
class BackupSpec:
    root: str = "/var/backups/rollback-ops"
    files: tuple[str, ...] = ()
    keep: int = 0


@dataclass(frozen=True)
class CacheSpec:
    kind: str  # redis | command
    description: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigSpec:
    files: tuple[str, ...] = ()
    caches: tuple[CacheSpec, ...] = ()


@dataclass(frozen=True)
class AppSpec:
    name: str
    env_file: str = ""
    master_switch: str = ""
    master_switch_off: str = "false"
    flags: tuple[str, ...] = ()
    emergency: dict[str, str] = field(default_factory=dict)
    units: tuple[str, ...] = ()
    health: HealthSpec = field(default_factory=HealthSpec)
    log: LogSpec = field(default_factory=LogSpec)
    code: CodeSpec = field(default_factory=CodeSpec)
    maintenance: MaintenanceSpec = field(default_factory=MaintenanceSpec)
    docker: DockerSpec = field(default_factory=DockerSpec)
    drain_timeout: int = 0
    databases: tuple[DatabaseSpec, ...] = ()
    backup: BackupSpec = field(default_factory=BackupSpec)
    config: ConfigSpec = field(default_factory=ConfigSpec)
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    # verify with nothing configured to check fails, unless the app says so (verify: none)
    verify_none_ok: bool = False

    def is_secret(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.secret_keys)

    @property
    def checks_anything(self) -> bool:
        """Whether verify has something to check (units, a health URL, a log pattern)."""
        return bool(self.units or self.health.url or (self.log.path and self.log.error_pattern))

    @property
    def declared_keys(self) -> list[str]:
        keys = [self.master_switch] if self.master_switch else []
        return keys + list(self.flags) + list(self.emergency)


class _Checker:
    def __init__(self, host: Host, key: str):
        self.where = f"{host.origin(key)}: {key}"
        self.host = host.name
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.where}.{path}: {message} (host {self.host})")

    def mapping(self, data: dict[str, Any], path: str, allowed: set[str]) -> dict[str, Any]:
        value = data.get(path.rsplit(".", 1)[-1])
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {type(value).__name__}")
            return {}
        for unknown in sorted(set(map(str, value)) - allowed):
            self.error(f"{path}.{unknown}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, data: dict[str, Any], key: str, path: str, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.error(path, "is required")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(path, f"must be a string, not {type(value).__name__}")
            return ""
        return str(value)

    def pattern(self, data: dict[str, Any], key: str, path: str) -> str:
        value = self.string(data, key, path)
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                self.error(path, f"not a valid regular expression: {exc}")
        return value

    def strings(self, data: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(path, "must be a list of non-empty strings")
            return ()
        return tuple(value)

    def relative(self, values: tuple[str, ...], path: str) -> tuple[str, ...]:
        for i, value in enumerate(values):
            if value.startswith("/") or ".." in value.split("/"):
                self.error(
                    f"{path}[{i}]", f"{short(value)} must be relative to code.path, inside it"
                )
        return values

    def absolute(self, data: dict[str, Any], key: str, path: str, required: bool = False) -> str:
        value = self.string(data, key, path, required)
        if value and not (value.startswith("/") or value.startswith("{{")):
            self.error(path, f"must be an absolute path, not {short(value)}")
        return value

    def env_values(self, data: dict[str, Any], key: str, path: str) -> dict[str, str]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping of env keys to values")
            return {}
        return {
            k: self.env_value(v, f"{path}.{k}")
            for k, v in value.items()
            if self.env_key(k, f"{path}.{k}")
        }

    def env_value(self, value: Any, path: str) -> str:
        """A value to write into an env file: a string, number or boolean on one line."""
        if value is None:
            self.error(path, "has no value (null): write the value, quoted if need be")
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if not isinstance(value, str | int | float):
            self.error(path, f"must be a string, number or boolean, not a {type(value).__name__}")
            return ""
        problem = env_value_problem(str(value))
        if problem:
            self.error(path, problem)
        return str(value)

    def env_key(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not ENV_KEY.match(value):
            self.error(path, f"{short(value)} is not a valid env key (letters, digits, _)")
            return ""
        return value

    def integer(self, data: dict[str, Any], key: str, path: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(path, f"must be a whole number >= 0, not {short(value)}")
            return default
        return value


APP_KEYS = {
    "name",
    "env_file",
    "master_switch",
    "master_switch_off",
    "flags",
    "emergency",
    "units",
    "health",
    "log",
    "code",
    "maintenance",
    "docker",
    "drain_timeout",
    "databases",
    "backup",
    "config",
    "secret_keys",
    "verify",
}


def parse_databases(check: _Checker, raw: dict[str, Any]) -> tuple[DatabaseSpec, ...]:
    items = raw.get("databases") or []
    if not isinstance(items, list):
        check.error("databases", "must be a list of databases")
        return ()
    specs: list[DatabaseSpec] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = f"databases[{i}]"
        if not isinstance(item, dict):
            check.error(where, "must be a mapping {name, engine, ...}")
            continue
        for unknown in sorted(set(map(str, item)) - DATABASE_KEYS):
            check.error(f"{where}.{unknown}", "unknown key")
        name = check.string(item, "name", f"{where}.name", required=True)
        if name and (not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in names):
            check.error(f"{where}.name", f"{short(name)} must be unique and a simple name")
        names.add(name)
        engine = check.string(item, "engine", f"{where}.engine", required=True)
        if engine and engine not in ENGINES:
            check.error(
                f"{where}.engine", f"must be one of {', '.join(ENGINES)}, not {short(engine)}"
            )
        database = check.string(item, "database", f"{where}.database")
        path = check.absolute(item, "path", f"{where}.path")
        if engine == "sqlite" and not path:
            check.error(f"{where}.path", "is required for sqlite (the database file)")
        if engine in ("postgresql", "mysql") and not database:
            check.error(f"{where}.database", f"is required for {engine}")
        password_env = check.string(item, "password_env", f"{where}.password_env")
        if password_env and not ENV_KEY.match(password_env):
            check.error(
                f"{where}.password_env", f"{short(password_env)} is not an env variable name"
            )
        if "password" in item and password_env:
            check.error(where, "give password (vault) or password_env, not both")
        checks = item.get("integrity_checks") or []
        if not isinstance(checks, list) or not all(
            isinstance(c, dict) and c.get("name") and c.get("sql") for c in checks
        ):
            check.error(f"{where}.integrity_checks", "must be a list of {name, sql}")
            checks = []
        losses = item.get("data_loss_tables") or []
        if not isinstance(losses, list) or not all(
            isinstance(t, dict) and t.get("table") and t.get("key") for t in losses
        ):
            check.error(f"{where}.data_loss_tables", "must be a list of {table, key}")
            losses = []
        migrations = check.strings(item, "migrations_rollback", f"{where}.migrations_rollback")
        for j, m in enumerate(migrations):
            if not m.startswith("/"):
                check.error(
                    f"{where}.migrations_rollback[{j}]", f"must be absolute, not {short(m)}"
                )
        specs.append(
            DatabaseSpec(
                name=name,
                engine=engine,
                database=database,
                path=path,
                password_env=password_env,
                has_password="password" in item,
                integrity_checks=tuple(str(c["name"]) for c in checks),
                data_loss_tables=tuple(str(t["table"]) for t in losses),
                migrations_rollback=migrations,
            )
        )
    return tuple(specs)


def parse_backup(check: _Checker, raw: dict[str, Any]) -> BackupSpec:
    spec = check.mapping(raw, "backup", {"root", "files", "keep"})
    files = check.strings(spec, "files", "backup.files")
    for i, f in enumerate(files):
        if not f.startswith("/"):
            check.error(f"backup.files[{i}]", f"must be an absolute path, not {short(f)}")
    return BackupSpec(
        root=check.absolute(spec, "root", "backup.root") or BackupSpec.root,
        files=files,
        keep=check.integer(spec, "keep", "backup.keep", 0),
    )


def parse_config(check: _Checker, raw: dict[str, Any], backup: BackupSpec) -> ConfigSpec:
    spec = check.mapping(raw, "config", {"files", "caches"})
    files = check.strings(spec, "files", "config.files")
    for i, f in enumerate(files):
        if not f.startswith("/"):
            check.error(f"config.files[{i}]", f"must be an absolute path, not {short(f)}")
        elif f not in backup.files:
            check.error(f"config.files[{i}]", f"{f} is not in backup.files, so no set holds it")
    caches: list[CacheSpec] = []
    items = spec.get("caches") or []
    if not isinstance(items, list):
        check.error("config.caches", "must be a list of {redis: {...}} or {command: [...]}")
        items = []
    for i, item in enumerate(items):
        where = f"config.caches[{i}]"
        if isinstance(item, dict) and set(item) == {"redis"} and isinstance(item["redis"], dict):
            redis = item["redis"]
            for unknown in sorted(set(map(str, redis)) - {"socket", "host", "port", "db"}):
                check.error(f"{where}.redis.{unknown}", "unknown key")
            db = redis.get("db", 0)
            if isinstance(db, bool) or not isinstance(db, int) or db < 0:
                check.error(f"{where}.redis.db", f"must be a database number, not {short(db)}")
            target = (
                redis.get("socket") or f"{redis.get('host', '127.0.0.1')}:{redis.get('port', 6379)}"
            )
            caches.append(CacheSpec("redis", f"redis FLUSHDB {db} on {target}", dict(redis)))
        elif isinstance(item, dict) and set(item) == {"command"}:
            argv = item["command"]
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                check.error(f"{where}.command", "must be a non-empty argv list")
                continue
            caches.append(CacheSpec("command", "run " + " ".join(argv), {"argv": argv}))
        else:
            check.error(where, "must be {redis: {socket|host, port, db}} or {command: [argv]}")
    return ConfigSpec(files=files, caches=tuple(caches))


def parse_code(check: _Checker, raw: dict[str, Any]) -> CodeSpec:
    code = check.mapping(raw, "code", {"path", "git", "files", "deps"})
    if not code:
        return CodeSpec()
    path = check.absolute(code, "path", "code.path", required=True)
    git = check.mapping(code, "code.git", {"mode", "release_tags"})
    files = check.mapping(code, "code.files", {"restore", "remove"})
    deps = check.mapping(code, "code.deps", {"requirements", "venv", "pip_args"})
    if ("git" in code) == ("files" in code):
        check.error("code", "needs exactly one of git (a work tree) or files (backup files)")
    mode = check.string(git, "mode", "code.git.mode") or "checkout"
    if mode not in ("checkout", "revert"):
        check.error("code.git.mode", f"must be checkout or revert, not {short(mode)}")
    restore = check.relative(
        check.strings(files, "restore", "code.files.restore"), "code.files.restore"
    )
    remove = check.relative(
        check.strings(files, "remove", "code.files.remove"), "code.files.remove"
    )
    if "files" in code and not restore and not remove:
        check.error("code.files", "lists nothing to restore or remove")
    return CodeSpec(
        path=path,
        method="git" if "git" in code else "files",
        git_mode=mode,
        release_tags=check.string(git, "release_tags", "code.git.release_tags") or "*",
        restore=restore,
        remove=remove,
        requirements=check.string(deps, "requirements", "code.deps.requirements"),
        venv=check.absolute(deps, "venv", "code.deps.venv"),
    )


def parse_maintenance(check: _Checker, raw: dict[str, Any], env_file: str) -> MaintenanceSpec:
    spec = check.mapping(
        raw, "maintenance", {"file", "env", "env_off", "enable_command", "disable_command"}
    )
    env = check.env_values(spec, "env", "maintenance.env")
    env_off = check.env_values(spec, "env_off", "maintenance.env_off")
    if env and not env_file:
        check.error("maintenance.env", "needs rollback_app.env_file to set the values in")
    if set(env) != set(env_off):
        check.error("maintenance.env_off", "must set the same keys as maintenance.env")
    enable = check.strings(spec, "enable_command", "maintenance.enable_command")
    disable = check.strings(spec, "disable_command", "maintenance.disable_command")
    if bool(enable) != bool(disable):
        check.error("maintenance", "enable_command and disable_command go together")
    return MaintenanceSpec(
        file=check.absolute(spec, "file", "maintenance.file"),
        env=env,
        env_off=env_off,
        enable_command=enable,
        disable_command=disable,
    )


def parse_docker(check: _Checker, raw: dict[str, Any]) -> DockerSpec:
    spec = check.mapping(raw, "docker", {"images", "compose", "settle", "log_error_pattern"})
    images: list[ImageSpec] = []
    images_raw = spec.get("images") or []
    if not isinstance(images_raw, list):
        check.error("docker.images", "must be a list of {context, tag, dockerfile, nocache}")
        images_raw = []
    for i, item in enumerate(images_raw):
        where = f"docker.images[{i}]"
        if not isinstance(item, dict):
            check.error(where, "must be a mapping {context, tag, dockerfile, nocache}")
            continue
        for unknown in sorted(
            set(map(str, item)) - {"context", "tag", "dockerfile", "nocache", "buildargs"}
        ):
            check.error(f"{where}.{unknown}", "unknown key")
        nocache = item.get("nocache", False)
        if not isinstance(nocache, bool):
            check.error(f"{where}.nocache", "must be true or false")
        images.append(
            ImageSpec(
                context=check.absolute(item, "context", f"{where}.context", required=True),
                tag=check.string(item, "tag", f"{where}.tag", required=True),
                dockerfile=check.string(item, "dockerfile", f"{where}.dockerfile") or "Dockerfile",
                nocache=bool(nocache),
            )
        )
    compose = check.mapping(spec, "docker.compose", {"project_dir", "services"})
    pattern = check.pattern(spec, "log_error_pattern", "docker.log_error_pattern")
    return DockerSpec(
        images=tuple(images),
        project_dir=check.absolute(compose, "project_dir", "docker.compose.project_dir"),
        services=check.strings(compose, "services", "docker.compose.services"),
        settle=check.integer(spec, "settle", "docker.settle", 5),
        log_error_pattern=pattern,
    )


def parse_app(host: Host) -> tuple[AppSpec | None, list[str]]:
    """Validate one host's ``rollback_app``; return the spec and the problems found."""
    check = _Checker(host, "rollback_app")
    env = host.vars.get("rollback_environment")
    if env not in ENVIRONMENTS:
        check.errors.append(
            f"{host.origin('rollback_environment')}: rollback_environment: "
            f"{short(env)} is not one of {', '.join(ENVIRONMENTS)} (host {host.name})"
        )
    raw = host.vars.get("rollback_app")
    if raw is None:
        check.errors.append(f"inventory: rollback_app is not set for host {host.name}")
        return None, check.errors
    if not isinstance(raw, dict):
        check.errors.append(f"{check.where}: must be a mapping (host {host.name})")
        return None, check.errors
    for unknown in sorted(set(map(str, raw)) - APP_KEYS):
        check.error(unknown, f"unknown key (allowed: {', '.join(sorted(APP_KEYS))})")
    name = check.string(raw, "name", "name", required=True)
    env_file = check.string(raw, "env_file", "env_file")
    if env_file and not (env_file.startswith("/") or env_file.startswith("{{")):
        check.error("env_file", f"must be an absolute path, not {short(env_file)}")
    master = raw.get("master_switch")
    master_switch = check.env_key(master, "master_switch") if master is not None else ""
    flags_raw = raw.get("flags") or []
    if not isinstance(flags_raw, list):
        check.error("flags", "must be a list of env keys")
        flags_raw = []
    flags = tuple(check.env_key(f, f"flags[{i}]") for i, f in enumerate(flags_raw))
    emergency_raw = raw.get("emergency") or {}
    emergency: dict[str, str] = {}
    if not isinstance(emergency_raw, dict):
        check.error(
            "emergency", "must be a mapping of env keys to values, e.g. {APP_MODE: research}"
        )
    else:
        for key, value in emergency_raw.items():
            if check.env_key(key, f"emergency.{key}"):
                emergency[key] = check.env_value(value, f"emergency.{key}")
    units_raw = raw.get("units") or []
    if not isinstance(units_raw, list) or not all(isinstance(u, str) for u in units_raw):
        check.error("units", "must be a list of systemd unit names")
        units_raw = []
    health_raw = check.mapping(
        raw, "health", {"url", "expect", "config_field", "timeout", "retries", "delay"}
    )
    expect = health_raw.get("expect") or {}
    if not isinstance(expect, dict):
        check.error("health.expect", "must be a mapping of JSON fields to values")
        expect = {}
    health = HealthSpec(
        url=check.string(health_raw, "url", "health.url"),
        expect=expect,
        config_field=check.string(health_raw, "config_field", "health.config_field"),
        timeout=check.integer(health_raw, "timeout", "health.timeout", 5),
        retries=check.integer(health_raw, "retries", "health.retries", 30),
        delay=check.integer(health_raw, "delay", "health.delay", 1),
    )
    log_raw = check.mapping(raw, "log", {"path", "error_pattern"})
    pattern = check.pattern(log_raw, "error_pattern", "log.error_pattern")
    log = LogSpec(path=check.string(log_raw, "path", "log.path"), error_pattern=pattern)
    code = parse_code(check, raw)
    maintenance = parse_maintenance(check, raw, env_file)
    docker = parse_docker(check, raw)
    drain_timeout = check.integer(raw, "drain_timeout", "drain_timeout", 0)
    databases = parse_databases(check, raw)
    backup = parse_backup(check, raw)
    config = parse_config(check, raw, backup)
    off = check.env_value(raw.get("master_switch_off", "false"), "master_switch_off")
    secret_keys = check.strings(raw, "secret_keys", "secret_keys")
    verify = raw.get("verify", "checks")
    if verify not in ("checks", "none"):
        check.error("verify", f"must be checks or none, not {short(verify)}")
    spec = AppSpec(
        name=name,
        env_file=env_file,
        master_switch=master_switch,
        master_switch_off=off,
        flags=tuple(f for f in flags if f),
        emergency=emergency,
        units=tuple(units_raw),
        health=health,
        log=log,
        code=code,
        maintenance=maintenance,
        docker=docker,
        drain_timeout=drain_timeout,
        databases=databases,
        backup=backup,
        config=config,
        secret_keys=DEFAULT_SECRET_KEYS + secret_keys,
        verify_none_ok=verify == "none",
    )
    return spec, check.errors


def parse_inventory(inventory: Inventory) -> dict[str, AppSpec]:
    """Every host's AppSpec, or ConfigError listing every problem with file and key."""
    specs: dict[str, AppSpec] = {}
    errors: list[str] = []
    for host in inventory.hosts.values():
        spec, problems = parse_app(host)
        errors += problems
        if spec is not None:
            specs[host.name] = spec
    if errors:
        unique = list(dict.fromkeys(errors))
        raise ConfigError(f"inventory {inventory.name} is not valid:\n  " + "\n  ".join(unique))
    return specs
