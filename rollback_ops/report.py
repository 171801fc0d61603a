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

# the steps that set flags: the report lists their flags, not the step
FLAG_ACTIONS = ("rollback_ops.rollback.envfile", "rollback_ops.rollback.flagcmd")
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
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(state_dir, override)]),
        autoescape=False,  # noqa: S701 - Markdown and plain text, never HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = cell
    return env


def cell(value: Any) -> str:
    """A value as one Markdown table cell: on one line, its pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


# the steps that verify the app, beside every step of the healthcheck role: the container
# settle check (roles/containers) and the word on why no check ran (playbooks/tasks)
VERIFYING_ROLES = ("healthcheck: ",)
VERIFYING_STEPS = (
    "containers: Recreate the compose services and watch them settle",
    "Say why the app was not verified",
)


def timeline(run_dir: Path, receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step, in order, with each host's status (``cells``), at the time its first
    host finished it, from ansible-runner's events; from the receipt's steps, without times,
    when the events are gone. A step every host skipped is left out."""
    rows = _event_rows(run_dir) or _receipt_rows(receipt)
    started = {"time": _hms(receipt["started"]), "text": "rollback initiated", "cells": {}}
    # the receipt's start is cut to the second: start + duration can read a second before
    # the last event, which the run's end cannot precede
    end = max([_end(receipt), *(r["time"] for r in rows[-1:] if r["time"])])
    ended = {"time": end, "text": f"rollback completed: {receipt['result']}"}
    return [started, *rows, {**ended, "cells": {}}]


def _event_rows(run_dir: Path) -> list[dict[str, Any]]:
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
        name = events.step_name(data)
        # a task that runs twice (a restart before and after) is two steps: keyed by its uuid
        entry = steps.setdefault(
            str(data.get("task_uuid") or name), {"text": name, "time": "", "cells": {}}
        )
        created = str(event.get("created", ""))
        if status != "skipped" and (not entry["time"] or created < entry["time"]):
            entry["time"] = created
        entry["cells"][str(data.get("host", ""))] = status
    ran = [e for e in steps.values() if e["time"]]
    return [{**e, "time": _hms(e["time"])} for e in sorted(ran, key=lambda e: e["time"])]


