"""What ansible-runner's events mean: each result event classified as a step of a host.

:class:`EventCollector` is the runner's event handler: it builds a :class:`HostResult` per
host (status, steps, flag changes, lock, code, data, backups) and forwards every shown step
to the live display. :func:`classify`, :func:`step_name` and :func:`is_hidden` are shared
with the report, which reads the same events back from the artifacts.
:func:`step_id` gives each step its stable id (see :mod:`rollback_ops.results`).
:func:`scrub_artifacts` removes the environment's values ansible-runner writes beside them.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback_ops.paths import COLLECTION
from rollback_ops.results import SKIP_PREFIX, FlagChange, HostResult, StepEvent, StepStatus

EventSink = Callable[[StepEvent], None]
TaskStartSink = Callable[[str, str], None]  # (host, step name): a shown task began
# bookkeeping tasks: recorded in the receipt, not shown as steps (unless they fail)
HIDDEN_ACTIONS = ("validate_argument_spec", "include_role", "include_tasks")
# what the backup modules return that goes into the receipt (HostResult.data)
# what a receipt keeps of each hook run (data.hooks; the output tails stay in the events)
HOOK_KEYS = ("name", "step", "rc", "duration", "ran", "passed_in", "would_run")
# what a receipt keeps of backup export-loss per table (data.loss_export; not the rows)
LOSS_EXPORT_KEYS = ("database", "table", "key", "rows", "missing_count", "changed_count")
DATA_KEYS = (
    "set_id",
    "live_differences",
    "forensic_set_id",
    "restored",
    "migrations",
    "migrations_first",  # why the migration rollback ran before the restore (foreign keys)
    "integrity",
    "data_loss",
    "planned",  # dbmigrate: what the schema level's files would drop (the preview)
    "dropped",  # dbmigrate: what they dropped (tables, columns, non-null values)
    "values_lost",
    "manifest",
    "sets",
    "verification",
    "restore_test",
    "removed",
    "differs",
    "status",  # status_info: where the host stands
    "external",  # dbrestore, source external: the files chosen, checked, adopted
)
RESULT_EVENTS: dict[str, StepStatus] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class EventCollector:
    """Builds HostResults from runner events and forwards StepEvents to the sink."""

    def __init__(self, sink: EventSink | None, on_start: TaskStartSink | None = None):
        self.hosts: dict[str, HostResult] = {}
        self.sink = sink
        self.on_start = on_start
        self.started: dict[tuple[str, str], float] = {}

    def host(self, name: str) -> HostResult:
        return self.hosts.setdefault(name, HostResult(name))

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host_name = data.get("host")
        if kind == "runner_on_start" and host_name:
            host = self.host(host_name)
            now = time.time()
            host.started = host.started or now
            self.started[(host_name, data.get("task_uuid", ""))] = now
            if self.on_start and not is_hidden(str(data.get("task_action", ""))):
                self.on_start(host_name, step_name(data))
        elif kind in RESULT_EVENTS and host_name:
            self._result(kind, host_name, data)
        return True  # keep the event file on disk (artifacts)

    def _result(self, kind: str, host_name: str, data: dict[str, Any]) -> None:
        host = self.host(host_name)
        res = data.get("res") or {}
        action = str(data.get("task_action", ""))
        module = action.removeprefix(COLLECTION + ".")  # this collection's modules by short name
        status, message = classify(kind, data)
        now = time.time()
        start = self.started.pop((host_name, data.get("task_uuid", "")), now)
        step = StepEvent(
            host=host_name,
            step=step_name(data),
            status=status,
            duration=round(now - start, 3),
            message=message,
            diff=diff_text(res),
            action=action,
            id=step_id(
                str(data.get("role") or ""),
                str(data.get("task") or ""),
                action,
                str(data.get("task_path") or ""),
            ),
        )
        host.started = host.started or start
        host.ended = now
        host.steps.append(step)
        # the flags set, and their values before: the env file's, or the app's commands'
        # (rollback_app.flag_backend: command); the flagcmd check before any change has none
        if module in ("envfile", "flagcmd") and status in ("ok", "changed") and "after" in res:
            changed = set(res.get("changed_keys") or [])
            for key, after in (res.get("after") or {}).items():
                before = (res.get("before") or {}).get(key)
                host.flags.append(FlagChange(key, before, str(after), key in changed))
        if module == "preflight" and status == "ok" and res.get("lock"):
            host.lock = "held"
        holder = res.get("lock_holder") or (res.get("held") if module == "unlock" else None)
        if isinstance(holder, dict) and holder:
            host.lock_holder = holder
        if (
            module == "unlock"
            and host.lock == "held"
            and isinstance(res.get("removed"), dict)
            and res["removed"]
        ):
            host.lock = "released"
        taken = res.get("lock_taken_over")
        if module == "preflight" and isinstance(taken, dict) and taken:
            host.notes.append(
                f"took over the lock left by run {taken.get('run_id')} of {taken.get('operator')} "
                f"since {taken.get('since')} (older than the lock's maximum age)"
            )
        removed = res.get("removed")
        if module == "unlock" and status == "changed" and isinstance(removed, dict):
            host.notes.append(
                f"cleared the lock of run {removed.get('run_id')} of {removed.get('operator')}"
            )
        host.notes += [str(w) for w in res.get("warnings") or [] if isinstance(w, str)]
        if module == "code" and status in ("ok", "changed"):
            for key in ("current", "target", "needed", "snapshot", "head_after", "revert_commit"):
                if key in res:
                    host.code[key] = res[key]
        if module == "containers" and status in ("ok", "changed"):
            if res.get("images"):
                host.code["images"] = res["images"]
            if res.get("containers"):
                host.code["containers"] = res["containers"]
        if module in ("dbrestore", "dbmigrate", "backup", "status_info") and status in (
            "ok",
            "changed",
        ):
            for key in DATA_KEYS:
                if key in res:
                    host.data[key] = res[key]
        if module == "offhost_info" and status == "ok" and isinstance(res.get("offhost"), dict):
            host.data["offhost"] = res["offhost"]  # a set's copy on the backup host
        if module in ("approval", "approval_info"):  # what the host judged (approvals.read)
            host.data["approval"] = {
                k: res[k]
                for k in ("request", "problems", "approvers", "rejected", "used_by", "login")
                if k in res
            }
        if module == "hook" and isinstance(res.get("hooks"), list):  # the app's hooks, in order
            host.data.setdefault("hooks", []).extend(
                {k: h[k] for k in HOOK_KEYS if k in h} for h in res["hooks"] if isinstance(h, dict)
            )
        if module == "configrestore" and status == "changed" and res.get("config_files"):
            host.data["config_files"] = res["config_files"]  # what rollback-ops undo reads
        if module == "configrows" and status == "changed" and res.get("config_rows"):
            host.data["config_rows"] = res["config_rows"]  # the rows loaded, their dumps before
        if module == "configrestore" and status == "changed" and res.get("crontabs"):
            host.data["crontabs"] = res["crontabs"]  # each user's crontab copied and installed
        if module == "lossexport_info" and isinstance(res.get("tables"), list):
            # what was exported, counted (the rows themselves only in the files)
            host.data["loss_export"] = {
                "forensic_set_id": res.get("forensic_set_id", ""),
                "tables": [
                    {k: t[k] for k in LOSS_EXPORT_KEYS if k in t}
                    for t in res["tables"]
                    if isinstance(t, dict)
                ],
            }
        if status == "changed":
            host.backups += [str(b) for b in res.get("backup_files") or [] if isinstance(b, str)]
        backup = res.get("backup_file")
        if isinstance(backup, str) and backup:
            host.backups.append(backup)
            if isinstance(res.get("backup_sha256"), str) and res["backup_sha256"]:
                # which copy undo may read a secret key back from (rollback-ops undo)
                host.data.setdefault("backup_sha256", {})[backup] = res["backup_sha256"]
        if status in ("failed", "unreachable") and host.status not in ("failed", "unreachable"):
            host.status = "unreachable" if status == "unreachable" else "failed"
            host.failed_step, host.message = step.step, message
        elif status == "changed" and host.status == "ok":
            host.status = "changed"
        hidden = is_hidden(action) and status != "failed"
        if self.sink and not hidden and not (status == "skipped" and not message):
            self.sink(step)


def classify(kind: str, data: dict[str, Any]) -> tuple[StepStatus, str]:
    """A result event's step status and message (``kind`` is one of RESULT_EVENTS).

    ok with changed is "changed"; an ignored failure is "ok"; a debug task whose msg starts
    with SKIP_PREFIX explains a step that did not run and is "skipped" with that reason.
    """
    res = data.get("res") or {}
    status: StepStatus = RESULT_EVENTS[kind]
    if status == "ok" and res.get("changed"):
        status = "changed"
    if data.get("ignore_errors") and status == "failed":
        status = "ok"
    message = failure_message(res) if status in ("failed", "unreachable") else ""
    action = str(data.get("task_action", ""))
    if action.endswith("debug") and str(res.get("msg", "")).startswith(SKIP_PREFIX):
        status, message = "skipped", str(res["msg"])[len(SKIP_PREFIX) :]
    return status, message


def is_hidden(action: str) -> bool:
    return action.endswith(HIDDEN_ACTIONS)


def step_name(data: dict[str, Any]) -> str:
    task = str(data.get("task", "")).strip()
    role = str(data.get("role", "")).strip()
    return f"{role}: {task}" if role else task


_ARG_SPEC = re.compile(r"^Validating arguments against arg spec '([^']*)'")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_NOT_NAME = re.compile(r"[^a-z0-9_]+")  # a role's or a file's name keeps its underscores


def step_id(role: str, task: str, action: str, path: str = "") -> str:
    """A task's stable id: ``<namespace>.<slug of its name>`` (see :mod:`rollback_ops.results`).

    ``role`` is the role's short name as Ansible reports it ("" outside a role); ``path`` the
    task's file (``.../playbooks/tasks/start.yml:27`` in an event, relative in a plan), whose
    stem is the namespace outside a role. An argument-spec validation is
    ``<role>.arguments-<entry point>``. "" for an event without a task name.
    """
    namespace = role.strip() or Path(path.rpartition(":")[0] or path).stem or "play"
    spec = _ARG_SPEC.match(task)
    if action.endswith("validate_argument_spec") and spec:
        name = f"arguments {spec.group(1)}"
    else:
        name = task
    slug = _NOT_SLUG.sub("-", name.lower().replace("'", "")).strip("-")[:80].rstrip("-")
    namespace = _NOT_NAME.sub("-", namespace.lower()).strip("-")
    return f"{namespace}.{slug}" if slug else ""


def failure_message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    if not msg and isinstance(res.get("results"), list):
        for item in res["results"]:
            if isinstance(item, dict) and item.get("failed"):
                msg = item.get("msg") or item.get("stderr") or ""
                break
    return " ".join(str(msg).split())[:1000]


def diff_text(res: dict[str, Any]) -> str:
    diffs = res.get("diff")
    if isinstance(diffs, dict):
        diffs = [diffs]
    if not isinstance(diffs, list):
        return ""
    out: list[str] = []
    for d in diffs:
        if not isinstance(d, dict) or "before" not in d or "after" not in d:
            continue
        before, after = str(d["before"]), str(d["after"])
        if before == after:
            continue
        out += difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"before: {d.get('before_header', '')}",
            tofile=f"after: {d.get('after_header', '')}",
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def scrub_artifacts(artifact_dir: Path) -> None:
    """ansible-runner writes the whole environment into artifacts/<id>/command; keep names only."""
    command = artifact_dir / "command"
    if not command.exists():
        return
    try:
        data = json.loads(command.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data.get("env"), dict):
        data["env"] = sorted(data["env"])
        command.write_text(json.dumps(data))
