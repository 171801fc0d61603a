"""Typed results of a run: per host, per step; and the JSON receipt made from them.

Steps carry two names. ``step`` is the display name ("preflight: Check the host can take the
rollback"), free text that may read better in the next release. ``id`` is the step's stable
identity for machines (JUnit, CI diffs, dashboards): the namespace the task is written in
(its role's short name, or for a task outside a role the stem of its tasks file: ``start``,
``flag``) and a slug of the task's own name, as written in the role, untemplated:
``preflight.check-the-host-can-take-the-rollback``. It stays the same across runs, hosts,
levels and releases as long as the task keeps its name in its role (a test holds every id of
the shipped roles and playbooks unique in its namespace). Ansible's own bookkeeping has no
name of ours: an argument-spec validation is ``<role>.arguments-<entry point>``, never the
"Validating arguments against arg spec ..." text. See :func:`rollback_ops.events.step_id`.

Exit statuses: :attr:`RunResult.exit_status` (0 ok, 1 failed, 3 refused, 130/143
interrupted), and with ``--detailed-exitcode`` in check mode :func:`detailed_exit_status`
(0 nothing would change, 2 changes pending, 1 failed; the others unchanged), as
``terraform plan -detailed-exitcode``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rollback_ops import jsonout

StepStatus = Literal["ok", "changed", "failed", "unreachable", "skipped"]
HostStatus = Literal["ok", "changed", "failed", "unreachable", "interrupted"]

SKIP_PREFIX = "Skipped: "  # a debug task whose msg starts so explains a step that did not run
INTERRUPTED = "interrupted: rollback-ops was asked to stop"  # plugins/strategy/rollback_linear


def is_preflight_step(step: str) -> bool:
    """A step of the read-only phase before any change: the playbooks name those tasks
    "Check ..." or "... preflight ..." (their failures are refusals: nothing was changed)."""
    task = step.split(": ", 1)[-1]
    return task.startswith("Check ") or "preflight" in task.lower()


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
    id: str = ""  # the stable step id (module docstring); "" where the event had no task


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
    # the host's rollback lock: "held" once preflight took it, "released" once given back
    lock: str = ""
    # who held the host's lock when preflight refused (run_id, operator, controller, since...)
    lock_holder: dict[str, Any] = field(default_factory=dict)
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
    undoes: str = ""  # the run this one undoes (rollback-ops undo)
    interrupted: str = ""  # SIGINT or SIGTERM when a signal stopped the run
    hard_stop: bool = False  # a second signal killed the playbook mid-task
    receipt_error: str = ""  # why the receipt could not be saved (it is printed instead)

    @property
    def failed_hosts(self) -> list[HostResult]:
        return [
            h
            for _, h in sorted(self.hosts.items())
            if h.status in ("failed", "unreachable", "interrupted")
        ]

    @property
    def ok(self) -> bool:
        return (
            self.rc == 0
            and not self.interrupted
            and all(h.status in ("ok", "changed") for h in self.hosts.values())
        )

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    @property
    def changed_hosts(self) -> list[str]:
        return sorted(name for name, h in self.hosts.items() if h.changed)

    @property
    def locks_left(self) -> list[str]:
        """Hosts whose rollback lock this run took and did not give back."""
        return sorted(name for name, h in self.hosts.items() if h.lock == "held")

    @property
    def refused(self) -> bool:
        """Preflight refused the run (a lock held, a check failed): nothing was changed."""
        failed = self.failed_hosts
        return (
            bool(failed)
            and not self.interrupted
            and self.changed == 0
            and all(h.status == "failed" and is_preflight_step(h.failed_step) for h in failed)
        )

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.ok:
            return "ok"
        return "refused" if self.refused else "failed"

    @property
    def exit_status(self) -> int:
        """0 ok; 1 failed on some host; 3 refused at preflight; 130/143 interrupted."""
        if self.interrupted:
            return {"SIGINT": 130, "SIGTERM": 143}.get(self.interrupted, 130)
        if self.ok:
            return 0
        return 3 if self.refused else 1

    def receipt(self) -> dict[str, Any]:
        """The run as a versioned JSON document (kind ``receipt``, schemas/receipt.schema.json)."""
        return jsonout.document("receipt", self.receipt_body())

    def receipt_body(self) -> dict[str, Any]:
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
            "undoes": self.undoes,
            "started": self.started,
            "duration": round(self.duration, 3),
            "result": self.outcome,
            "exit_status": self.exit_status,
            "interrupted": self.interrupted,
            "hard_stop": self.hard_stop,
            "changed_hosts": self.changed_hosts,
            "locks_left": self.locks_left,
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


# the exit statuses of --detailed-exitcode (terraform plan -detailed-exitcode's meaning)
NO_CHANGES, FAILED, CHANGES_PENDING = 0, 1, 2


def detailed_exit_status(result: RunResult) -> int:
    """The exit status of a check-mode run for CI: 0 nothing would change, 2 changes pending
    (some step would change a host), 1 failed on some host; refused (3) and interrupted
    (130/143) keep their statuses, so a pipeline tells "drift" from "could not look"."""
    if result.exit_status != 0:
        return result.exit_status
    return CHANGES_PENDING if result.changed else NO_CHANGES
