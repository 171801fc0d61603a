"""The rollback levels, smallest first: one class each (adding a level is adding a class)."""

from __future__ import annotations

from typing import ClassVar

from rollback_ops.appspec import ENV_KEY, AppSpec, mask
from rollback_ops.operations.base import (
    Argument,
    Operation,
    Request,
    argument,
    parse_backup_files,
    parse_flags,
)

FLAG = argument(
    "--flag",
    "-f",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="flag level: set this flag (repeatable); without it the master switch is turned off",
    request_field="flags",
    convert=parse_flags,
)
ALLOW_NEW_FLAG = argument(
    "--allow-new-flag",
    action="store_true",
    help="accept a flag the app does not declare (adds it if missing)",
    request_field="allow_new_flags",
)
NO_VERIFY = argument(
    "--no-verify",
    dest="verify",
    action="store_false",
    help="skip the checks after the change (health, units, log)",
    request_field="verify",
)
TO = argument(
    "--to",
    metavar="REF",
    default="",
    help="code level, git: the commit, tag or branch to go back to "
    "(default: the previous release, the second newest release tag)",
    request_field="to",
)
BACKUP_STAMP = argument(
    "--backup-stamp",
    metavar="STAMP",
    default="",
    help="code level, backup files: restore <file>.backup.STAMP "
    "(default: each file's newest backup)",
    request_field="backup_stamp",
)
BACKUP_ID = argument(
    "--backup-id",
    metavar="SET_ID",
    default="",
    help="full and config levels: the backup set to restore (default: the newest "
    "verified pre-deployment set; config: the newest verified set holding the files; "
    "see `backup list`)",
    request_field="backup_id",
)
FROM = argument(
    "--from",
    dest="backup_from",
    choices=["set", "external"],
    default="set",
    help="data and full levels: restore from a backup set (default) or from the backups the "
    "app already makes (its databases' external_backups; verified, then adopted into a set)",
    request_field="backup_from",
)
BACKUP_FILE = argument(
    "--backup-file",
    action="append",
    default=[],
    metavar="DB=PATH",
    help="with --from external: restore database DB from this file on the host instead of "
    "the newest its external_backups glob matches (repeatable)",
    request_field="backup_files",
    convert=parse_backup_files,
)
PROCEDURE = argument(
    "--procedure",
    metavar="NAME",
    default="",
    help="code and full levels: follow the app's rollback procedure NAME "
    "(rollback_app.procedures: its keys replace the app's for this run)",
    request_field="procedure",
)
FORCE = argument(
    "--force",
    action="store_true",
    help="code level: revert even with uncommitted changes to tracked files "
    "(they are recorded first)",
    request_field="force",
)
# every level's arguments in the order `apply --help` and `plan --help` show them
LEVEL_ARGUMENTS: tuple[Argument, ...] = (
    FLAG,
    ALLOW_NEW_FLAG,
    NO_VERIFY,
    TO,
    BACKUP_STAMP,
    BACKUP_ID,
    FROM,
    BACKUP_FILE,
    PROCEDURE,
    FORCE,
)


class Level(Operation):
    """A rollback: guarded on production, holds the host locks, notified."""

    guarded = True
    changes_hosts = True
    is_level = True


class EnvLevel(Level):
    """A level that sets values in the app's env file, restarts and verifies."""

    arguments: ClassVar[tuple[Argument, ...]] = (NO_VERIFY,)

    def values(self, app: AppSpec, request: Request) -> dict[str, str]:
        raise NotImplementedError

    def check(self, app: AppSpec, request: Request) -> list[str]:
        return [] if app.env_file else [f"app {app.name} has no rollback_app.env_file"]

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        undo = request.undo.get(host, {})  # rollback-ops undo: this host's own values
        values = dict(undo["env"]) if "env" in undo else self.values(app, request)
        settings = ", ".join(f"{k}={mask(v) if app.is_secret(k) else v}" for k, v in values.items())
        if undo.get("env_remove"):
            settings += f"; remove {', '.join(undo['env_remove'])}"
        if undo.get("env_from"):  # secret keys: read back on the host from the run's copy
            source = undo["env_from"]
            settings += f"; {', '.join(source['keys'])} as in {source['path']}"
        units = f"; systemd knows {', '.join(app.units)}" if app.units else ""
        steps = [
            f"preflight (every host before any change): {', '.join(values)} declared "
            f"for {app.name}; {app.env_file} exists and holds them{units}; free disk",
            f"copy {app.env_file} to {app.env_file}.backup.<UTC stamp> if it changes",
            f"set {settings} in {app.env_file} (atomic write, other bytes kept)",
        ]
        steps += [f"{s} (if the file changed)" for s in hook_steps(app, self.name, "after_change")]
        if app.units:
            steps.append(f"restart {', '.join(app.units)} if the file changed")
        steps += [f"{s} (if the file changed)" for s in hook_steps(app, self.name, "after_start")]
        if request.verify:
            steps += verify_steps(app, values)
            steps += hook_steps(app, self.name, "verify")
        return steps


