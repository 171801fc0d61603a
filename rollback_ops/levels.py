"""The rollback levels: what each one asks of the app, its playbook, and its plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollback_ops.appspec import ENV_KEY, AppSpec
from rollback_ops.exceptions import ConfigError


@dataclass(frozen=True)
class Request:
    """What the operator asked for, independent of any host."""

    level: str
    flags: dict[str, str] = field(default_factory=dict)
    allow_new_flags: bool = False
    verify: bool = True
    unlock_run: str = ""  # unlock: clear only this run's host locks


@dataclass(frozen=True)
class Level:
    name: str
    playbook: str
    summary: str
    seeds: str
    values: Callable[[AppSpec, Request], dict[str, str]] | None = None

    def check(self, app: AppSpec, request: Request) -> list[str]:
        """Problems that make this level impossible for this host's app."""
        problems: list[str] = []
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
        values = self.values(app, request) if self.values else {}
        steps: list[str] = []
        if values:
            settings = ", ".join(f"{k}={v}" for k, v in values.items())
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
        return {
            "rollback_level": self.name,
            "rollback_flags": dict(request.flags),
            "rollback_allow_new_flags": request.allow_new_flags,
            "rollback_verify": request.verify,
            "rollback_unlock_run_id": request.unlock_run,
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
VERIFY = Level("verify", "verify", "only the checks", "seed 003 validation after rollback")
UNLOCK = Level("unlock", "unlock", "clear the host locks a dead run left", "")
PLANNED = ("config", "code", "full")


def get(name: str) -> Level:
    """A rollback level by name, or one of the runs that are not levels (verify, unlock)."""
    if name in LEVELS:
        return LEVELS[name]
    if name in (VERIFY.name, UNLOCK.name):
        return VERIFY if name == VERIFY.name else UNLOCK
    if name in PLANNED:
        raise ConfigError(f"level {name!r} is not built yet; available: {', '.join(LEVELS)}")
    raise ConfigError(f"unknown level {name!r}; choose one of {', '.join(LEVELS)}")


def parse_flags(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings from the command line to a dict, refusing malformed ones."""
    flags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--flag {item!r}: expected KEY=VALUE")
        if not ENV_KEY.match(key):
            raise ConfigError(f"--flag {item!r}: {key!r} is not a valid env key")
        if "\n" in value or "\r" in value:
            raise ConfigError(f"--flag {key}: values cannot contain newlines")
        if key in flags and flags[key] != value:
            raise ConfigError(f"--flag {key} given twice with different values")
        flags[key] = value
    return flags
