"""Find and read inventories, keeping where each variable came from.

rollback-ops reads YAML inventories itself (the hosts file plus ``group_vars/`` and
``host_vars/`` beside it, with Ansible's precedence) so that a problem can be reported
with the file and the key *before* any host is touched. Ansible then runs on the same path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollback_ops import paths
from rollback_ops.exceptions import ConfigError

NAMED = {
    "staging": "staging",
    "prod": "production",
    "production": "production",
}
HOSTS_FILES = ("hosts.yml", "hosts.yaml", "inventory.yml", "inventory.yaml")


class _Loader(yaml.SafeLoader):
    """Safe YAML that keeps ``!vault`` values as opaque strings (Ansible decrypts them)."""


def _vault(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return "<vault>" + str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("!vault", _vault)
_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


@dataclass
class Host:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Path] = field(default_factory=dict)

    def origin(self, key: str) -> str:
        where = self.origins.get(key)
        return str(where) if where else "inventory"


@dataclass
class Inventory:
    name: str
    path: Path
    hosts: dict[str, Host]

    @property
    def environments(self) -> set[str]:
        return {str(h.vars.get("rollback_environment", "")) for h in self.hosts.values()}

    @property
    def is_production(self) -> bool:
        return "production" in self.environments


def resolve(name_or_path: str, state_dir: Path) -> tuple[str, Path]:
    """Map ``staging|prod|production|lab|local|PATH`` to (display name, path)."""
    if name_or_path in NAMED:
        return NAMED[name_or_path], paths.inventories_dir() / NAMED[name_or_path]
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
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join([*NAMED, "lab", "local"])
        raise ConfigError(
            f"inventory {name_or_path!r} is neither a file nor a directory nor one of: {known}"
        )
    return str(path), path.resolve()


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _vars_file(directory: Path, name: str) -> list[Path]:
    """group_vars/NAME.yml, NAME.yaml, NAME (file) or NAME/ (a directory of YAML files)."""
    found = [directory / f"{name}{ext}" for ext in (".yml", ".yaml", "")]
    files = [p for p in found if p.is_file()]
    folder = directory / name
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml"))
    return files


@dataclass
class _Group:
    name: str
    depth: int
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)


def load(name_or_path: str, state_dir: Path) -> Inventory:
    name, path = resolve(name_or_path, state_dir)
    if path.is_dir():
        hosts_file = next((path / f for f in HOSTS_FILES if (path / f).is_file()), None)
        if hosts_file is None:
            raise ConfigError(f"{path}: no {' or '.join(HOSTS_FILES)} in the inventory directory")
        base = path
    else:
        hosts_file, base = path, path.parent
    if hosts_file.suffix not in (".yml", ".yaml"):
        raise ConfigError(
            f"{hosts_file}: rollback-ops reads YAML inventories (.yml); convert INI ones"
        )
    data = _read_yaml(hosts_file)
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{hosts_file}: an inventory must be a mapping of groups (e.g. all: hosts: ...)"
        )
    groups: dict[str, _Group] = {}
    for group_name, body in data.items():
        _walk(hosts_file, str(group_name), body, None, 0, groups)
    groups.setdefault("all", _Group("all", 0))
    hosts: dict[str, Host] = {}
    ordered = sorted(groups.values(), key=lambda g: (g.depth, g.name != "all", g.name))
    members = {g.name: _members(g.name, groups) for g in ordered}
    all_hosts = sorted({h for g in groups.values() for h in g.hosts})
    members["all"] = set(all_hosts)
    if not all_hosts:
        raise ConfigError(f"{hosts_file}: the inventory lists no hosts")
    for host_name in all_hosts:
        host = Host(host_name)
        # Ansible's order: inventory-file group vars, group_vars/all, group_vars/<group>,
        # inventory-file host vars, host_vars/<host>; later replaces earlier key by key.
        for g in ordered:
            if host_name in members[g.name]:
                _merge(host, g.vars, hosts_file)
        for g in ordered:
            if host_name in members[g.name]:
                for f in _vars_file(base / "group_vars", g.name):
                    _merge(host, _mapping(f), f)
        for g in ordered:
            if host_name in g.hosts:
                _merge(host, g.hosts[host_name], hosts_file)
        for f in _vars_file(base / "host_vars", host_name):
            _merge(host, _mapping(f), f)
        hosts[host_name] = host
    return Inventory(name=name, path=path, hosts=hosts)


def _mapping(path: Path) -> dict[str, Any]:
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a vars file must be a mapping of variable names to values")
    return data


def _merge(host: Host, values: dict[str, Any], origin: Path) -> None:
    for key, value in values.items():
        host.vars[str(key)] = value
        host.origins[str(key)] = origin


def _members(name: str, groups: dict[str, _Group]) -> set[str]:
    found = set(groups[name].hosts)
    for child in groups.values():
        if name in child.parents:
            found |= _members(child.name, groups)
    return found


def _walk(
    origin: Path, name: str, body: Any, parent: str | None, depth: int, groups: dict[str, _Group]
) -> None:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ConfigError(f"{origin}: group {name!r} must be a mapping with hosts/vars/children")
    unknown = set(body) - {"hosts", "vars", "children"}
    if unknown:
        raise ConfigError(
            f"{origin}: group {name!r} has unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            "(allowed: hosts, vars, children)"
        )
    group = groups.setdefault(name, _Group(name, depth))
    group.depth = max(group.depth, depth)
    if parent:
        group.parents.add(parent)
    for key, kind in (("hosts", dict), ("vars", dict), ("children", dict)):
        if body.get(key) is not None and not isinstance(body[key], kind):
            raise ConfigError(f"{origin}: {name}.{key} must be a mapping")
    for host_name, host_vars in (body.get("hosts") or {}).items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise ConfigError(
                f"{origin}: host {host_name!r} in group {name!r}: vars must be a mapping"
            )
        group.hosts.setdefault(str(host_name), {}).update(host_vars or {})
    group.vars.update(body.get("vars") or {})
    for child, child_body in (body.get("children") or {}).items():
        _walk(origin, str(child), child_body, name, depth + 1, groups)
