"""Inventories as ansible-core itself reads them.

The guard, the validation and the plan must decide on exactly the hosts and variables that
``ansible-playbook`` will use, so this module does not parse inventories: it asks
ansible-core's ``InventoryManager`` and ``VariableManager`` (every inventory plugin, INI,
YAML, JSON and ``group_vars/<group>/`` files, Ansible's precedence), with the same
``ansible.cfg`` the playbooks run with. What rollback-ops adds is the origin of each value
(the file that set it, from ansible-core's own origin tags, best effort) for its messages.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rollback_ops import paths
from rollback_ops.exceptions import ConfigError
from rollback_ops.runner import AnsibleOptions, vault_password
from rollback_ops.text import short

NAMED = {
    "staging": "staging",
    "prod": "production",
    "production": "production",
}
# variables whose values are resolved (templated) on the controller exactly as Ansible would,
# because the guard, the validation or the plan decide on them
RESOLVED = (
    "rollback_environment",
    "rollback_app",
    "rollback_notify",
    "rollback_thresholds",
    "rollback_approvers",
    "rollback_approval_max_age",
    "ansible_host",
    "ansible_port",
    "ansible_connection",
    "ansible_user",
)
VAULT_MARK = "<vault>"  # a vaulted value: never decrypted on the controller, only by the play


@dataclass
class Host:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, key: str) -> str:
        return self.origins.get(key) or "inventory"

    @property
    def address(self) -> str:
        """Where Ansible connects: ansible_host (or the name), with the port when set."""
        address = str(self.vars.get("ansible_host") or self.name)
        port = self.vars.get("ansible_port")
        return f"{address}:{port}" if port else address


@dataclass
class Inventory:
    name: str
    path: Path  # the first source
    hosts: dict[str, Host]
    _manager: Any = field(default=None, repr=False)
    sources: tuple[Path, ...] = ()  # every source, in the order given (-i repeated)

    def __post_init__(self) -> None:
        if not self.sources:
            self.sources = (self.path,)

    @property
    def environments(self) -> set[str]:
        return {str(h.vars.get("rollback_environment", "")) for h in self.hosts.values()}

    @property
    def is_production(self) -> bool:
        return "production" in self.environments

    def select(self, limit: str | None) -> list[str]:
        """Hosts matching an Ansible ``--limit`` pattern (names, groups, ``!``, ``&``, ``*``).

        Stricter than ansible-playbook where it would quietly widen or narrow a rollback: a
        blank pattern, an empty term (``web1,``), an unclosed subscript (``web[``) and a term
        that matches no host are errors, not warnings.
        """
        names = sorted(self.hosts)
        if limit is None:
            return names
        terms = [t.lstrip("!&") for t in re.split(r"[,:](?![^\[]*\])", limit)]
        if not limit.strip() or not all(t.strip() for t in terms):
            raise ConfigError(f"--limit {short(limit)}: an empty pattern (would match every host)")
        for term in terms:
            if "[" in term and not re.search(r"\[-?\d*(:-?\d*)?\]$", term):
                raise ConfigError(f"--limit {short(limit)}: {short(term)} is not a valid subscript")
        if self._manager is None:  # an inventory built by hand (tests)
            wanted = {p.strip() for p in limit.split(",")}
            chosen = [h for h in names if h in wanted]
        else:
            from ansible.errors import AnsibleError

            with _collected_warnings() as problems:
                try:
                    found = self._manager.get_hosts(limit)
                except AnsibleError as exc:
                    raise ConfigError(f"--limit {short(limit)}: {_first_line(exc)}") from None
            unmatched = [p for p in problems if "Could not match supplied host pattern" in p]
            if unmatched:
                raise ConfigError(
                    f"--limit {short(limit)}: {short(unmatched[0].split(': ', 1)[-1])} matches "
                    f"no host of inventory {self.name} ({', '.join(names)})"
                )
            chosen = sorted({str(h.name) for h in found} & set(names))
        if not chosen:
            raise ConfigError(
                f"--limit {short(limit)} matches no host in inventory {self.name} "
                f"({', '.join(names)})"
            )
        return chosen


EXAMPLE = "example:"  # the examples shipped with rollback-ops, only by this explicit name
PROJECT_INVENTORIES_ENV = "ROLLBACK_OPS_INVENTORIES"  # more directories holding named ones


def project_dirs() -> list[Path]:
    """Where a named inventory is looked for: the team's ./inventories, then the directories
    listed in $ROLLBACK_OPS_INVENTORIES (os.pathsep-separated)."""
    listed = os.environ.get(PROJECT_INVENTORIES_ENV, "")
    return [Path("inventories"), *(Path(d).expanduser() for d in listed.split(os.pathsep) if d)]


def resolve(name_or_path: str, state_dir: Path) -> tuple[str, Path]:
    """Map an inventory argument to (display name, path).

    A path that exists always wins: ``-i prod`` in a directory holding ``./prod`` is that
    directory. A name then resolves inside the team's project (``./inventories/<name>``, with
    ``prod`` and ``production`` standing for each other, then $ROLLBACK_OPS_INVENTORIES),
    never silently to the examples shipped with rollback-ops: those are reachable only as
    ``example:staging`` / ``example:production`` (or by their path). ``lab`` and ``local`` are
    the test lab's and the demo's inventories in the state directory.
    """
    given = Path(name_or_path).expanduser()
    if name_or_path and given.exists():
        return str(given), given.resolve()
    if name_or_path.startswith(EXAMPLE):
        example = NAMED.get(name_or_path.removeprefix(EXAMPLE))
        if example is None:
            raise ConfigError(
                f"inventory {short(name_or_path)}: no such example "
                f"(examples: {EXAMPLE}staging, {EXAMPLE}production)"
            )
        return name_or_path, paths.inventories_dir() / example
    if name_or_path == "lab":
        path = state_dir / "labs" / "lab" / "inventory.yml"
        if not path.exists():
            raise ConfigError(f"no lab inventory at {path}: run `rollback-ops lab up` first")
        return "lab", path
    if name_or_path == "local":
        path = state_dir / "demo" / "inventory.yml"
        if not path.exists():
            raise ConfigError(f"no local inventory at {path}: run `rollback-ops demo` first")
        return "local", path
    names = dict.fromkeys([name_or_path, NAMED.get(name_or_path, name_or_path)])
    looked = []
    if name_or_path and "/" not in name_or_path and "\0" not in name_or_path:
        for base in project_dirs():
            for name in names:
                candidate = base / name
                looked.append(str(candidate))
                if candidate.exists():
                    return name_or_path, candidate.resolve()
    where = f" nor {', '.join(looked)}" if looked else ""
    raise ConfigError(
        f"inventory {short(name_or_path)}: no such file or directory{where} "
        f"(lab, local, and the shipped examples {EXAMPLE}staging and {EXAMPLE}production "
        "are also accepted)"
    )


def configure_ansible() -> None:
    """Make this process's ansible-core read the configuration the playbooks run with, and
    find plugins by collection name as ansible-playbook does (an inventory config naming
    ``plugin: ansible.builtin.constructed`` or an installed collection's plugin).

    ansible-core reads its configuration once, when ``ansible.constants`` is first imported:
    this must run before that, and sets the same variables ansible-runner gives the playbook.
    """
    from rollback_ops.runner import controller_env

    for key, value in controller_env().items():
        os.environ[key] = value
    load_collections()


@lru_cache(maxsize=1)
def load_collections() -> None:
    """Put this package's collection on ansible-core's collections path, as ansible-playbook
    gets it (``runner.collections_dir``), once per process."""
    from ansible import constants as C
    from ansible.utils.collection_loader import AnsibleCollectionConfig
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    from rollback_ops.runner import collections_dir

    run_dir = Path(tempfile.mkdtemp(prefix="rollback-ops-plan-"))
    atexit.register(shutil.rmtree, run_dir, True)
    ours = str(collections_dir(run_dir))
    finder = AnsibleCollectionConfig.collection_finder
    if finder is None:
        try:
            from ansible.plugins.loader import init_plugin_loader
        except ImportError:  # ansible-core before 2.15
            _AnsibleCollectionFinder(paths=[ours, *C.COLLECTIONS_PATHS])._install()
        else:
            init_plugin_loader([ours])
    else:  # configured already (by another part of this process): ours goes first
        existing = [str(p) for p in getattr(finder, "_n_configured_paths", [])]
        _AnsibleCollectionFinder(
            paths=[ours, *existing], scan_sys_paths=C.COLLECTIONS_SCAN_SYS_PATH
        )._install()
    # ``ansible_collections`` packages imported before, as plain namespace packages from
    # sys.path (the tests import module_utils so), would hide the collections from the
    # finder: they are imported again, through it, when next needed
    for name in [n for n in sys.modules if n.split(".", 1)[0] == "ansible_collections"]:
        loader = getattr(sys.modules[name], "__loader__", None)
        if not type(loader).__module__.startswith("ansible.utils.collection_loader"):
            del sys.modules[name]


def load(
    sources: str | Sequence[str], state_dir: Path, options: AnsibleOptions | None = None
) -> Inventory:
    """The hosts and their variables, as ansible-playbook will see them with the same ``-i``
    sources (one or several, merged as Ansible merges them) and vault options."""
    options = options or AnsibleOptions()
    given = [sources] if isinstance(sources, str) else list(sources)
    if not given:
        raise ConfigError("no inventory given (--inventory NAME|PATH)")
    resolved = [resolve(source, state_dir) for source in given]
    name = ",".join(n for n, _ in resolved)
    found_paths = [p for _, p in resolved]
    path = found_paths[0]
    for source in found_paths:
        _refuse_alias_bombs(source)
    configure_ansible()
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    _vault_secrets(loader, options)
    _forget_vars_files()
    with _collected_warnings() as problems:
        try:
            manager = InventoryManager(loader=loader, sources=[str(p) for p in found_paths])
            variables = VariableManager(loader=loader, inventory=manager)
            found = sorted(manager.get_hosts("all"), key=lambda h: str(h.name))
            hosts = {str(h.name): _host(h, variables, loader) for h in found}
        except AnsibleError as exc:
            parse = [p for p in problems if p.startswith("Failed to parse")]
            raise ConfigError(f"inventory {name}: {_best(parse) or _first_line(exc)}") from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"inventory {name}: too deeply nested or too large to read") from None
    # what ansible-playbook would only warn about (a misspelt group key drops its hosts) is
    # refused here: a rollback must not run on an inventory read differently than it was meant
    skipped = [p for p in problems if p.startswith(SKIPPING)]
    if skipped:
        raise ConfigError(f"inventory {name}: " + "; ".join(short(p, 200) for p in skipped))
    if not hosts:
        raise ConfigError(f"inventory {name}: lists no hosts")
    return Inventory(name, path, hosts, manager, tuple(found_paths))


SKIPPING = ("Skipping unexpected key", "Skipping key")


@contextlib.contextmanager
def _collected_warnings() -> Iterator[list[str]]:
    """What ansible-core's inventory plugins warn about while loading, kept for the error
    message instead of printed (each parse failure as "Failed to parse ... with PLUGIN: why")."""
    from ansible.utils.display import Display

    display = Display()
    collected: list[str] = []

    def warning(msg: str, *args: Any, **kwargs: Any) -> None:
        collected.append(str(msg))

    def error_as_warning(msg: str, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        collected.append(f"{msg.rstrip('.')}: {_describe(exception)}")

    display.warning = warning
    display.error_as_warning = error_as_warning
    try:
        yield collected
    finally:
        del display.warning
        del display.error_as_warning


def _describe(exc: BaseException) -> str:
    """An ansible-core error as "FILE:LINE:COL: message", from its innermost explained cause."""
    where, message = "", ""
    while exc is not None:
        text = getattr(exc, "_original_message", None) or getattr(exc, "message", None)
        if text:
            message = str(text)
        obj: Any = getattr(exc, "obj", None)
        if getattr(obj, "path", None):
            where = str(obj.path)
            if getattr(obj, "line_num", None):
                where += f":{obj.line_num}:{getattr(obj, 'col_num', None) or 1}"
        exc = exc.__cause__  # type: ignore[assignment]
    message = short(message.splitlines()[0] if message else "unknown error", 300).strip("'\"")
    return f"{where}: {message}" if where else message


def _best(failures: list[str]) -> str:
    """Of the plugins' parse failures, the one of the plugin meant for the file's type."""
    for plugin in ("'auto' plugin", "'yaml' plugin", "'ini' plugin"):
        for failure in failures:
            if plugin in failure:
                return failure
    return failures[0] if failures else ""


MAX_EXPANDED_NODES = 1_000_000  # far beyond any real inventory; a billion-laughs file is not


def _refuse_alias_bombs(path: Path) -> None:
    """Refuse YAML whose aliases expand to an absurd size (a "billion laughs" file), before
    ansible-core builds it: its variable merging copies every expansion (minutes, gigabytes).

    Only the YAML node graph is composed (aliases stay shared), and its expanded size counted.
    """
    import yaml

    base = path if path.is_dir() else path.parent
    candidates = [path] if path.is_file() else []
    for sub in (base, base / "group_vars", base / "host_vars"):
        if sub.is_dir():
            candidates += [p for p in sorted(sub.rglob("*")) if p.is_file()]
    for candidate in candidates[:2000]:
        if candidate.name.startswith(".") or candidate.suffix not in ("", ".yml", ".yaml", ".json"):
            continue
        try:
            with candidate.open("rb") as handle:
                text = handle.read(16 << 20)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except (OSError, yaml.YAMLError, ValueError):
            continue  # ansible-core reports what it cannot read
        if node is not None and _expanded_size(node) > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{candidate}: its YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                "refusing to load it"
            )


def _expanded_size(root: Any) -> int:
    """How many nodes a YAML node graph has once every alias is expanded (memoized: a shared
    node is walked once; a node that contains itself counts as infinite)."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [item for pair in node.value for item in pair]
        return []

    infinite = 1 << 62
    sizes: dict[int, int] = {}
    pending: set[int] = set()  # nodes whose children are being counted (a cycle leads back)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # post-order without recursion (no RecursionError on deep files)
        node, expanded = stack.pop()
        if id(node) in sizes or (id(node) in pending and not expanded):
            continue
        kids = children(node)
        if expanded or not kids:
            pending.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes.get(id(k), infinite) for k in kids), infinite)
        else:
            pending.add(id(node))
            stack.append((node, True))
            stack += [(k, False) for k in kids if id(k) not in sizes and id(k) not in pending]
    return sizes[id(root)]