def _receipt_rows(receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps as the receipt lists them per host (in order; the n-th run of a task name
    on a host is the n-th row of that name)."""
    steps: dict[tuple[str, int], dict[str, Any]] = {}
    for host, h in receipt["hosts"].items():
        seen: dict[str, int] = {}
        for s in h.get("steps") or []:
            if events.is_hidden(s["action"]):
                continue
            seen[s["step"]] = seen.get(s["step"], 0) + 1
            entry = steps.setdefault((s["step"], seen[s["step"]]), {"text": s["step"], "cells": {}})
            entry["cells"][host] = s["status"]
    ran = [e for e in steps.values() if set(e["cells"].values()) != {"skipped"}]
    return [{**e, "time": ""} for e in ran]


def verification(receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step that verified the app, in order, with each host's step (status, message);
    a host that never reached a step has none (the template says "not run")."""
    checks: dict[str, dict[str, Any]] = {}
    for host, h in receipt["hosts"].items():
        for s in h.get("steps") or []:
            verifying = s["step"].startswith(VERIFYING_ROLES) or s["step"] in VERIFYING_STEPS
            silent_note = s["action"].endswith("debug") and not s["message"]
            if not verifying or events.is_hidden(s["action"]) or silent_note:
                continue
            check = checks.setdefault(s["step"], {"name": s["step"], "hosts": {}})
            check["hosts"].setdefault(host, s)  # a check that ran twice: its first run
    return list(checks.values())


def hook_runs(receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the app's hooks this run ran, listed or skipped, per host in order: host, name,
    step, rc ("-" when it did not run), duration, and what happened."""
    rows = []
    for host, h in sorted(_dict(receipt.get("hosts")).items()):
        for run in _dict(h.get("data")).get("hooks") or []:
            if not isinstance(run, dict):
                continue
            how = (
                f"passed in run {run['passed_in']}"
                if run.get("passed_in")
                else "listed (check mode)"
                if run.get("would_run")
                else "ran"
                if run.get("ran")
                else "did not run"
            )
            rows.append(
                {
                    "host": str(host),
                    "name": str(run.get("name", "")),
                    "step": str(run.get("step", "")),
                    "rc": "-" if run.get("rc") is None else str(run.get("rc")),
                    "duration": run.get("duration", 0),
                    "how": how,
                }
            )
    return rows


def data_loss(receipt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per host, what the full level's restore did to the data: the backup set restored, the
    forensic set keeping the live data, per database and table the rows missing since the
    backup and the rows changed, the migration rollbacks and the integrity checks. Empty for
    a run that restored no database. Values from a file: each is checked as it is read."""
    out: dict[str, dict[str, Any]] = {}
    for host, h in receipt["hosts"].items():
        data = _dict(h.get("data"))
        if "restored" not in data and "data_loss" not in data:
            why = next(
                (
                    s["message"]
                    for s in h.get("steps") or []
                    if s["step"] == "Say why the databases were not restored" and s["message"]
                ),
                "",
            )
            if why:
                out[host] = {"restored": False, "why": why}
            continue
        tables = [
            {
                "database": str(database),
                "table": str(table),
                "missing": _count(loss, "missing"),
                "changed": _count(loss, "changed"),
                "dropped_columns": [str(c) for c in _list(_dict(loss).get("dropped_columns"))],
            }
            for database, by_table in _dict(data.get("data_loss")).items()
            for table, loss in _dict(by_table).items()
        ]
        migrations = [
            {
                "database": str(database),
                "file": str(_dict(m).get("file", m) if isinstance(m, dict) else m),
                "sha256": str(_dict(m).get("sha256", "")),
                "before_restore": "; ".join(
                    map(str, _list(_dict(data.get("migrations_first")).get(database)))
                ),
            }
            for database, files in _dict(data.get("migrations")).items()
            for m in _list(files)
        ]
        integrity = [
            {
                "database": str(database),
                "ok": _dict(check).get("ok") is True,
                "passed": [str(c) for c in _list(_dict(check).get("passed"))],
                "failures": [str(c) for c in _list(_dict(check).get("failures"))],
            }
            for database, check in _dict(data.get("integrity")).items()
        ]
        out[host] = {
            "restored": True,
            "set_id": str(data.get("set_id") or "?"),
            "forensic_set_id": str(data.get("forensic_set_id") or ""),
            "tables": tables,
            "migrations": migrations,
            "integrity": integrity,
        }
    return out


def schema_changes(receipt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per host, what the schema level's migration rollback dropped (``dropped``) or, in
    check mode or when nothing ran, would drop (``planned``): per database the columns and
    tables, with the non-null values (and rows) they held, the forensic set, the files run
    and the integrity checks. Empty for a run of another level."""
    out: dict[str, dict[str, Any]] = {}
    for host, h in receipt["hosts"].items():
        data = _dict(h.get("data"))
        if "restored" in data or ("dropped" not in data and "planned" not in data):
            continue
        done = bool(_dict(data.get("dropped")))
        costs = _dict(data.get("dropped")) if done else _dict(data.get("planned"))
        databases = []
        for database, cost in costs.items():
            cost = _dict(cost)
            dropped = [
                {
                    "what": f"column {_dict(c).get('table', '?')}.{_dict(c).get('column', '?')}",
                    "rows": "",
                    "non_null": _number(_dict(c).get("non_null")),
                }
                for c in _list(cost.get("columns"))
            ] + [
                {
                    "what": f"table {_dict(t).get('table', '?')}",
                    "rows": _number(_dict(t).get("rows")),
                    "non_null": _number(_dict(t).get("non_null")),
                }
                for t in _list(cost.get("tables"))
            ]
            databases.append(
                {
                    "database": str(database),
                    "changes": cost.get("changes") is True,
                    "dropped": dropped,
                    "values_lost": _number(cost.get("values_lost")),
                }
            )
        out[host] = {
            "done": done,
            "forensic_set_id": str(data.get("forensic_set_id") or ""),
            "databases": databases,
            "migrations": [
                f"{database}: {_dict(m).get('file', '?')}"
                for database, files in _dict(data.get("migrations")).items()
                for m in _list(files)
            ],
            "integrity": [
                f"{database}: {'ok' if _dict(check).get('ok') is True else 'FAILED'}"
                for database, check in _dict(data.get("integrity")).items()
            ],
        }
    return out


def _number(value: Any) -> int | str:
    return value if isinstance(value, int) and not isinstance(value, bool) else "?"


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(loss: Any, key: str) -> int | str:
    """``<key>_count`` of a table's loss, else the length of its list of keys; "?" if neither."""
    loss = _dict(loss)
    count = loss.get(f"{key}_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    keys = loss.get(key)
    return len(keys) if isinstance(keys, list) else "?"


def _links(rows: dict[str, history.HistoryRow], receipt: dict[str, Any]) -> dict[str, Any]:
    """The runs this one follows and is followed by (resumes, undoes ...), from the history
    (the receipt's ``resumes`` or ``undoes`` when the history has no row for it)."""
    row = rows.get(receipt["run_id"])
    follows, relation = (row.follows, row.relation) if row else ("", "")
    for name, key in history.RELATIONS.items():
        if not follows and isinstance(receipt.get(key), str) and receipt[key]:
            follows, relation = receipt[key], name
    later = [
        {
            "run_id": link.run_id,
            "words": history.RELATION_WORDS.get(link.relation, ("", "followed by"))[1],
            "time": _hms(rows[link.run_id].started) if link.run_id in rows else "",
            "result": rows[link.run_id].result if link.run_id in rows else "?",
        }
        for link in (row.followed_by if row else [])
    ]
    return {
        "follows": follows,
        "follows_words": history.RELATION_WORDS.get(relation, ("follows", ""))[0],
        "reason_kept": bool(row and row.reason_from and row.reason_from == follows),
        "later": later,
    }


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
    rows = {r.run_id: r for r in history.read(state_dir)}
    row = rows.get(run_id)
    auth = {
        "operator": "?",
        "approved_by": "",
        "break_glass": False,
        "confirmed_by_typing": False,
        "reason": "",
        **(receipt.get("authorization") or {}),
    }
    # each change once, with the hosts it was made on
    actions: dict[str, list[str]] = {}
    failed: dict[str, Any] = {}
    for host, h in receipt["hosts"].items():
        for f in h.get("flags") or []:
            if f["changed"]:
                what = f"set {f['key']} from {f['before']} to {f['after']}"
                actions.setdefault(what, []).append(host)
        for s in h.get("steps") or []:
            if s["status"] == "changed" and s["action"] not in FLAG_ACTIONS:
                done = actions.setdefault(s["step"], [])
                if host not in done:  # a step that ran twice (a restart before and after)
                    done.append(host)
        if h.get("status") in ("failed", "unreachable", "interrupted"):
            failed[host] = h
    checks = verification(receipt)
    return {
        "receipt": receipt,
        "auth": auth,
        "environment": ", ".join(row.environment) if row and row.environment else "?",
        "apps": sorted({str(a) for a in (receipt.get("apps") or {}).values()}),
        "hosts": sorted(receipt["hosts"]),
        "level_names": LEVEL_NAMES,
        "timeline": timeline(run_dir, receipt),
        "links": _links(rows, receipt),
        "actions": [f"{what}: {', '.join(hosts)}" for what, hosts in actions.items()],
        "checks": checks,
        # the shape templates written before `checks` read: check name -> host -> step
        "verification": {c["name"].removeprefix("healthcheck: "): c["hosts"] for c in checks},
        "data_loss": data_loss(receipt),
        "schema": schema_changes(receipt),
        "hooks": hook_runs(receipt),
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
