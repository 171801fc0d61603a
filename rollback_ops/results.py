"""Typed results of a run: per host, per step; and the JSON receipt made from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepStatus = Literal["ok", "changed", "failed", "unreachable", "skipped"]
HostStatus = Literal["ok", "changed", "failed", "unreachable"]

SKIP_PREFIX = "Skipped: "  # a debug task whose msg starts so explains a step that did not run


@dataclass
class StepEvent:
    """One host finished one step (an Ansible task): what the progress display gets."""

    host: str
    step: str
    status: StepStatus
    duration: float = 0.0
    message: str = ""
    diff: str = ""
    action: str = ""


@dataclass
class FlagChange:
    key: str
    before: str | None
    after: str
    changed: bool


@dataclass
class HostResult:
    name: str
    status: HostStatus = "ok"
    steps: list[StepEvent] = field(default_factory=list)
    flags: list[FlagChange] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    failed_step: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)
    # code level: current and target code, the record of the code before (snapshot), images
    code: dict[str, Any] = field(default_factory=dict)
    # full level and backup jobs: backup set chosen, forensic set, restore, data loss, sets
    data: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0

    @property
    def changed(self) -> int:
        return sum(1 for s in self.steps if s.status == "changed")

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        d["duration"] = round(self.duration, 3)
        for key in ("started", "ended"):
            d.pop(key)
        return d


@dataclass
class RunResult:
    run_id: str
    level: str
    inventory: str
    inventory_path: str
    check: bool
    hosts: dict[str, HostResult]
    started: str
    duration: float
    rc: int
    run_dir: str
    warnings: list[str] = field(default_factory=list)
    authorization: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, str] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    resumes: str = ""

    @property
    def failed_hosts(self) -> list[HostResult]:
        return [h for _, h in sorted(self.hosts.items()) if h.status in ("failed", "unreachable")]

    @property
    def ok(self) -> bool:
        return self.rc == 0 and all(h.status in ("ok", "changed") for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def receipt(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "level": self.level,
            "inventory": self.inventory,
            "inventory_path": self.inventory_path,
            "check": self.check,
            "authorization": self.authorization,
            "apps": self.apps,
            "request": self.request,
            "resumes": self.resumes,
            "started": self.started,
            "duration": round(self.duration, 3),
            "result": "ok" if self.ok else "failed",
            "exit_status": self.exit_status,
            "changed": self.changed,
            "hosts": {name: h.as_dict() for name, h in sorted(self.hosts.items())},
            "backups": [
                {"host": name, "path": b}
                for name, h in sorted(self.hosts.items())
                for b in h.backups
            ],
            "warnings": self.warnings,
            "notifications": self.notifications,
            "run_dir": self.run_dir,
        }
