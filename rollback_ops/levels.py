"""The rollback levels: what each one asks of the app, its playbook, and its plan."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollback_ops.appspec import ENV_KEY, AppSpec, env_value_problem, mask
from rollback_ops.exceptions import ConfigError
from rollback_ops.text import short


@dataclass(frozen=True)
class Request:
    """What the operator asked for, independent of any host."""

    level: str
    flags: dict[str, str] = field(default_factory=dict)
    allow_new_flags: bool = False
    verify: bool = True
    unlock_run: str = ""  # unlock: clear only this run's host locks
    unlock_runs: dict[str, str] = field(default_factory=dict)  # unlock: per host, the run to clear
    to_ref: str = ""  # code: the git ref to go back to (default: the previous release)
    backup_stamp: str = ""  # code: the backups to restore (default: each file's newest)
    force: bool = False  # code: revert despite uncommitted changes (recorded first)
    targets: dict[str, str] = field(default_factory=dict)  # code: pinned per host (--resume)
    resumes: str = ""  # the run this one resumes
    backup_id: str = ""  # full, config, backup verify: the set (default: newest verified)
    backup_kind: str = "manual"  # backup create: predeploy, scheduled, manual
    restore_test: bool = False  # backup create/verify: restore into a throwaway database
    keep: int | None = None  # backup prune
    max_age_days: int | None = None  # backup prune
    schedule_at: str = ""  # backup schedule: systemd calendar spec


# what --to, --backup-stamp and --backup-id may hold: they become git arguments and parts of
# paths on the hosts, so nothing that reads as an option or leaves the directory
GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)[^\x00-\x20\x7f:\\]{1,200}\Z")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SHA = re.compile(r"^[0-9a-f]{7,64}\Z")


def request_problems(request: Request) -> list[str]:
    """Values of the request that could be read as something else on a host."""
    problems = []
    if request.to_ref and not GIT_REF.match(request.to_ref):
        problems.append(
            f"--to {short(request.to_ref)}: not a git ref (no leading '-', blanks, '..' or ':')"
        )
    for option, value in (
        ("--backup-stamp", request.backup_stamp),
        ("--backup-id", request.backup_id),
    ):
        if value and (not NAME.match(value) or ".." in value):
            problems.append(
                f"{option} {short(value)}: letters, digits, '.', '_' and '-' only, as "
                "`backup list` and the backup files show them"
            )
    for host, sha in request.targets.items():
        if not SHA.match(sha):
            problems.append(f"the pinned target of {host} ({short(sha)}) is not a commit id")
    return problems


@dataclass(frozen=True)
class Level:
    name: str
    playbook: str
    summary: str
    seeds: str
    values: Callable[[AppSpec, Request], dict[str, str]] | None = None
    # rollback: production guard, inventory lock, notifications; locked: the lock only
    # (backup jobs); readonly: none (checks, listings)
    kind: str = "rollback"

    def check(self, app: AppSpec, request: Request) -> list[str]:
        """Problems that make this level impossible for this host's app."""
        problems: list[str] = []
        if self.name == "verify" and not app.checks_anything and not app.verify_none_ok:
            return [
                f"nothing to verify: app {app.name} configures no units, health url or log "
                "error_pattern (set rollback_app.verify: none to accept that)"
            ]
        if self.name in ("code", "full"):
            return _code_problems(app, request, full=self.name == "full")
        if self.name == "config":
            if not app.config.files:
                return [f"app {app.name} has no rollback_app.config.files to restore"]
            return []
        if self.values is None:
            return problems
        if not app.env_file:
            problems.append(f"app {app.name} has no rollback_app.env_file")
        if self.name == "flag":
            if not request.flags and not app.master_switch:
                problems.append(
                    f"no --flag given and app {app.name} has no master_switch to turn off"
                )
            undeclared = [k for k in request.flags if k not in app.declared_keys]
            if undeclared and not request.allow_new_flags:
                problems.append(
                    f"unknown flag {', '.join(undeclared)} for app {app.name} "
                    f"(declared: {', '.join(app.declared_keys) or 'none'}; "
                    "--allow-new-flag to add it anyway)"
                )
        if self.name == "emergency" and not app.emergency:
            problems.append(f"app {app.name} has no rollback_app.emergency setting")
        return problems

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        if self.name in ("code", "full"):
            return _code_plan(host, app, request, full=self.name == "full")
        if self.name == "config":
            return _config_plan(app, request)
        values = self.values(app, request) if self.values else {}
        steps: list[str] = []
        if values:
            settings = ", ".join(
                f"{k}={mask(v) if app.is_secret(k) else v}" for k, v in values.items()
            )
            units = f"; systemd knows {', '.join(app.units)}" if app.units else ""
            steps.append(
                f"preflight (every host before any change): {', '.join(values)} declared "
                f"for {app.name}; {app.env_file} exists and holds them{units}; free disk"
            )
            steps.append(f"copy {app.env_file} to {app.env_file}.backup.<UTC stamp> if it changes")
            steps.append(f"set {settings} in {app.env_file} (atomic write, other bytes kept)")
            if app.units:
                steps.append(f"restart {', '.join(app.units)} if the file changed")
        if (self.values and request.verify) or self.name == "verify":
            steps += _verify_steps(app, values)
        return steps

    def extravars(self, request: Request) -> dict[str, Any]:
        """The request as the playbooks' variables (the flags are added by the caller, which
        sends secret ones through the environment)."""
        return {
            "rollback_level": self.name,
            "rollback_allow_new_flags": request.allow_new_flags,
            "rollback_verify": request.verify,
            "rollback_unlock_runs": dict(request.unlock_runs),
            "rollback_unlock_inspect": request.level == UNLOCK_INSPECT.name,
            "rollback_code_to": request.to_ref,
            "rollback_backup_stamp": request.backup_stamp,
            "rollback_force": request.force,
            "rollback_code_targets": dict(request.targets),
            "rollback_backup_id": request.backup_id,
            "rollback_backup_kind": request.backup_kind,
            "rollback_restore_test": request.restore_test,
            **({"rollback_schedule_at": request.schedule_at} if request.schedule_at else {}),
            **({"rollback_keep": request.keep} if request.keep is not None else {}),
            **(
                {"rollback_max_age_days": request.max_age_days}
                if request.max_age_days is not None
                else {}
            ),
        }


