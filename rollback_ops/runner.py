"""The adapter to ansible-runner: one private data dir per run, events to typed results.

``ansible_runner.run`` does not raise when a playbook fails; this module reads its status,
rc and events and turns per-host failures and unreachables into :class:`HostResult`s.
Only a run that could not start at all (bad playbook, missing ansible-playbook) raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from rollback_ops import events, paths
from rollback_ops.exceptions import ConfigError, RunnerError
from rollback_ops.results import HostResult
from rollback_ops.text import short

EventSink = events.EventSink
STOP_FILE_ENV = "ROLLBACK_OPS_STOP_FILE"  # watched by plugins/strategy/rollback_linear.py


@dataclass(frozen=True)
class AnsibleOptions:
    """Ansible's own command-line options, passed through with Ansible's meaning.

    Unset options leave the team's configuration (ansible.cfg, inventory) in charge.
    """

    user: str | None = None  # -u/--user
    private_key: str | None = None  # --private-key
    verbosity: int = 0  # -v (1) .. -vvvv (4)
    ssh_common_args: str | None = None  # --ssh-common-args
    forks: int | None = None  # -f/--forks
    vault_ids: tuple[str, ...] = ()  # --vault-id [label@]source, repeatable
    vault_password_files: tuple[str, ...] = ()  # --vault-password-file, repeatable
    ask_vault_pass: bool = False  # --ask-vault-pass: asked once, on the controller

    def __post_init__(self) -> None:
        # ansible-playbook templates some of its own options (-u '{{ lookup(...) }}' runs the
        # lookup): a value a person typed must reach the host literally, so a template
        # marker is refused here, before anything runs
        named: dict[str, list[str | None]] = {
            "--user": [self.user],
            "--private-key": [self.private_key],
            "--ssh-common-args": [self.ssh_common_args],
            "--vault-id": list(self.vault_ids),
            "--vault-password-file": list(self.vault_password_files),
        }
        for option, values in named.items():
            for value in values:
                if value is not None and not value.strip():
                    raise ConfigError(f"{option}: a blank value")
                if value and any(mark in value for mark in ("{{", "{%", "{#")):
                    raise ConfigError(
                        f"{option}: {short(value)} contains a template marker "
                        "({{, {% or {#): values are passed literally, never templated"
                    )
                if value and "\0" in value:
                    raise ConfigError(f"{option}: contains a NUL byte")
        if self.forks is not None and not 1 <= self.forks <= 500:
            raise ConfigError(f"--forks {self.forks}: must be between 1 and 500")
        if not 0 <= self.verbosity <= 6:
            raise ConfigError(f"-v: at most 6 (-vvvvvv), not {self.verbosity}")


_VAULT_PASSWORD: list[str] = []  # asked once per process (--ask-vault-pass)


def vault_password(options: AnsibleOptions) -> str | None:
    """The vault password typed for --ask-vault-pass: asked once, on the controller's
    terminal, then given to ansible-core here and to the playbook's prompt by ansible-runner."""
    if not options.ask_vault_pass:
        return None
    if not _VAULT_PASSWORD:
        import getpass

        try:
            _VAULT_PASSWORD.append(getpass.getpass("Vault password: "))
        except (EOFError, OSError) as exc:
            raise RunnerError(f"--ask-vault-pass: cannot read the password: {exc}") from None
    return _VAULT_PASSWORD[0]


def option_args(options: AnsibleOptions) -> list[str]:
    """ansible-playbook's own arguments for the pass-through options (forks and verbosity go
    to ansible-runner's parameters of the same meaning)."""
    args: list[str] = []
    if options.user:
        args += ["--user", options.user]
    if options.private_key:
        args += ["--private-key", options.private_key]
    if options.ssh_common_args:
        args += ["--ssh-common-args", options.ssh_common_args]
    for vault_id in options.vault_ids:
        args += ["--vault-id", vault_id]
    for password_file in options.vault_password_files:
        args += ["--vault-password-file", password_file]
    if options.ask_vault_pass:
        args.append("--ask-vault-pass")
    return args


@dataclass
class PlaybookRun:
    playbook: Path
    inventory: Path | Sequence[Path]  # one source, or several (-i repeated)
    run_dir: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    check: bool = False
    diff: bool = False
    limit: str | None = None
    options: AnsibleOptions = field(default_factory=AnsibleOptions)


@dataclass
class RunnerOutcome:
    status: str
    rc: int
    hosts: dict[str, HostResult]
    stdout_tail: str = ""
    failures: set[str] = field(default_factory=set)  # hosts the play's stats count as failed
    finished: bool = False  # the play reached its end (its stats were reported)