class Flag(EnvLevel):
    name = "flag"
    playbook = "flag"
    summary = "set feature flags or turn the master switch off, restart, verify"
    use_when = "one feature misbehaves, or the whole new behaviour must go off now"
    break_glass = True
    arguments: ClassVar[tuple[Argument, ...]] = (FLAG, ALLOW_NEW_FLAG, NO_VERIFY)

    def values(self, app: AppSpec, request: Request) -> dict[str, str]:
        if request.flags:
            return dict(request.flags)
        return {app.master_switch: app.master_switch_off}

    def check(self, app: AppSpec, request: Request) -> list[str]:
        backend = app.flag_backend
        problems = [] if backend.is_command else super().check(app, request)
        if backend.is_command:
            secret = [k for k in request.flags if app.is_secret(k)]
            if secret:
                problems.append(
                    f"flag {', '.join(secret)} of app {app.name} is secret: its command flag "
                    "backend would put the value in argv"
                )
        else:
            bad = [k for k in request.flags if not ENV_KEY.match(k)]
            if bad:
                problems.append(
                    f"--flag {', '.join(bad)}: not an env key (letters, digits, _); app "
                    f"{app.name} keeps its flags in {app.env_file or 'an env file'}"
                )
        if not request.flags and not app.master_switch and not request.undo:
            problems.append(f"no --flag given and app {app.name} has no master_switch to turn off")
        undeclared = [k for k in request.flags if k not in app.declared_keys]
        if undeclared and not request.allow_new_flags:
            problems.append(
                f"unknown flag {', '.join(undeclared)} for app {app.name} "
                f"(declared: {', '.join(app.declared_keys) or 'none'}; "
                "--allow-new-flag to add it anyway)"
            )
        return problems

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        backend = app.flag_backend
        if not backend.is_command:
            return super().plan(host, app, request)
        undo = request.undo.get(host, {})  # rollback-ops undo: this host's own values
        values = dict(undo["env"]) if "env" in undo else self.values(app, request)
        settings = ", ".join(f"{k}={v}" for k, v in values.items())
        units = f"; systemd knows {', '.join(app.units)}" if app.units else ""
        steps = [
            f"preflight (every host before any change): {', '.join(values)} declared "
            f"for {app.name}{units}; take the host's lock; then read each flag on every host with "
            f"{backend.describe(backend.get)}"
            + ("; each still as the undone run left it" if undo.get("env_expect") else ""),
            "record each flag's value before (the receipt's before/after, what undo puts back)",
            f"set {settings}: only the flags that differ, with {backend.describe(backend.set)} "
            "({key} and {value} replaced literally, no shell), then read each back with get",
        ]
        steps += [f"{s} (if a flag changed)" for s in hook_steps(app, self.name, "after_change")]
        if app.units:
            steps.append(f"restart {', '.join(app.units)} if a flag changed")
        steps += [f"{s} (if a flag changed)" for s in hook_steps(app, self.name, "after_start")]
        if request.verify:
            steps += verify_steps(app, values)
            steps += hook_steps(app, self.name, "verify")
        return steps


class Emergency(EnvLevel):
    name = "emergency"
    playbook = "emergency"
    summary = "put the app in its read-only/stop mode, restart, verify"
    use_when = "the app must stop writing while the cause is found"
    break_glass = True

    def values(self, app: AppSpec, request: Request) -> dict[str, str]:
        return dict(app.emergency)

    def check(self, app: AppSpec, request: Request) -> list[str]:
        problems = super().check(app, request)
        if not app.emergency:
            problems.append(f"app {app.name} has no rollback_app.emergency setting")
        return problems


