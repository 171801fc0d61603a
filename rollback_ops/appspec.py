"""The inventory's description of an app (``rollback_app``) and its validation.

The schema is written once, as the argument spec of the role ``rollback_ops.rollback.app``
(``roles/app/meta/argument_specs.yml``: types, choices, required, nested options, defaults).
This module validates each host's ``rollback_app`` with the collection's own validator
(``plugins/module_utils/app_spec.py``, loaded here by path: ansible-core's
``ArgumentSpecValidator`` over that file plus the cross-field rules beside it, the very code
the playbooks run through the ``rollback_ops.rollback.app_spec`` action) and adds what only
the controller knows: the file each value came from. Every problem is reported with that
file and the key, all at once, before any host is touched.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from rollback_ops import paths
from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Host, Inventory
from rollback_ops.text import short


def _load_validator() -> ModuleType:
    """The collection's app_spec module_utils, imported from its file (one implementation
    for the controller and the action plugin)."""
    name = "rollback_ops._app_spec"
    if name in sys.modules:
        return sys.modules[name]
    path = paths.plugins_dir() / "module_utils" / "app_spec.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


validator = _load_validator()
SPEC_FILE = validator.SPEC_FILE
ENVIRONMENTS = ("production", "staging", "lab", "local")
ENV_KEY = validator.ENV_KEY
FLAG_KEY = validator.FLAG_KEY  # a command flag backend's key (an env key, or tenant:key ...)
BAD_VALUE_CHARS = validator.BAD_VALUE_CHARS
# a key matching one of these is a secret: its values are shown as mask(value) everywhere
DEFAULT_SECRET_KEYS: tuple[str, ...] = validator.DEFAULT_SECRET_KEYS


def mask(value: str) -> str:
    """How a secret value is shown: never its bytes, a short hash to compare runs by."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return f"<secret sha256:{digest[:8]}>"


def env_value_problem(value: str) -> str:
    """Why a value cannot be written to an env file as one line ("" when it can)."""
    problem: str = validator.env_value_problem(value)
    return problem


# The parsed app. No defaults here: the parser fills every field from the normalized app,
# whose defaults come from the spec file only.


@dataclass(frozen=True)
class HealthSpec:
    url: str
    expect: dict[str, Any]
    config_field: str
    timeout: int
    retries: int
    delay: int


@dataclass(frozen=True)
class LogSpec:
    path: str
    error_pattern: str


@dataclass(frozen=True)
class CodeSpec:
    """How the code level reverts the app's code (``rollback_app.code``)."""

    path: str
    method: str  # git | files | archive | "" (not configured)
    git_mode: str
    release_tags: str
    restore: tuple[str, ...]
    remove: tuple[str, ...]  # files, git: paths to remove
    requirements: str
    venv: str
    paths: tuple[str, ...] = ()  # git: only these paths go back (HEAD stays)
    remove_added: bool = False  # git with paths: remove what the target lacks under them
    archive_dir: str = ""  # archive: the glob of the archive directories
    archive_files: str = ""  # archive: the files to restore (a glob)
    archive_to: str = ""  # archive: where they go


@dataclass(frozen=True)
class MaintenanceSpec:
    file: str
    env: dict[str, str]
    env_off: dict[str, str]
    enable_command: tuple[str, ...]
    disable_command: tuple[str, ...]

    @property
    def configured(self) -> bool:
        return bool(self.file or self.env or self.enable_command)


@dataclass(frozen=True)
class ImageSpec:
    context: str
    tag: str
    dockerfile: str
    nocache: bool


@dataclass(frozen=True)
class DockerSpec:
    images: tuple[ImageSpec, ...]
    project_dir: str
    services: tuple[str, ...]
    settle: int
    log_error_pattern: str


@dataclass(frozen=True)
class DatabaseSpec:
    """One of the app's databases (``rollback_app.databases[]``); passwords stay in Ansible."""

    name: str
    engine: str
    database: str
    path: str
    password_env: str
    has_password: bool
    integrity_checks: tuple[str, ...]
    data_loss_tables: tuple[str, ...]
    migrations_rollback: tuple[str, ...]
    external_glob: str = ""  # external_backups.glob: the team's own backups ("" for none)
    external_format: str = ""  # external_backups.format ("": the engine's usual one)
    external_order: str = "name"  # external_backups.order: name (stamp) or mtime

    @property
    def target(self) -> str:
        return self.path if self.engine == "sqlite" else self.database


