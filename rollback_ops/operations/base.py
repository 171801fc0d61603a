"""What every operation is: a request, the CLI arguments that fill it, and a common base.

One class per command (ansible-runner's one config class per kind of operation): its name,
playbook, guard policy, checks against an app, plan text, and the arguments it takes, each
next to the :class:`Request` field it fills (barman's ``@command([argument(...)])``). Adding
a level is adding a class: :meth:`Operation.__init_subclass__` registers it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rollback_ops.appspec import FLAG_KEY, AppSpec, env_value_problem
from rollback_ops.exceptions import ConfigError
from rollback_ops.runner import AnsibleOptions
from rollback_ops.text import short


@dataclass(frozen=True)
class Request:
    """What the operator asked for, independent of any host.

    The fields are named as the playbooks' ``rollback_request`` keys (:func:`extravars`);
    ``undoes`` and ``unlock_run`` stay on the controller.
    """

    level: str = ""
    flags: dict[str, str] = field(default_factory=dict)  # flag: KEY=VALUE to set
    allow_new_flags: bool = False  # flag: accept undeclared keys
    verify: bool = True  # the checks after the change
    to: str = ""  # code, full, git: the ref to go back to (default: the previous release)
    backup_stamp: str = ""  # code, files: the backups to restore (default: each file's newest)
    procedure: str = ""  # code, full: the app's named procedure (rollback_app.procedures)
    force: bool = False  # code: despite uncommitted changes; unlock: another controller's lock
    targets: dict[str, str] = field(default_factory=dict)  # code: pinned per host (--resume)
    backup_id: str = ""  # full, config, backup verify: the set (default: newest verified)
    backup_from: str = "set"  # data, full: set (a backup set) or external (the app's own)
    backup_files: dict[str, str] = field(default_factory=dict)  # data, full, import: DB -> file
    backup_kind: str = "manual"  # backup create: predeploy, scheduled, manual
    restore_test: bool = False  # backup create/verify: restore into a throwaway database
    schedule_at: str = ""  # backup schedule: systemd calendar spec
    keep: int | None = None  # backup prune, schedule
    max_age_days: int | None = None  # backup prune
    max_age_seconds: int | None = None  # backup verify: a verified set this young must exist
    unlock_runs: dict[str, str] = field(default_factory=dict)  # unlock: per host, the run
    unlock_inspect: bool = False  # unlock's first phase: read the locks only
    loss_run: str = ""  # backup export-loss: the data or full run whose lost rows to export
    loss_format: str = "sql"  # backup export-loss: sql or csv
    loss_out: str = ""  # backup export-loss: the controller's directory the files go to
    loss_sets: dict[str, str] = field(default_factory=dict)  # export-loss: host -> forensic set
    # undo: per host, what goes back (rollback_ops.undo): env values, keys to remove, the
    # values the keys may hold now; for code the HEAD and branch to put back exactly
    undo: dict[str, dict[str, Any]] = field(default_factory=dict)
    # production approvals: {"run": the request's run id, "hash": its plan hash} for
    # `apply --run`; the approval commands add "action" (request, approve, read) and "record"
    approval: dict[str, Any] = field(default_factory=dict)
    resumes: str = ""  # controller only: the run this one resumes
    undoes: str = ""  # controller only: the run this one undoes
    unlock_run: str = ""  # controller only: unlock clears only this run's locks


# the keys of the playbooks' ``rollback_request`` and their types (the contract with
# playbooks/ and roles/: every key is always sent)
REQUEST_KEYS: dict[str, tuple[type, ...]] = {
    "level": (str,),
    "run_id": (str,),
    "operator": (str,),
    "approved_by": (str,),
    "reason": (str,),
    "break_glass": (bool,),
    "confirmed_by_typing": (bool,),
    "flags": (dict,),
    "allow_new_flags": (bool,),
    "verify": (bool,),
    "to": (str,),
    "backup_stamp": (str,),
    "procedure": (str,),
    "force": (bool,),
    "targets": (dict,),
    "backup_id": (str,),
    "backup_from": (str,),
    "backup_files": (dict,),
    "backup_kind": (str,),
    "restore_test": (bool,),
    "schedule_at": (str,),
    "keep": (int, type(None)),
    "max_age_days": (int, type(None)),
    "max_age_seconds": (int, type(None)),
    "unlock_runs": (dict,),
    "unlock_inspect": (bool,),
    "loss_run": (str,),
    "loss_format": (str,),
    "loss_out": (str,),
    "loss_sets": (dict,),
    "undo": (dict,),
    "controller": (dict,),
    "authorized_environments": (list,),
    "approval": (dict,),
    "resumes": (str,),
}


def rollback_request(
    request: Request,
    *,
    run_id: str,
    authorization: dict[str, Any],
    controller: dict[str, Any],
    authorized_environments: Sequence[str],
    public_flags: dict[str, str],
) -> dict[str, Any]:
    """The one extra variable a playbook gets: the request, who runs it and who allowed it,
    the controller holding the host locks, and the environments the guard authorized.

    Secret flags are left out of ``flags`` (they travel through the environment).
    """
    return {
        "level": request.level,
        "run_id": run_id,
        "operator": str(authorization["operator"]),
        "approved_by": str(authorization.get("approved_by", "")),
        "reason": str(authorization.get("reason", "")),
        "break_glass": bool(authorization.get("break_glass", False)),
        "confirmed_by_typing": bool(authorization.get("confirmed_by_typing", False)),
        "flags": dict(public_flags),
        "allow_new_flags": request.allow_new_flags,
        "verify": request.verify,
        "to": request.to,
        "backup_stamp": request.backup_stamp,
        "procedure": request.procedure,
        "force": request.force,
        "targets": dict(request.targets),
        "backup_id": request.backup_id,
        "backup_from": request.backup_from,
        "backup_files": dict(request.backup_files),
        "backup_kind": request.backup_kind,
        "restore_test": request.restore_test,
        "schedule_at": request.schedule_at,
        "keep": request.keep,
        "max_age_days": request.max_age_days,
        "max_age_seconds": request.max_age_seconds,
        "unlock_runs": dict(request.unlock_runs),
        "unlock_inspect": request.unlock_inspect,
        "loss_run": request.loss_run,
        "loss_format": request.loss_format,
        "loss_out": request.loss_out,
        "loss_sets": dict(request.loss_sets),
        "undo": {host: dict(entry) for host, entry in request.undo.items()},
        "controller": {
            "name": str(controller["controller"]),
            "pid": int(controller["pid"]),
            "pid_start": str(controller["pid_start"]),
        },
        "authorized_environments": list(authorized_environments),
        "approval": {
            "run": str(request.approval.get("run", "")),
            "hash": str(request.approval.get("hash", "")),
            "action": str(request.approval.get("action", "")),
            "record": dict(request.approval.get("record") or {}),
        },
        "resumes": request.resumes,
    }


@dataclass(frozen=True)
class Argument:
    """One command-line argument: argparse's names and options, and the request field it
    fills (``None``: an argument of the command, not of the request), converted by
    ``convert`` when the typed form differs from the request's."""

    names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    request_field: str | None = None
    convert: Callable[[Any], Any] | None = None

    @property
    def dest(self) -> str:
        if "dest" in self.options:
            return str(self.options["dest"])
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")

    @property
    def display(self) -> str:
        return next((n for n in self.names if n.startswith("--")), self.names[0])

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names, **self.options)

    def given(self, args: argparse.Namespace) -> bool:
        """Whether the command line set it (to something other than its default)."""
        value = getattr(args, self.dest, None)
        return bool(value) and value != self.options.get("default")

    def value(self, args: argparse.Namespace) -> Any:
        value = getattr(args, self.dest)
        return self.convert(value) if self.convert else value


