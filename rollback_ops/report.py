"""``rollback-ops report RUN_ID``: seed 002's Rollback Log, rendered from a real run.

The receipt gives the hosts, steps, values and backups; the history gives who and why;
ansible-runner's event files give the timeline with real timestamps. Templates are jinja2
and can be overridden by a team (see :func:`template_dirs`).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from rollback_ops import events, history, receipts
from rollback_ops.exceptions import ConfigError
from rollback_ops.text import one_line

BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "templates"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline
LEVEL_NAMES = {
    "flag": "Feature Flag",
    "emergency": "Emergency Stop",
    "config": "Configuration",
    "code": "Code",
    "full": "Full (Code + Database)",
    "verify": "Verification only",
}


def template_dirs(state_dir: Path, override: Path | None = None) -> list[Path]:
    """Where templates are looked up, first match wins: --templates, $ROLLBACK_OPS_TEMPLATES,
    <state dir>/templates, then the built-in ones."""
    dirs = [override] if override else []
    if os.environ.get("ROLLBACK_OPS_TEMPLATES"):
        dirs.append(Path(os.environ["ROLLBACK_OPS_TEMPLATES"]))
    dirs += [state_dir / "templates", BUILTIN_TEMPLATES]
    return [d for d in dirs if d.is_dir()]


def environment(state_dir: Path, override: Path | None = None) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(state_dir, override)]),
        autoescape=False,  # noqa: S701 - Markdown and plain text, never HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def timeline(run_dir: Path, receipt: dict[str, Any]) -> list[dict[str, str]]:
    """One line per step, at the time its first host finished it, from runner's events."""
    events_dir = run_dir / "artifacts" / "ansible" / "job_events"
    steps: dict[str, dict[str, Any]] = {}
    try:
        found = sorted(events_dir.glob("*.json")) if events_dir.is_dir() else []
    except OSError:
        found = []
    for path in found:
        try:
            event = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        data = (event.get("event_data") or {}) if isinstance(event, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("res") or {}, dict):
            continue  # not an event ansible-runner wrote
        kind = str(event.get("event", ""))
        if kind not in events.RESULT_EVENTS or events.is_hidden(str(data.get("task_action", ""))):
            continue
        status, _message = events.classify(kind, data)
        if status == "skipped":
            continue
        entry = steps.setdefault(
            events.step_name(data), {"time": str(event.get("created", "")), "hosts": {}}
        )
        entry["hosts"].setdefault(status, []).append(str(data.get("host", "")))
    lines = [
        {"time": _hms(receipt["started"]), "text": f"rollback initiated (run {receipt['run_id']})"}
    ]
    for name, entry in sorted(steps.items(), key=lambda kv: kv[1]["time"]):
        result = "; ".join(f"{s} on {', '.join(sorted(hs))}" for s, hs in entry["hosts"].items())
        lines.append({"time": _hms(entry["time"]), "text": f"{name}: {result}"})
    lines.append({"time": _end(receipt), "text": f"rollback completed: {receipt['result']}"})
    return lines


def _hms(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M:%S UTC")
    except ValueError:
        return stamp


def _end(receipt: dict[str, Any]) -> str:
    try:
        start = datetime.fromisoformat(receipt["started"].replace("Z", "+00:00"))
        end = datetime.fromtimestamp(start.timestamp() + receipt["duration"], start.tzinfo)
    except (ValueError, OverflowError, OSError):  # not a time; a duration out of range
        return "?"
    return end.strftime("%H:%M:%S UTC")


def context(state_dir: Path, run_id: str) -> dict[str, Any]:
    loaded, run_dir = receipts.load(state_dir, run_id)  # checked: keys and types
    # what the template reads, where an older or hand-made receipt leaves it out
    receipt: dict[str, Any] = {"inventory": "?", "check": False, "started": "", "backups": []}
    receipt.update({"duration": 0.0, **loaded})
    row = next((r for r in history.read(state_dir) if r.run_id == run_id), None)
    auth = {
        "operator": "?",
        "approved_by": "",
        "break_glass": False,
        "confirmed_by_typing": False,
        "reason": "",
        **(receipt.get("authorization") or {}),
    }
    actions: list[str] = []
    verification: dict[str, dict[str, dict[str, Any]]] = {}
    failed: dict[str, Any] = {}
    for host, h in receipt["hosts"].items():
        for f in h.get("flags") or []:
            if f["changed"]:
                actions.append(f"{host}: set {f['key']} from {f['before']} to {f['after']}")
        for s in h.get("steps") or []:
            if s["status"] == "changed" and s["action"] != "rollback_ops.rollback.envfile":
                actions.append(f"{host}: {s['step']}")
        for s in h.get("steps") or []:
            verdict = s["action"].endswith("assert") and s["step"].startswith("healthcheck:")
            explained_skip = s["status"] == "skipped" and s["message"]
            if verdict or (explained_skip and s["step"].startswith("healthcheck:")):
                check = verification.setdefault(s["step"].removeprefix("healthcheck: "), {})
                check[host] = s
        if h.get("status") in ("failed", "unreachable"):
            failed[host] = h
    return {
        "receipt": receipt,
        "auth": auth,
        "environment": ", ".join(row.environment) if row and row.environment else "?",
        "apps": sorted({str(a) for a in (receipt.get("apps") or {}).values()}),
        "level_names": LEVEL_NAMES,
        "timeline": timeline(run_dir, receipt),
        "actions": actions,
        "verification": verification,
        "failed": failed,
    }


def render(state_dir: Path, run_id: str, templates: Path | None = None) -> str:
    values = context(state_dir, run_id)
    try:
        template = environment(state_dir, templates).get_template("report.md.j2")
        # values come from files on disk: no escape sequence reaches a terminal through them
        return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", template.render(**values))
    except jinja2.TemplateError as exc:
        raise ConfigError(f"report template: {one_line(str(exc), 200)}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory named report.md.j2, not UTF-8
        raise ConfigError(f"report template: cannot read it: {one_line(str(exc), 200)}") from None
    except (TypeError, ValueError, LookupError, AttributeError) as exc:  # a team's template
        raise ConfigError(
            f"report template: {type(exc).__name__}: {one_line(str(exc), 200)}"
        ) from None