def _forget_vars_files() -> None:
    """ansible-core's host_group_vars plugin caches which vars files exist per process (one
    process per ansible-playbook run); a process that loads inventories again must not see
    the files as they were the first time."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith("host_group_vars"):
            for cache in ("FOUND", "NAK", "CANONICAL_PATHS"):
                with contextlib.suppress(AttributeError):
                    getattr(module, cache).clear()


def _vault_secrets(loader: Any, options: AnsibleOptions) -> None:
    """The vault secrets ansible-playbook will have: those ansible.cfg names
    (vault_identity_list, vault_password_file), --vault-id, --vault-password-file, and the
    password typed once for --ask-vault-pass."""
    from ansible import constants as C
    from ansible.cli import CLI

    ids = [*(C.DEFAULT_VAULT_IDENTITY_LIST or []), *options.vault_ids]
    files = [C.DEFAULT_VAULT_PASSWORD_FILE] if C.DEFAULT_VAULT_PASSWORD_FILE else []
    files += list(options.vault_password_files)
    from ansible.errors import AnsibleError

    try:
        secrets = CLI.setup_vault_secrets(
            loader,
            vault_ids=ids,
            vault_password_files=files,
            auto_prompt=False,
            initialize_context=False,
        )
    except AnsibleError as exc:
        raise ConfigError(f"vault: {_first_line(exc)}") from None
    password = vault_password(options)
    if password is not None:
        from ansible.parsing.vault import VaultSecret

        secrets.append((C.DEFAULT_VAULT_IDENTITY, VaultSecret(password.encode())))
    loader.set_vault_secrets(secrets)
    try:
        from ansible.parsing.vault import VaultSecretsContext as context
    except ImportError:  # ansible-core before 2.19: secrets live on the loader only
        return
    # one context per process (ansible-core allows it to be set once); with no secret it is
    # still set up, so a vaulted value stays opaque (VAULT_MARK) instead of failing the load
    if context.current(optional=True) is None:
        context.initialize(context(secrets))


def _host(host: Any, variables: Any, loader: Any) -> Host:
    from ansible.errors import AnsibleError
    from ansible.template import Templar

    raw = variables.get_vars(host=host, include_hostvars=False)
    templar = Templar(loader=loader, variables=raw)
    out = Host(str(host.name))  # a plain str: ansible-core's names carry origin tags
    for tagged, value in raw.items():
        key = str(tagged)
        out.origins[key] = _origin(value)
        if key == "rollback_environment":
            # the guard decides on this one: resolved exactly, or refused
            try:
                out.vars[key] = _plain(templar.template(value))
            except AnsibleError as exc:
                raise ConfigError(
                    f"{out.origin(key)}: rollback_environment: cannot be resolved for host "
                    f"{host.name}: {_first_line(exc)}"
                ) from None
        elif key in RESOLVED:
            out.vars[key] = _resolved(value, templar)
        else:
            out.vars[key] = _plain(value)
    return out


def _resolved(value: Any, templar: Any) -> Any:
    """A value with its templates rendered as Ansible would; a vaulted leaf it cannot
    decrypt stays opaque; a template that needs run-time data (facts) stays as written."""
    from ansible.errors import AnsibleError

    if _is_vaulted(value):
        return VAULT_MARK  # never decrypted here: the playbook reads it where it needs it
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            try:
                return _plain(templar.template(value))
            except AnsibleError:
                return str(value)
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _resolved(v, templar) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolved(v, templar) for v in value]
    return value


def _plain(value: Any) -> Any:
    """ansible-core's tagged values as plain Python data."""
    if _is_vaulted(value):
        return VAULT_MARK
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _is_vaulted(value: Any) -> bool:
    try:
        from ansible.parsing.vault import EncryptedString
    except ImportError:  # ansible-core before 2.19
        from ansible.parsing.yaml.objects import (
            AnsibleVaultEncryptedUnicode as EncryptedString,
        )
    return isinstance(value, EncryptedString)


def _origin(value: Any) -> str:
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # ansible-core before 2.19 keeps no origins
        return ""
    tag = Origin.get_tag(value)
    if tag is None or not tag.path:
        return ""
    return str(tag.path)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return short(text.splitlines()[0] if text else type(exc).__name__, 300)