def argument(
    *names: str, request_field: str | None = None, convert: Any = None, **options: Any
) -> Argument:
    """An :class:`Argument` written as argparse's ``add_argument`` call."""
    return Argument(names, options, request_field, convert)


def add_arguments(parser: argparse.ArgumentParser, arguments: Sequence[Argument]) -> None:
    for arg in arguments:
        arg.add_to(parser)


# what --to, --backup-stamp and --backup-id may hold: they become git arguments and parts of
# paths on the hosts, so nothing that reads as an option or leaves the directory
GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)[^\x00-\x20\x7f:\\]{1,200}\Z")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SHA = re.compile(r"^[0-9a-f]{7,64}\Z")


def request_problems(request: Request) -> list[str]:
    """Values of the request that could be read as something else on a host."""
    problems = []
    if request.to and not GIT_REF.match(request.to):
        problems.append(
            f"--to {short(request.to)}: not a git ref (no leading '-', blanks, '..' or ':')"
        )
    for option, value in (
        ("--backup-stamp", request.backup_stamp),
        ("--backup-id", request.backup_id),
        ("--procedure", request.procedure),
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


def parse_backup_files(items: list[str]) -> dict[str, str]:
    """``DB=PATH`` strings of --backup-file to a dict: the database's name, an absolute path."""
    files: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not NAME.match(name):
            raise ConfigError(
                f"--backup-file {short(item)}: expected DB=PATH (the database's name)"
            )
        if not path.startswith("/") or "\n" in path or "\x00" in path:
            raise ConfigError(f"--backup-file {short(item)}: the path must be absolute, one line")
        if name in files and files[name] != path:
            raise ConfigError(f"--backup-file {name} given twice with different files")
        files[name] = path
    return files


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
        if not FLAG_KEY.match(key):  # an env key, or a command backend's (tenant:key)
            raise ConfigError(
                f"--flag {short(item)}: {short(key)} is not a valid flag key "
                "(letters, digits and _, a command backend's also . : / -; not starting with a "
                "digit; no blanks around it)"
            )
        problem = env_value_problem(value)
        if problem:
            raise ConfigError(f"--flag {key}: the value {problem}")
        if key in flags and flags[key] != value:
            raise ConfigError(f"--flag {key} given twice with different values")
        flags[key] = value
    return flags


OPERATIONS: dict[str, Operation] = {}


class Operation:
    """One command: what it runs, how it is guarded, what it asks of an app.

    Subclasses set the class attributes; those with a ``name`` are registered.
    """

    name: ClassVar[str] = ""
    playbook: ClassVar[str] = ""  # playbooks/<playbook>.yml
    summary: ClassVar[str] = ""  # one line: the command's help
    use_when: ClassVar[str] = ""  # a level: when to choose it (the `levels` command)
    examples: ClassVar[tuple[str, ...]] = ()  # its command lines, shown under --help
    guarded: ClassVar[bool] = False  # production guard, notifications, typed confirmation
    changes_hosts: ClassVar[bool] = False  # takes the host locks (outside check mode)
    break_glass: ClassVar[bool] = False  # --break-glass may stand in for an approval
    needs_db_passwords: ClassVar[bool] = False  # the databases' password_env must be set
    resumable: ClassVar[bool] = False  # `apply --resume RUN_ID` continues its failed runs
    is_level: ClassVar[bool] = False  # a rollback level (`apply --level`, `plan --level`)
    arguments: ClassVar[tuple[Argument, ...]] = ()  # its own; the target ones are shared
    fixed: ClassVar[dict[str, Any]] = {}  # request fields this operation always sets

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            OPERATIONS[cls.name] = cls()

    def check(self, app: AppSpec, request: Request) -> list[str]:
        """Problems that make this operation impossible for this host's app."""
        return []

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        """The steps on this host, in order, as text (contacts no host)."""
        return []

    def request(self, args: argparse.Namespace, **over: Any) -> Request:
        """The request the command line asks for: each argument fills its field."""
        values = {
            a.request_field: a.value(args)
            for a in self.arguments
            if a.request_field and hasattr(args, a.dest)
        }
        return Request(level=self.name, **{**values, **self.fixed, **over})

    def usage_problems(self, args: argparse.Namespace) -> list[str]:
        """Combinations of arguments this operation refuses before anything is loaded."""
        return []


def get(name: str) -> Operation:
    """An operation by name (a level, verify, unlock, unlock-inspect, backup-*)."""
    if name in OPERATIONS and OPERATIONS[name].playbook:
        return OPERATIONS[name]
    raise ConfigError(f"unknown level {name!r}; choose one of {', '.join(rollback_levels())}")


def rollback_levels() -> dict[str, Operation]:
    """The rollback levels, smallest first."""
    return {n: op for n, op in OPERATIONS.items() if op.is_level}


# the arguments every command that runs a playbook takes: Ansible's own, with Ansible's
# names and meaning; they fill runner.AnsibleOptions, not the request
ANSIBLE_ARGUMENTS = (
    argument("--user", "-u", metavar="REMOTE_USER", help="Ansible's -u: connect as this user"),
    argument(
        "--private-key",
        metavar="PRIVATE_KEY_FILE",
        help="Ansible's --private-key: use this file to authenticate the connection",
    ),
    argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="Ansible's -v: more output from Ansible (-vvv for connection debugging)",
    ),
    argument(
        "--ssh-common-args",
        metavar="ARGS",
        help="Ansible's --ssh-common-args: extra arguments for sftp, scp and ssh",
    ),
    argument(
        "--vault-id",
        dest="vault_ids",
        action="append",
        default=[],
        metavar="VAULT_IDS",
        help="Ansible's --vault-id: the vault identity to use (repeatable)",
    ),
    argument(
        "--vault-password-file",
        dest="vault_password_files",
        action="append",
        default=[],
        metavar="VAULT_PASSWORD_FILES",
        help="Ansible's --vault-password-file: vault password file (repeatable)",
    ),
    argument(
        "--ask-vault-pass",
        action="store_true",
        help="Ansible's --ask-vault-pass: ask for the vault password",
    ),
)