COLLECTION = paths.COLLECTION
STRATEGY = f"{COLLECTION}.rollback_linear"
# connection and speed settings rollback-ops picks only where the team's configuration leaves
# Ansible's default: (setting, plugin type, plugin name, environment variable, value)
FILL_DEFAULTS: tuple[tuple[str, str | None, str | None, str, str], ...] = (
    ("pipelining", "connection", "ssh", "ANSIBLE_PIPELINING", "True"),
    (
        "ssh_args",
        "connection",
        "ssh",
        "ANSIBLE_SSH_ARGS",
        "-o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15",
    ),
    ("DEFAULT_FORKS", None, None, "ANSIBLE_FORKS", "20"),
    ("INTERPRETER_PYTHON", None, None, "ANSIBLE_PYTHON_INTERPRETER", "auto_silent"),
    ("DEFAULT_GATHERING", None, None, "ANSIBLE_GATHERING", "explicit"),
    ("result_format", "callback", "default", "ANSIBLE_CALLBACK_RESULT_FORMAT", "yaml"),
)


def controller_env() -> dict[str, str]:
    """What this process's ansible-core needs before it first reads its configuration.

    Only strictness rollback-ops insists on: an inventory source that does not parse is an
    error, never an empty inventory. Everything else is the team's configuration, found the
    way Ansible finds it ($ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg, /etc/ansible).
    """
    return {
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    }


def team_config() -> Path | None:
    """The ansible.cfg Ansible would read if run from here, or None (Ansible's defaults)."""
    from ansible.config.manager import find_ini_config_file

    found = find_ini_config_file()
    return Path(found).resolve() if found else None


def _left_default(setting: str, plugin_type: str | None, plugin_name: str | None) -> bool:
    from ansible import constants as C

    try:
        if plugin_type and plugin_name:
            from ansible.plugins.loader import callback_loader, connection_loader

            loader = connection_loader if plugin_type == "connection" else callback_loader
            loader.get(plugin_name, class_only=True)  # registers the plugin's settings
            _, origin = C.config.get_config_value_and_origin(
                setting, plugin_type=plugin_type, plugin_name=plugin_name
            )
        else:
            _, origin = C.config.get_config_value_and_origin(setting)
    except Exception:  # an unknown setting in this ansible-core: leave it alone
        return False
    return bool(origin == "default")


def collections_dir(run_dir: Path) -> Path:
    """A collections path holding this package's collection, for one run.

    ``<run>/collections/ansible_collections/rollback_ops/rollback`` links to the content
    shipped with rollback-ops (the repository root in a checkout, ``_ansible`` in a wheel).
    """
    base = run_dir / "collections"
    link = base / "ansible_collections" / Path(*COLLECTION.split("."))
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(paths.ansible_root(), target_is_directory=True)
    return base


def ansible_env(run_dir: Path) -> dict[str, str]:
    """Environment for ansible-playbook: the team's configuration, plus what rollback-ops needs.

    The team's ansible.cfg is named explicitly (ansible-runner starts the playbook in another
    directory, where Ansible would not find ``./ansible.cfg``). rollback-ops adds its
    collection in front of the team's collections path, its interruptible strategy, and, only
    where the team's configuration leaves Ansible's default, pipelining, a persistent SSH
    master and more forks.
    """
    from ansible import constants as C

    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    env = {
        "PATH": bin_dir + os.pathsep + path if bin_dir not in path.split(os.pathsep) else path,
        **controller_env(),
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
            [str(collections_dir(run_dir)), *map(str, C.COLLECTIONS_PATHS or [])]
        ),
        "ANSIBLE_STRATEGY": STRATEGY,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    config = team_config()
    if config is not None:
        env["ANSIBLE_CONFIG"] = str(config)
    for setting, plugin_type, plugin_name, variable, value in FILL_DEFAULTS:
        if variable not in os.environ and _left_default(setting, plugin_type, plugin_name):
            env[variable] = value
    return env


def ansible_playbook_binary() -> str:
    """Where ansible-playbook is; ansible-runner finds it through the PATH we give it."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise RunnerError(
            "ansible-playbook not found (is ansible-core installed in this environment?)"
        )
    return found


def write_extravars(path: Path, extravars: dict[str, Any]) -> Path:
    """Write the run's extra variables for ``-e @path``, every string marked unsafe.

    Everything rollback-ops passes comes from a person, the environment or the receipt of a
    run (flags, reasons, names, refs): Ansible must use it literally, never as a template
    (``{{ lookup('pipe', ...) }}`` in a flag would otherwise run on the controller). The file
    is private to the run (0600), and keeps the values out of argv.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        # one !unsafe on the document's root mapping marks everything in it (each scalar keeps
        # its own YAML type: a tag on a quoted scalar would make ansible-core re-resolve
        # 'false' as a boolean)
        handle.write("--- !unsafe\n")
        # through JSON first: plain types only (str subclasses such as ansible-core's tagged
        # names would not serialize)
        yaml.safe_dump(json.loads(json.dumps(extravars)), handle, sort_keys=True)
    return path