def _verify_steps(app: AppSpec, values: dict[str, str]) -> list[str]:
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
    elif app.code.method == "files" and request.to_ref:
        problems.append(f"--to is for git; app {app.name} restores backup files")
    return problems


def _code_plan(host: str, app: AppSpec, request: Request, full: bool = False) -> list[str]:
    code, docker, maint = app.code, app.docker, app.maintenance
    checks = []
    backup_set = request.backup_id or "the newest verified predeploy backup set"
    if full:
        dbs = ", ".join(f"{d.name} ({d.engine})" for d in app.databases)
        checks.append(
            f"{backup_set} under {app.backup.root}/{app.name} is this app's, verified, holds "
            f"{dbs}, its checksums match and its dumps read"
        )
    if code.method == "git":
        target = request.targets.get(host) or request.to_ref
        if full and not target:
            target = "the release the set was taken with"
        target = target or f"the previous release (second newest tag {code.release_tags!r})"
        checks.append(f"{target} exists in {code.path}")
        checks.append(
            "no uncommitted change to tracked files" + (" (--force)" if request.force else "")
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
        "preflight (every host, all or nothing): "
        + "; ".join(checks)
        + "; free disk; then take the host's lock",
        "if the code, images, containers and units already match the target"
        + (" and the databases equal the set" if full else "")
        + ": nothing to do",
    ]
    if maint.configured:
        steps.append(f"maintenance on ({_maintenance_how(app)})")
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
        steps.append(f"record HEAD as refs/rollback-ops/<run id>, then {how} in {code.path}")
    else:
        restore = f"restore {', '.join(code.restore)} from their backups" if code.restore else ""
        remove = f"remove {', '.join(code.remove)}" if code.remove else ""
        what = "; ".join(x for x in (restore, remove) if x)
        steps.append(f"tar the current files to /var/lib/rollback-ops/code/, then {what}")
    if full:
        for db in app.databases:
            how = (
                "pg_restore --clean --if-exists --single-transaction"
                if db.engine == "postgresql"
                else "atomic replace of the file"
                if db.engine == "sqlite"
                else "mysql < dump"
            )
            extra = [f"run {', '.join(db.migrations_rollback)}"] if db.migrations_rollback else []
            if db.integrity_checks:
                extra.append(f"integrity checks: {', '.join(db.integrity_checks)}")
            if db.data_loss_tables:
                extra.append(f"data-loss report for {', '.join(db.data_loss_tables)}")
            steps.append(
                f"restore {db.name} ({db.target}) from {backup_set}: {how}"
                + (f"; {'; '.join(extra)}" if extra else "")
                + " (unless it already equals the set)"
            )
    if code.requirements:
        venv = f" into {code.venv}" if code.venv else ""
        steps.append(f"pip install -r {code.path}/{code.requirements}{venv}")
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
    if request.verify:
        steps += _verify_steps(app, {})
    if maint.configured:
        steps.append("maintenance off (left on if a step fails: apply --resume RUN_ID continues)")
    return steps