def count(text: str) -> int:
    """An argparse type: a whole number >= 1 (forks, sets to keep, days)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


def ansible_arguments(short_forks: bool = True) -> tuple[Argument, ...]:
    """Ansible's pass-through arguments; ``-f`` is Ansible's --forks except where the
    command's own -f/--flag came first (apply, plan)."""
    forks = ("--forks", "-f") if short_forks else ("--forks",)
    return (
        *ANSIBLE_ARGUMENTS,
        argument(
            *forks,
            type=count,
            metavar="FORKS",
            help="Ansible's -f/--forks: how many hosts at once"
            + ("" if short_forks else " (-f is --flag here)"),
        ),
    )


def ansible_options(args: argparse.Namespace) -> AnsibleOptions:
    """The pass-through options the command line gave (unset: the team's configuration)."""
    return AnsibleOptions(
        user=getattr(args, "user", None),
        private_key=getattr(args, "private_key", None),
        verbosity=min(int(getattr(args, "verbosity", 0) or 0), 4),
        ssh_common_args=getattr(args, "ssh_common_args", None),
        forks=getattr(args, "forks", None),
        vault_ids=tuple(getattr(args, "vault_ids", None) or ()),
        vault_password_files=tuple(getattr(args, "vault_password_files", None) or ()),
        ask_vault_pass=bool(getattr(args, "ask_vault_pass", False)),
    )