class Config(Level):
    name = "config"
    playbook = "config"
    summary = (
        "restore the previous config files and cron jobs from a backup set, clear caches, "
        "restart, verify"
    )
    use_when = "a configuration change broke the app; the code is fine"
    arguments: ClassVar[tuple[Argument, ...]] = (NO_VERIFY, BACKUP_ID)

    def check(self, app: AppSpec, request: Request) -> list[str]:
        config, backup = app.config, app.backup
        if not (config.files or config.rows or backup.crontab_users or backup.crontab_files):
            return [
                f"app {app.name} has no rollback_app.config.files, config.rows nor "
                "backup.crontabs to restore"
            ]
        return []

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return _config_plan(app, request, request.undo.get(host, {}).get("config"))


class Code(Level):
    name = "code"
    playbook = "code"
    summary = (
        "maintenance on, stop, revert code (git or backup files), rebuild images, start, verify"
    )
    use_when = "a code bug that flags cannot switch off; the data is fine"
    resumable = True
    arguments: ClassVar[tuple[Argument, ...]] = (NO_VERIFY, TO, BACKUP_STAMP, PROCEDURE, FORCE)
    full: ClassVar[bool] = False

    def check(self, app: AppSpec, request: Request) -> list[str]:
        return _code_problems(app, request, full=self.full)

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return _code_plan(host, app, request, full=self.full, level=self.name)


class Data(Level):
    name = "data"
    playbook = "data"
    summary = (
        "maintenance on, stop, forensic set of the live databases, restore them (a backup set "
        "or the app's own backups), migration rollback, integrity checks, data-loss report, "
        "start, verify; no code, no images"
    )
    use_when = "the data is wrong and the code is fine (or has no code part at all)"
    resumable = True
    needs_db_passwords = True
    arguments: ClassVar[tuple[Argument, ...]] = (NO_VERIFY, BACKUP_ID, FROM, BACKUP_FILE)

    def check(self, app: AppSpec, request: Request) -> list[str]:
        if not app.databases:
            return [f"app {app.name} has no rollback_app.databases to restore"]
        return _source_problems(app, request)

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return _data_plan(app, request)


class Schema(Level):
    name = "schema"
    playbook = "schema"
    summary = (
        "the migration rollback files on the live databases (no restore, no code): previewed "
        "and counted, forensic set, each file in one transaction, integrity checks"
    )
    use_when = (
        "the code is already back and the release's migration must go; every other write stays"
    )
    needs_db_passwords = True
    arguments: ClassVar[tuple[Argument, ...]] = (NO_VERIFY,)

    def check(self, app: AppSpec, request: Request) -> list[str]:
        problems = []
        if not any(d.migrations_rollback for d in app.databases):
            problems.append(
                f"app {app.name} has no rollback_app.databases[].migrations_rollback to run"
            )
        for db in app.databases:
            if db.migrations_rollback and db.engine not in ("postgresql", "sqlite"):
                problems.append(
                    f"database {db.name}: the schema level runs on postgresql and sqlite, not "
                    f"{db.engine} (its DDL commits by itself: no preview, no undo)"
                )
        return problems

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        dbs = [d for d in app.databases if d.migrations_rollback]
        files = "; ".join(f"{d.name}: {', '.join(d.migrations_rollback)}" for d in dbs)
        steps = [
            f"preview (every host, before anything changes): run {files} in a transaction "
            "that is rolled back, counting the tables and columns they drop and the non-null "
            "values those held",
            "preflight: free disk; take the host's lock",
            "if the files change nothing (already rolled back): nothing to do",
        ]
        steps += hook_steps(app, "schema", "before_change")
        steps += [
            f"forensic set of the live databases ({', '.join(d.name for d in app.databases)}) "
            f"in {app.backup.root}/{app.name}/<stamp>-forensic",
            f"run {files}, each file in one transaction, on the live database (no restore, "
            "no stop: the app keeps running); count what they dropped",
        ]
        steps += [
            f"integrity checks of {d.name}: {', '.join(d.integrity_checks)}"
            for d in app.databases
            if d.integrity_checks
        ]
        steps += hook_steps(app, "schema", "after_change")
        if request.verify:
            steps += verify_steps(app, {})
            steps += hook_steps(app, "schema", "verify")
        return steps