@dataclass(frozen=True)
class BackupSpec:
    root: str
    files: tuple[str, ...]
    keep: int
    crontab_users: tuple[str, ...] = ()  # backup.crontabs.users
    crontab_files: tuple[str, ...] = ()  # backup.crontabs.files (/etc/cron.d/...)
    offhost_host: str = ""  # backup.offhost.host: the backup host keeping copies ("": none)


@dataclass(frozen=True)
class CacheSpec:
    kind: str  # redis | command
    description: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowsSpec:
    """Config rows in the app's database (rollback_app.config.rows): dumped into each set,
    loaded back by the config level (plugins/module_utils/configrows.py)."""

    name: str
    dump: tuple[str, ...]
    load: tuple[str, ...]
    user: str = ""


@dataclass(frozen=True)
class ConfigSpec:
    files: tuple[str, ...]
    caches: tuple[CacheSpec, ...]
    rows: tuple[RowsSpec, ...] = ()


@dataclass(frozen=True)
class FlagBackendSpec:
    """Where the flag level's flags live (rollback_app.flag_backend): the env file, or the
    app's own get and set commands (plugins/modules/flagcmd.py runs them)."""

    kind: str = "env"  # env | command
    get: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    user: str = ""
    chdir: str = ""

    @property
    def is_command(self) -> bool:
        return self.kind == "command"

    def describe(self, argv: tuple[str, ...]) -> str:
        where = [f"as {self.user}"] if self.user else []
        where += [f"in {self.chdir}"] if self.chdir else []
        return " ".join(argv) + (f" ({'; '.join(where)})" if where else "")


@dataclass(frozen=True)
class HookSpec:
    """One of the app's hooks (rollback_app.hooks; plugins/module_utils/hooks.py runs it)."""

    name: str
    step: str
    command: tuple[str, ...]
    user: str = ""
    chdir: str = ""
    secret_env: tuple[str, ...] = ()  # the keys of environment_from (values: controller env)
    secret_vars: tuple[str, ...] = ()  # the controller's env variables environment_from names
    levels: tuple[str, ...] = ()  # empty: every level that has its step

    def describe(self) -> str:
        where = [f"as {self.user}"] if self.user else []
        where += [f"in {self.chdir}"] if self.chdir else []
        where += [f"secret env {', '.join(self.secret_env)}"] if self.secret_env else []
        text = f"{self.name}: {' '.join(self.command)}"
        return text + (f" ({'; '.join(where)})" if where else "")


@dataclass(frozen=True)
class AppSpec:
    name: str
    env_file: str
    master_switch: str
    master_switch_off: str
    flags: tuple[str, ...]
    emergency: dict[str, str]
    units: tuple[str, ...]
    health: HealthSpec
    log: LogSpec
    code: CodeSpec
    maintenance: MaintenanceSpec
    docker: DockerSpec
    drain_timeout: int
    databases: tuple[DatabaseSpec, ...]
    backup: BackupSpec
    config: ConfigSpec
    secret_keys: tuple[str, ...]
    # verify with nothing configured to check fails, unless the app says so (verify: none)
    verify_none_ok: bool
    hooks: tuple[HookSpec, ...] = ()
    flag_backend: FlagBackendSpec = field(default_factory=FlagBackendSpec)
    # the app as validated, every default of the spec filled in (what the playbooks see)
    normalized: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # rollback_app.procedures: name -> description; the one this spec follows ("": none)
    procedures: dict[str, str] = field(default_factory=dict)
    procedure: str = ""

    def is_secret(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.secret_keys)

    @property
    def checks_anything(self) -> bool:
        """Whether verify has something to check (units, a health URL, a log pattern)."""
        return bool(self.units or self.health.url or (self.log.path and self.log.error_pattern))

    @property
    def declared_keys(self) -> list[str]:
        keys: list[str] = validator.declared_keys(self.normalized)
        return keys