def _config_plan(app: AppSpec, request: Request) -> list[str]:
    backup_set = request.backup_id or "the newest verified backup set holding them"
    files = ", ".join(app.config.files)
    steps = [
        f"preflight (every host, all or nothing): {backup_set} under "
        f"{app.backup.root}/{app.name} holds {files} with matching sha256; take the host's lock",
        "if the files already equal the set's: nothing to do",
        f"copy each differing file to <file>.backup.<UTC stamp>, then put back the set's copy "
        f"(atomic, the recorded mode and owner): {files}",
    ]
    steps += [f"clear the cache: {cache.description}" for cache in app.config.caches]
    if app.units:
        steps.append(f"restart {', '.join(app.units)}")
    if request.verify:
        steps += _verify_steps(app, {})
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


def _flag_values(app: AppSpec, request: Request) -> dict[str, str]:
    if request.flags:
        return dict(request.flags)
    return {app.master_switch: app.master_switch_off}


def _emergency_values(app: AppSpec, request: Request) -> dict[str, str]:
    return dict(app.emergency)


LEVELS: dict[str, Level] = {
    "flag": Level(
        "flag",
        "flag",
        "set feature flags or turn the master switch off, restart, verify",
        "seed 003 quick/partial rollback; seed 000 levels 1-2",
        _flag_values,
    ),
    "emergency": Level(
        "emergency",
        "emergency",
        "put the app in its read-only/stop mode, restart, verify",
        "seed 000 level 3 (APP_MODE=research)",
        _emergency_values,
    ),
}
LEVELS["config"] = Level(
    "config",
    "config",
    "restore the previous config files from a backup set, clear caches, restart, verify",
    "seed 002 strategy 2",
)
LEVELS["code"] = Level(
    "code",
    "code",
    "maintenance on, stop, revert code (git or backup files), rebuild images, start, verify",
    "seed 002 strategy 3; seed 003 full code rollback; seed 004 phase 1 rollback",
)
LEVELS["full"] = Level(
    "full",
    "full",
    "code + forensic dump of the live databases + restore of the pre-deployment backup + "
    "migration rollback SQL + integrity checks + data-loss report",
    "seed 002 strategy 4; seed 001; seed 003 step 4",
)
VERIFY = Level(
    "verify", "verify", "only the checks", "seed 003 validation after rollback", kind="readonly"
)
BACKUP = {
    "backup-create": Level(
        "backup-create",
        "backup_create",
        "take a verified backup set: databases, env and config files, code ref",
        "every seed's 'backup before deployment'",
        kind="locked",
    ),
    "backup-list": Level("backup-list", "backup_list", "list the backup sets", "", kind="readonly"),
    "backup-verify": Level(
        "backup-verify", "backup_verify", "verify a backup set", "", kind="readonly"
    ),
    "backup-schedule": Level(
        "backup-schedule",
        "backup_schedule",
        "install a systemd timer taking backup sets",
        "",
        kind="locked",
    ),
    "backup-unschedule": Level(
        "backup-unschedule", "backup_unschedule", "remove the backup timer", "", kind="locked"
    ),
    "backup-prune": Level(
        "backup-prune", "backup_prune", "prune old backup sets", "", kind="locked"
    ),
}
UNLOCK = Level("unlock", "unlock", "clear the host locks a dead run left", "")
UNLOCK_INSPECT = Level(
    "unlock-inspect", "unlock", "read the host locks (who holds them)", "", kind="readonly"
)
RESUMABLE = ("code", "full")  # levels whose failed runs `apply --resume RUN_ID` continues


def get(name: str) -> Level:
    """A rollback level by name, or one of the runs that are not levels (verify, unlock)."""
    if name in LEVELS:
        return LEVELS[name]
    for level in (VERIFY, UNLOCK, UNLOCK_INSPECT):
        if name == level.name:
            return level
    if name in BACKUP:
        return BACKUP[name]
    raise ConfigError(f"unknown level {name!r}; choose one of {', '.join(LEVELS)}")


def parse_flags(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings from the command line to a dict, refusing malformed ones.

    The key is taken as typed (a blank or newline around it is refused, not trimmed: a key
    that is not exactly the file's must not silently become another one); the value is
    taken byte for byte, refused only where it could not be one line of an env file.
    """
    flags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--flag {short(item)}: expected KEY=VALUE")
        if not ENV_KEY.match(key):
            raise ConfigError(
                f"--flag {short(item)}: {short(key)} is not a valid env key "
                "(letters, digits and _, not starting with a digit; no blanks around it)"
            )
        problem = env_value_problem(value)
        if problem:
            raise ConfigError(f"--flag {key}: the value {problem}")
        if key in flags and flags[key] != value:
            raise ConfigError(f"--flag {key} given twice with different values")
        flags[key] = value
    return flags