class Full(Code):
    name = "full"
    playbook = "full"
    summary = (
        "code + forensic dump of the live databases + restore of the pre-deployment backup + "
        "migration rollback SQL + integrity checks + data-loss report"
    )
    use_when = "the data itself is wrong: code and databases go back to the last backup"
    needs_db_passwords = True
    arguments: ClassVar[tuple[Argument, ...]] = (
        NO_VERIFY,
        TO,
        BACKUP_STAMP,
        BACKUP_ID,
        FROM,
        BACKUP_FILE,
        PROCEDURE,
        FORCE,
    )
    full = True

    def check(self, app: AppSpec, request: Request) -> list[str]:
        return super().check(app, request) + _source_problems(app, request)


def _source_problems(app: AppSpec, request: Request) -> list[str]:
    """--from external and --backup-file against the app's databases."""
    problems = []
    if request.backup_files and request.backup_from != "external":
        problems.append("--backup-file is for --from external")
    if request.backup_from == "external" and request.backup_id:
        problems.append("--backup-id chooses a backup set; --from external uses the app's own")
    names = {d.name for d in app.databases}
    for name in request.backup_files:
        if name not in names:
            problems.append(
                f"--backup-file {name}=...: app {app.name} has no database {name} "
                f"(its databases: {', '.join(sorted(names)) or 'none'})"
            )
    if request.backup_from == "external":
        lacking = [
            d.name
            for d in app.databases
            if not d.external_glob and d.name not in request.backup_files
        ]
        if lacking:
            problems.append(
                f"--from external: database {', '.join(lacking)} of app {app.name} declares no "
                f"external_backups; give --backup-file {lacking[0]}=PATH"
            )
    return problems


def _restore_source(app: AppSpec, request: Request) -> tuple[str, list[str]]:
    """What the databases are restored from, and the check of it before anything stops."""
    if request.backup_from != "external":
        backup_set = request.backup_id or "the newest verified backup set"
        dbs = ", ".join(f"{d.name} ({d.engine})" for d in app.databases)
        return backup_set, [
            f"{backup_set} under {app.backup.root}/{app.name} is this app's, verified, holds "
            f"{dbs}, its checksums match and its dumps read"
        ]
    checks, files = [], []
    for db in app.databases:
        fmt = db.external_format or {"sqlite": "sqlite", "postgresql": "postgresql_custom"}.get(
            db.engine, "mysqldump"
        )
        if db.name in request.backup_files:
            where = request.backup_files[db.name]
        else:
            by = "the stamp in the name" if db.external_order == "name" else "mtime"
            where = f"the newest of {db.external_glob} (by {by})"
        how = {
            "sqlite": "PRAGMA integrity_check on a private copy (with its own -wal)",
            "postgresql_custom": "pg_restore --list",
            "postgresql_plain": "loads into a scratch database in one transaction",
            "mysqldump": "ends with mysqldump's completion line",
        }[fmt]
        checks.append(f"{db.name}: {where}, {fmt}: {how}")
        files.append(f"{db.name} from {where}")
    source = "the external backup (" + "; ".join(files) + ")"
    return source, [
        "external backups: "
        + "; ".join(checks)
        + " (skipped when a verified set adopted from the same files, by sha256, exists)"
    ]


def _restore_steps(app: AppSpec, source: str) -> list[str]:
    steps = []
    for db in app.databases:
        how = (
            "pg_restore --clean --if-exists --single-transaction"
            if db.engine == "postgresql"
            else "atomic replace of the file (the live file's mode, owner and journal mode "
            "kept; its stale -wal/-shm/-journal removed)"
            if db.engine == "sqlite"
            else "mysql < dump"
        )
        extra = [f"run {', '.join(db.migrations_rollback)}"] if db.migrations_rollback else []
        if db.integrity_checks:
            extra.append(f"integrity checks: {', '.join(db.integrity_checks)}")
        if db.data_loss_tables:
            extra.append(f"data-loss report for {', '.join(db.data_loss_tables)}")
        steps.append(
            f"restore {db.name} ({db.target}) from {source}: {how}"
            + (f"; {'; '.join(extra)}" if extra else "")
            + " (unless it already equals the set)"
        )
    return steps