class Interruption:
    """Ctrl-C and SIGTERM during a run: the first asks the playbook to stop between two tasks
    (the running task finishes, the ``always`` sections run: the host locks are released);
    the second stops it at once (ansible-runner kills the playbook's process group).

    The playbook runs in its own session (ansible-runner spawns it on a pty), so a terminal's
    Ctrl-C reaches only rollback-ops, which relays it through ``stop_file``; the
    ``rollback_linear`` strategy watches that file between tasks.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop_file: Path, notice: Callable[[str], None] | None = None):
        self.stop_file = stop_file
        self.notice = notice
        self.signum: int | None = None
        self.hard = False
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            self.stop_file.touch()
            self._say(
                f"{signal.Signals(signum).name}: stopping after the running step on each host; "
                "the host locks are released. Press Ctrl-C again to stop at once (locks stay)."
            )
        elif not self.hard:
            self.hard = True
            self._say(f"{signal.Signals(signum).name} again: stopping at once")

    def _say(self, text: str) -> None:
        if self.notice:
            with contextlib.suppress(Exception):
                self.notice(text)

    def cancelled(self) -> bool:
        """ansible-runner's cancel callback: kill the playbook only on the second signal."""
        return self.hard


def run_playbook(
    spec: PlaybookRun,
    sink: EventSink | None = None,
    interruption: Interruption | None = None,
    secret_env: dict[str, str] | None = None,
    on_start: events.TaskStartSink | None = None,
) -> RunnerOutcome:
    collector = events.EventCollector(sink, on_start)
    cmdline = option_args(spec.options)
    if spec.check:
        cmdline.append("--check")
    if spec.diff:
        cmdline.append("--diff")
    password = vault_password(spec.options)
    sources = [spec.inventory] if isinstance(spec.inventory, Path) else list(spec.inventory)
    spec.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ansible_playbook_binary()  # a clear error now rather than rc 127 later
    ident = "ansible"
    env = {**ansible_env(spec.run_dir), **(secret_env or {})}
    if interruption is not None:
        env[STOP_FILE_ENV] = str(interruption.stop_file)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(spec.run_dir),
            ident=ident,
            playbook=str(spec.playbook),
            inventory=[str(source) for source in sources],
            extravars=str(write_extravars(spec.run_dir / "extravars.yml", spec.extravars)),
            cmdline=" ".join(shlex.quote(arg) for arg in cmdline) or None,
            limit=spec.limit,
            forks=spec.options.forks,
            verbosity=spec.options.verbosity or None,
            # the answer to ansible-playbook's own prompt: never on argv or in a file
            passwords={r"^Vault password[^:]*:\s*$": password} if password is not None else None,
            envvars=env,
            project_dir=str(spec.playbook.parent),
            event_handler=collector,
            cancel_callback=interruption.cancelled if interruption else lambda: False,
            settings={"pexpect_timeout": 0.25},  # how often a second Ctrl-C is looked at
            quiet=True,
            suppress_env_files=True,
            rotate_artifacts=0,
        )
    except Exception as exc:  # setup problems; mid-run only when the controller fails (disk)
        if collector.hosts:
            changed = sorted(n for n, h in collector.hosts.items() if h.changed) or ["none seen"]
            raise RunnerError(
                f"ansible-runner failed during {spec.playbook.name}: {exc}; hosts it had "
                f"changed: {', '.join(changed)}; run `rollback-ops verify` and the same command "
                "again once the cause is fixed"
            ) from exc
        raise RunnerError(f"ansible-runner could not start {spec.playbook.name}: {exc}") from exc
    finally:
        events.scrub_artifacts(spec.run_dir / "artifacts" / ident)
    rc = int(runner.rc if runner.rc is not None else 1)
    tail = ""
    stdout = spec.run_dir / "artifacts" / ident / "stdout"
    if stdout.exists():
        tail = stdout.read_text(errors="replace")[-3000:]
    interrupted = bool(interruption and interruption.signum)
    if (
        rc != 0
        and not interrupted
        and not any(h.status in ("failed", "unreachable") for h in collector.hosts.values())
    ):
        if rc == 127:
            raise RunnerError("ansible-playbook not found on PATH (rc 127)")
        raise RunnerError(
            f"{spec.playbook.name} did not run (rc {rc}, {runner.status}):\n{tail.strip()}"
        )
    stats = runner.stats if isinstance(runner.stats, dict) else {}
    failures = set(stats.get("failures") or {}) | set(stats.get("dark") or {})
    return RunnerOutcome(runner.status, rc, collector.hosts, tail, failures, bool(stats))
