"""The inventory's description of an app (``rollback_app``) and its validation.

Every problem is reported with the file it came from and the key, all at once, before any
host is touched. The roles' ``meta/argument_specs.yml`` check the same again on the host side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Host, Inventory

ENVIRONMENTS = ("production", "staging", "lab", "local")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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

    def env_key(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not ENV_KEY.match(value):
            self.error(path, f"{value!r} is not a valid env key (letters, digits, _)")
            return ""
        return value

    def integer(self, data: dict[str, Any], key: str, path: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(path, f"must be a whole number >= 0, not {value!r}")
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
}


def parse_app(host: Host) -> tuple[AppSpec | None, list[str]]:
    """Validate one host's ``rollback_app``; return the spec and the problems found."""
    check = _Checker(host, "rollback_app")
    env = host.vars.get("rollback_environment")
    if env not in ENVIRONMENTS:
        check.errors.append(
            f"{host.origin('rollback_environment')}: rollback_environment: "
            f"{env!r} is not one of {', '.join(ENVIRONMENTS)} (host {host.name})"
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
        check.error("env_file", f"must be an absolute path, not {env_file!r}")
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
                emergency[key] = str(value).lower() if isinstance(value, bool) else str(value)
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
    pattern = check.string(log_raw, "error_pattern", "log.error_pattern")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            check.error("log.error_pattern", f"not a valid regular expression: {exc}")
    log = LogSpec(path=check.string(log_raw, "path", "log.path"), error_pattern=pattern)
    off = raw.get("master_switch_off", "false")
    spec = AppSpec(
        name=name,
        env_file=env_file,
        master_switch=master_switch,
        master_switch_off=str(off).lower() if isinstance(off, bool) else str(off),
        flags=tuple(f for f in flags if f),
        emergency=emergency,
        units=tuple(units_raw),
        health=health,
        log=log,
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