def _data_plan(app: AppSpec, request: Request) -> list[str]:
    docker, maint = app.docker, app.maintenance
    source, checks = _restore_source(app, request)
    if docker.project_dir:
        checks.append("the Docker engine answers, compose is installed")
    if app.units:
        checks.append(f"systemd knows {', '.join(app.units)}")
    steps = [
        "preflight (every host, all or nothing, before anything stops): "
        + "; ".join(checks)
        + "; free disk; then take the host's lock",
        "if the databases already equal the set and the units and containers run: nothing to do",
    ]
    if request.backup_from == "external":
        steps.append(
            f"adopt the external backup into a verified set of kind external under "
            f"{app.backup.root}/{app.name} (once: the same files, by sha256, reuse that set)"
        )
        source = "that set"
    if maint.configured:
        steps.append(f"maintenance on ({_maintenance_how(app)})")
    steps += hook_steps(app, "data", "before_stop")
    if app.units:
        drain = f", up to {app.drain_timeout} s to drain" if app.drain_timeout else ""
        steps.append(f"stop {', '.join(app.units)}{drain}")
    if docker.project_dir:
        steps.append(
            f"stop compose services {', '.join(docker.services) or '(all)'} in {docker.project_dir}"
        )
    steps.append(
        f"forensic set of the live databases ({', '.join(d.name for d in app.databases)}) "
        f"in {app.backup.root}/{app.name}/<stamp>-forensic, with the data-loss tables' keys"
    )
    steps += _restore_steps(app, source)
    steps += hook_steps(app, "data", "after_restore")
    if docker.project_dir:
        steps.append(
            f"compose up -d {', '.join(docker.services) or '(all)'} (no image rebuild); "
            f"containers must run {docker.settle} s without restarting"
        )
    if app.units:
        steps.append(f"start {', '.join(app.units)}")
    steps += hook_steps(app, "data", "after_start")
    if request.verify:
        steps += verify_steps(app, {})
        steps += hook_steps(app, "data", "verify")
    if maint.configured:
        steps.append("maintenance off (left on if a step fails: apply --resume RUN_ID continues)")
    else:
        steps.append("a failing step stops this host there: apply --resume RUN_ID continues")
    return steps


def verify_steps(app: AppSpec, values: dict[str, str]) -> list[str]:
    steps = []
    if app.units:
        steps.append(f"verify {', '.join(app.units)} active")
    if app.health.url:
        expect = ", ".join(f"{k}={v}" for k, v in app.health.expect.items())
        steps.append(
            f"verify GET {app.health.url} answers 200" + (f" with {expect}" if expect else "")
        )
        if values and app.health.config_field:
            steps.append(f"verify the running app reports {', '.join(values)} as set")
    if app.log.path and app.log.error_pattern:
        steps.append(f"verify no new lines matching /{app.log.error_pattern}/ in {app.log.path}")
    return steps


def _code_problems(app: AppSpec, request: Request, full: bool = False) -> list[str]:
    problems = []
    if full and not app.databases:
        problems.append(f"app {app.name} has no rollback_app.databases to restore")
    if not app.code.method:
        problems.append(f"app {app.name} has no rollback_app.code (git or files) to revert")
    elif app.code.method == "git" and request.backup_stamp:
        problems.append(f"--backup-stamp is for backup files; app {app.name} reverts with git")
    elif app.code.method != "git" and request.to:
        what = "backup files" if app.code.method == "files" else "an archive directory"
        problems.append(f"--to is for git; app {app.name} restores {what}")
    return problems


def hook_steps(app: AppSpec, level: str, step: str) -> list[str]:
    """The plan's lines for the app's hooks at ``step`` of ``level`` (rollback_app.hooks)."""
    return [
        f"hook {step}: {hook.describe()}"
        for hook in app.hooks
        if hook.step == step and (not hook.levels or level in hook.levels)
    ]