def _code(app: dict[str, Any]) -> CodeSpec:
    code = app.get("code")
    if code is None:
        return CodeSpec("", "", "", "", (), (), "", "")
    git, files, deps = code.get("git"), code.get("files"), code["deps"]
    archive = code.get("archive")
    method = "git" if git is not None else "archive" if archive is not None else "files"
    return CodeSpec(
        path=code["path"],
        method=method,
        git_mode=(git or {}).get("mode", ""),
        release_tags=(git or {}).get("release_tags", ""),
        restore=tuple((files or {}).get("restore", ())),
        remove=tuple((files or git or {}).get("remove", ())),
        requirements=deps["requirements"],
        venv=deps["venv"],
        paths=tuple((git or {}).get("paths", ())),
        remove_added=bool((git or {}).get("remove_added", False)),
        archive_dir=(archive or {}).get("dir", ""),
        archive_files=(archive or {}).get("files", ""),
        archive_to=(archive or {}).get("to", ""),
    )


def _cache(item: dict[str, Any]) -> CacheSpec:
    if "redis" in item:
        redis = item["redis"]
        target = redis.get("socket") or f"{redis['host']}:{redis['port']}"
        return CacheSpec("redis", f"redis FLUSHDB {redis['db']} on {target}", dict(redis))
    argv = item["command"]
    return CacheSpec("command", "run " + " ".join(argv), {"argv": argv})


def build(app: dict[str, Any], procedure: str = "") -> AppSpec:
    """The AppSpec of a normalized app (``validator.validate_app``'s, without problems), as
    its PROCEDURE runs it when one is named (``validator.with_procedure``'s app)."""
    health, log, docker = app["health"], app["log"], app["docker"]
    maintenance, backup, config = app["maintenance"], app["backup"], app["config"]
    return AppSpec(
        name=app["name"],
        env_file=app["env_file"],
        master_switch=app["master_switch"],
        master_switch_off=app["master_switch_off"],
        flags=tuple(app["flags"]),
        emergency=dict(app["emergency"]),
        units=tuple(app["units"]),
        health=HealthSpec(**health),
        log=LogSpec(**log),
        code=_code(app),
        maintenance=MaintenanceSpec(
            file=maintenance["file"],
            env=dict(maintenance["env"]),
            env_off=dict(maintenance["env_off"]),
            enable_command=tuple(maintenance["enable_command"]),
            disable_command=tuple(maintenance["disable_command"]),
        ),
        docker=DockerSpec(
            images=tuple(
                ImageSpec(i["context"], i["tag"], i["dockerfile"], i["nocache"])
                for i in docker["images"]
            ),
            project_dir=docker["compose"]["project_dir"],
            services=tuple(docker["compose"]["services"]),
            settle=docker["settle"],
            log_error_pattern=docker["log_error_pattern"],
        ),
        drain_timeout=app["drain_timeout"],
        databases=tuple(
            DatabaseSpec(
                name=db["name"],
                engine=db["engine"],
                database=db.get("database", ""),
                path=db.get("path", ""),
                password_env=db.get("password_env", ""),
                has_password="password" in db,
                integrity_checks=tuple(c["name"] for c in db["integrity_checks"]),
                data_loss_tables=tuple(t["table"] for t in db["data_loss_tables"]),
                migrations_rollback=tuple(db["migrations_rollback"]),
                external_glob=(db.get("external_backups") or {}).get("glob", ""),
                external_format=(db.get("external_backups") or {}).get("format") or "",
                external_order=(db.get("external_backups") or {}).get("order") or "name",
            )
            for db in app["databases"]
        ),
        backup=BackupSpec(
            backup["root"],
            tuple(backup["files"]),
            backup["keep"],
            tuple(backup["crontabs"]["users"]),
            tuple(backup["crontabs"]["files"]),
            (backup.get("offhost") or {}).get("host", ""),
        ),
        config=ConfigSpec(
            tuple(config["files"]),
            tuple(map(_cache, config["caches"])),
            tuple(
                RowsSpec(r["name"], tuple(r["dump"]), tuple(r["load"]), r["user"])
                for r in config["rows"]
            ),
        ),
        secret_keys=tuple(validator.secret_keys(app)),
        verify_none_ok=app["verify"] == "none",
        hooks=tuple(
            HookSpec(
                name=h["name"],
                step=h["step"],
                command=tuple(h["command"]),
                user=h["user"],
                chdir=h["chdir"],
                secret_env=tuple(sorted(h["environment_from"])),
                secret_vars=tuple(h["environment_from"][k] for k in sorted(h["environment_from"])),
                levels=tuple(h["levels"]),
            )
            for h in app.get("hooks", [])
        ),
        flag_backend=FlagBackendSpec(
            kind=app["flag_backend"]["type"],
            get=tuple(app["flag_backend"]["get"]),
            set=tuple(app["flag_backend"]["set"]),
            user=app["flag_backend"]["user"],
            chdir=app["flag_backend"]["chdir"],
        ),
        normalized=app,
        procedures={
            str(name): str(p.get("description", "")) if isinstance(p, dict) else ""
            for name, p in (app.get("procedures") or {}).items()
        },
        procedure=procedure,
    )