def _code_plan(
    host: str, app: AppSpec, request: Request, full: bool = False, level: str = "code"
) -> list[str]:
    code, docker, maint = app.code, app.docker, app.maintenance
    checks = []
    backup_set = request.backup_id or "the newest verified predeploy backup set"
    if full and request.backup_from == "external":
        backup_set, source_checks = _restore_source(app, request)
        checks += source_checks
    elif full:
        dbs = ", ".join(f"{d.name} ({d.engine})" for d in app.databases)
        checks.append(
            f"{backup_set} under {app.backup.root}/{app.name} is this app's, verified, holds "
            f"{dbs}, its checksums match and its dumps read"
        )
    if code.method == "git":
        target = request.targets.get(host) or request.to
        if full and not target:
            target = "the release the set was taken with"
        target = target or f"the previous release (second newest tag {code.release_tags!r})"
        checks.append(f"{target} exists in {code.path}")
        if code.paths or code.remove:
            checks.append(
                "no uncommitted change that would be lost under the paths"
                + (" (--force)" if request.force else "")
            )
        else:
            checks.append(
                "no uncommitted change to tracked files" + (" (--force)" if request.force else "")
            )
    elif code.method == "archive":
        which = (
            f"the one holding {request.backup_stamp!r}"
            if request.backup_stamp
            else "the newest by the stamp in its name"
        )
        checks.append(
            f"a directory {code.path}/{code.archive_dir} ({which}) holds files "
            f"{code.archive_files!r}; {code.path}/{code.archive_to} is a directory"
        )
    else:
        stamp = request.backup_stamp or "<newest>"
        checks.append(f"{code.path}/<file>.backup.{stamp} exists for {', '.join(code.restore)}")
    if docker.images or docker.project_dir:
        checks.append(
            "the Docker engine answers" + (", compose is installed" if docker.project_dir else "")
        )
    if app.units:
        checks.append(f"systemd knows {', '.join(app.units)}")
    steps = [
        *_procedure_steps(app),
        "preflight (every host, all or nothing): "
        + "; ".join(checks)
        + "; free disk; then take the host's lock",
        "if the code, images, containers and units already match the target"
        + (" and the databases equal the set" if full else "")
        + ": nothing to do",
    ]
    if full and request.backup_from == "external":
        steps.append(
            f"adopt the external backup into a verified set of kind external under "
            f"{app.backup.root}/{app.name} (once: the same files, by sha256, reuse that set)"
        )
        backup_set = "that set"
    if maint.configured:
        steps.append(f"maintenance on ({_maintenance_how(app)})")
    steps += hook_steps(app, level, "before_stop")
    if app.units:
        drain = f", up to {app.drain_timeout} s to drain" if app.drain_timeout else ""
        steps.append(f"stop {', '.join(app.units)}{drain}")
    if docker.project_dir:
        steps.append(
            f"stop compose services {', '.join(docker.services) or '(all)'} in {docker.project_dir}"
        )
    if full:
        steps.append(
            f"forensic set of the live databases ({', '.join(d.name for d in app.databases)}) "
            f"in {app.backup.root}/{app.name}/<stamp>-forensic, with the data-loss tables' keys"
        )
    if code.method == "git":
        how = (
            "check out the target (detached HEAD)"
            if code.git_mode == "checkout"
            else "commit the target's tree on top of HEAD (history kept)"
        )
        if "head" in request.undo.get(host, {}):
            branch = request.undo[host].get("branch")
            how = (
                f"put HEAD back on the target{f' on branch {branch}' if branch else ' (detached)'}"
            )
        if code.paths or code.remove:
            parts = []
            if code.paths:
                parts.append(
                    f"restore {', '.join(code.paths)} from the target (as git checkout REF -- "
                    "PATHS, each file atomically, HEAD stays)"
                )
            if code.remove_added:
                parts.append("remove the tracked files under them the target lacks")
            if code.remove:
                parts.append(f"remove {', '.join(code.remove)}")
            steps.append(
                f"tar the files that change to /var/lib/rollback-ops/code/, then in {code.path}: "
                + "; ".join(parts)
            )
        else:
            steps.append(f"record HEAD as refs/rollback-ops/<run id>, then {how} in {code.path}")
    elif code.method == "archive":
        which = request.backup_stamp or "the newest"
        steps.append(
            f"tar the files that change to /var/lib/rollback-ops/code/, then copy "
            f"{code.archive_files!r} of {which} {code.path}/{code.archive_dir} into "
            f"{code.path}/{code.archive_to} (atomic, mode and owner kept; the directory chosen "
            "is in the receipt and the --check --diff output)"
        )
    else:
        restore = f"restore {', '.join(code.restore)} from their backups" if code.restore else ""
        remove = f"remove {', '.join(code.remove)}" if code.remove else ""
        what = "; ".join(x for x in (restore, remove) if x)
        steps.append(f"tar the current files to /var/lib/rollback-ops/code/, then {what}")
    if full:
        steps += _restore_steps(app, backup_set)
    if code.requirements:
        venv = f" into {code.venv}" if code.venv else ""
        steps.append(f"pip install -r {code.path}/{code.requirements}{venv}")
    steps += hook_steps(app, level, "after_revert")
    for image in docker.images:
        nocache = ", no cache" if image.nocache else ""
        steps.append(
            f"rebuild image {image.tag} from {image.context}{nocache} (when its context changed)"
        )
    if docker.project_dir:
        steps.append(
            f"compose up -d {', '.join(docker.services) or '(all)'}; containers must run "
            f"{docker.settle} s without restarting"
            + (
                f" and log nothing matching /{docker.log_error_pattern}/"
                if docker.log_error_pattern
                else ""
            )
        )
    if app.units:
        steps.append(f"start {', '.join(app.units)}")
    steps += hook_steps(app, level, "after_start")
    if request.verify:
        steps += verify_steps(app, {})
        steps += hook_steps(app, level, "verify")
    if maint.configured:
        steps.append("maintenance off (left on if a step fails: apply --resume RUN_ID continues)")
    return steps