def for_procedure(spec: AppSpec, name: str) -> AppSpec:
    """SPEC as its procedure NAME runs it (``rollback_app.procedures``: the procedure's keys in
    place of the app's); ConfigError in one line, listing the declared ones, for another
    name. The host side does the same (the ``rollback_ops.rollback.app_spec`` action)."""
    if not name:
        return spec
    if name not in spec.procedures:
        declared = ", ".join(sorted(spec.procedures)) or "none"
        raise ConfigError(f"app {spec.name} has no procedure {short(name)} (declared: {declared})")
    app, problems = validator.with_procedure(spec.normalized, name)
    if app is None or problems:  # validated with the app: cannot happen
        raise ConfigError(
            f"procedure {name} of app {spec.name}: " + "; ".join(f"{p}: {m}" for p, m in problems)
        )
    return build(app, name)


def parse_app(host: Host) -> tuple[AppSpec | None, list[str]]:
    """Validate one host's ``rollback_app``; return the spec (None when it has problems)
    and the problems found, each naming the file that set the variable and the key."""
    errors: list[str] = []
    env = host.vars.get("rollback_environment")
    if env not in ENVIRONMENTS:
        errors.append(
            f"{host.origin('rollback_environment')}: rollback_environment: "
            f"{short(env)} is not one of {', '.join(ENVIRONMENTS)} (host {host.name})"
        )
    raw = host.vars.get("rollback_app")
    if raw is None:
        errors.append(f"inventory: rollback_app is not set for host {host.name}")
        return None, errors
    app, problems = validator.validate_app(raw)
    where = host.origin("rollback_app")
    errors += [f"{where}: {path}: {message} (host {host.name})" for path, message in problems]
    if app is None or problems:
        return None, errors
    return build(app), errors


def offhost_problems(host: Host, inventory: Inventory) -> list[str]:
    """backup.offhost.host must name a host of the inventory."""
    app = host.vars.get("rollback_app")
    backup = app.get("backup") if isinstance(app, dict) else None
    offhost = backup.get("offhost") if isinstance(backup, dict) else None
    name = offhost.get("host") if isinstance(offhost, dict) else None
    if not isinstance(name, str) or not name:
        return []  # absent, or a problem the schema reports
    where = f"{host.origin('rollback_app')}: rollback_app.backup.offhost.host"
    if name not in inventory.hosts:
        return [f"{where}: {short(name)} is not a host of the inventory (host {host.name})"]
    return []


def parse_inventory(inventory: Inventory) -> dict[str, AppSpec]:
    """Every host's AppSpec, or ConfigError listing every problem with file and key."""
    specs: dict[str, AppSpec] = {}
    errors: list[str] = []
    for host in inventory.hosts.values():
        spec, problems = parse_app(host)
        errors += problems + offhost_problems(host, inventory)
        if spec is not None:
            specs[host.name] = spec
    if errors:
        unique = list(dict.fromkeys(errors))
        raise ConfigError(f"inventory {inventory.name} is not valid:\n  " + "\n  ".join(unique))
    return specs