def _procedure_steps(app: AppSpec) -> list[str]:
    if not app.procedure:
        return []
    about = app.procedures.get(app.procedure, "")
    return [f"procedure {app.procedure}" + (f": {about}" if about else "")]


def _config_undo_steps(undo: list[dict[str, str]]) -> list[str]:
    """rollback-ops undo of a config run: the files come from the copies that run made."""
    files = ", ".join(f"{e['path']} from {e['copy'] or '(none: moved aside)'}" for e in undo)
    return [
        "preflight (every host, all or nothing): each copy the undone run made is still there "
        "with its sha256, each file is still as that run left it; take the host's lock",
        "a file already equal to its copy: nothing to do",
        "copy each other file to <file>.backup.<UTC stamp>, then put back the run's copy "
        f"(atomic, the copy's mode and owner; a file the run created is moved aside): {files}",
    ]


def _config_plan(
    app: AppSpec, request: Request, undo: list[dict[str, str]] | None = None
) -> list[str]:
    backup_set = request.backup_id or "the newest verified backup set holding them"
    files = ", ".join(dict.fromkeys(app.config.files + app.backup.crontab_files))
    rows = ", ".join(r.name for r in app.config.rows)
    users = ", ".join(app.backup.crontab_users)
    held = " and ".join(
        x
        for x in (
            files,
            f"the config rows {rows}" if rows else "",
            f"the crontabs of {users}" if users else "",
        )
        if x
    )
    if undo:
        steps = _config_undo_steps(undo)
        steps += hook_steps(app, "config", "before_change")
    else:
        steps = [
            f"preflight (every host, all or nothing): {backup_set} under {app.backup.root}/"
            f"{app.name} holds {held} with matching sha256"
            + (
                "; dump the current rows ("
                + "; ".join(
                    f"{r.name}: {' '.join(r.dump)}" + (f" as {r.user}" if r.user else "")
                    for r in app.config.rows
                )
                + ") into temp files to compare"
                if rows
                else ""
            )
            + "; take the host's lock",
            "if the files, rows and crontabs already equal the set's: nothing to do",
        ]
        steps += hook_steps(app, "config", "before_change")
        if files:
            steps.append(
                f"copy each differing file to <file>.backup.<UTC stamp>, then put back the "
                f"set's copy (atomic, the recorded mode and owner): {files}"
            )
        for r in app.config.rows:
            steps.append(
                f"rows {r.name}, if they differ: dump the current rows to "
                f"/var/lib/rollback-ops/config-rows/{r.name}.<UTC stamp>, then "
                f"{' '.join(r.load)} with a private copy of the set's rows/{r.name} as {{file}}, "
                "then dump again to compare"
            )
        if users:
            steps.append(
                f"copy each differing crontab (crontab -l -u USER) to {app.backup.root}/"
                f"{app.name}/.crontab-copies/<user>.backup.<UTC stamp>, then install the set's "
                f"with crontab -u USER FILE: {users}"
            )
    steps += hook_steps(app, "config", "after_change")
    steps += [f"clear the cache: {cache.description}" for cache in app.config.caches]
    if app.units:
        steps.append(f"restart {', '.join(app.units)}")
    steps += hook_steps(app, "config", "after_start")
    if request.verify:
        steps += verify_steps(app, {})
        steps += hook_steps(app, "config", "verify")
    return steps


def _maintenance_how(app: AppSpec) -> str:
    maint = app.maintenance
    parts = []
    if maint.file:
        parts.append(f"create {maint.file}")
    if maint.env:
        parts.append(
            "set " + ", ".join(f"{k}={v}" for k, v in maint.env.items()) + f" in {app.env_file}"
        )
    if maint.enable_command:
        parts.append("run " + " ".join(maint.enable_command))
    return "; ".join(parts)
