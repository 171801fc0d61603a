"""`rollback-ops status`: where every host stands, and the hosts of one app that disagree.

:func:`status` runs the read-only ``status`` playbook (one ``status_info`` module call per
host, no lock, no guard) through :func:`rollback_ops.api.execute`, reads each host's answer
from its :class:`~rollback_ops.results.HostResult` data, adds the host's last run from this
controller's history, and compares the hosts of each app field by field (:func:`drift`).
:func:`render` draws it as a table per app (fields down, hosts across: a disagreement shows
side by side), :func:`document` as the versioned JSON document of kind ``status``.

Exit status (:attr:`StatusReport.exit_status`): 0 every host answered and the hosts of each
app agree; 5 (:data:`DRIFT_EXIT`) they answered and some disagree; 1 a host could not be
read (unreachable or failed), or not all of it (its ``problems``), whatever the others say.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback_ops import api, history, jsonout, paths, runner
from rollback_ops.history import HistoryRow
from rollback_ops.progress import table

DRIFT_EXIT = 5  # hosts of one app disagree (distinct from bad input, 2, for monitoring)
UNREADABLE_EXIT = 1  # a host could not be read
MISSING = "(absent)"  # an env key the file lacks, an image or a container not there
# what status leaves out of "last run": its own runs (each status run is recorded too)
OWN_LEVEL = "status"


@dataclass(frozen=True)
class LastRun:
    """The newest run this controller recorded for a host (its inventory and name)."""

    run_id: str
    level: str
    result: str
    started: str
    operator: str
    check: bool

    @classmethod
    def of(cls, row: HistoryRow) -> LastRun:
        return cls(row.run_id, row.level, row.result, row.started, row.operator, row.check)


@dataclass
class HostStatus:
    """Where one host stands, as its status_info call answered (empty when it did not)."""

    host: str
    address: str
    app: str
    environment: str
    result: str = "ok"  # ok, or the run's status for a host it could not read
    message: str = ""  # why it could not be read
    flags: dict[str, str | None] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    containers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    maintenance: bool | None = None
    lock: dict[str, Any] = field(default_factory=dict)
    backup: dict[str, Any] = field(default_factory=dict)
    backup_sets: int = 0
    problems: list[str] = field(default_factory=list)
    last_run: LastRun | None = None

    @property
    def read(self) -> bool:
        return self.result == "ok"

    def fields(self) -> dict[str, str]:
        """The values the hosts of an app should share, as text, by field name."""
        if not self.read:
            return {}
        found = {f"flag {k}": MISSING if v is None else v for k, v in self.flags.items()}
        if self.code.get("method") == "git":
            found["code"] = self.code.get("sha", "")[:12] + (
                " +uncommitted" if self.code.get("dirty") else ""
            )
            found["release"] = self.code.get("release") or "(none)"
        for rel, digest in (self.code.get("files") or {}).items():
            found[f"file {rel}"] = digest[:12] if digest else MISSING
        for tag, image in self.images.items():
            found[f"image {tag}"] = short_id(image) or MISSING
        for service, containers in self.containers.items():
            found[f"service {service}"] = self.service_state(containers)
        for unit, state in self.units.items():
            found[f"unit {unit}"] = state
        if self.maintenance is not None:
            found["maintenance"] = "on" if self.maintenance else "off"
        return found

    def service_state(self, containers: list[dict[str, Any]]) -> str:
        """A service's containers in words: their states, and whether they run the image
        their tag names now (when the app has images)."""
        if not containers:
            return "(no container)"
        ids = set(self.images.values())
        states = []
        for c in containers:
            state = "restarting" if c.get("restarting") else str(c.get("status", ""))
            if ids and c.get("image") not in ids:
                state += " (not its tag's image)"
            states.append(state)
        return ", ".join(sorted(states))


@dataclass(frozen=True)
class Drift:
    """One field on which the hosts of one app disagree."""

    app: str
    field: str
    values: dict[str, str]  # host -> its value
    majority: str | None  # the value most of them hold (None: a tie)

    @property
    def odd_hosts(self) -> list[str]:
        """The odd ones out: the hosts without the majority's value (all, on a tie)."""
        return sorted(h for h, v in self.values.items() if v != self.majority)


@dataclass
class StatusReport:
    run_id: str
    inventory: str
    inventory_path: str
    hosts: dict[str, HostStatus]
    drift: list[Drift]
    checked_at: float = field(default_factory=time.time)
    warnings: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if not s.read)

    @property
    def incomplete(self) -> list[str]:
        """Hosts read in part: something of theirs could not be (see their problems)."""
        return sorted(h for h, s in self.hosts.items() if s.read and s.problems)

    @property
    def exit_status(self) -> int:
        if self.unreadable or self.incomplete:
            return UNREADABLE_EXIT
        return DRIFT_EXIT if self.drift else 0

    @property
    def apps(self) -> dict[str, list[str]]:
        """Each app's hosts, in order."""
        found: dict[str, list[str]] = {}
        for name, host in sorted(self.hosts.items()):
            found.setdefault(host.app, []).append(name)
        return found


# the order of the fields in the table and the drift list (each kind in the hosts' order)
FIELD_KINDS = ("flag ", "code", "release", "file ", "image ", "service ", "unit ", "maintenance")


def field_names(fields: Sequence[dict[str, str]]) -> list[str]:
    """Every field some host reports, each kind together (an image tag named per host
    beside the others), in the order the hosts report them."""
    names = dict.fromkeys(name for found in fields for name in found)
    return sorted(
        names, key=lambda n: next(i for i, k in enumerate(FIELD_KINDS) if n.startswith(k))
    )


def short_id(image_id: str) -> str:
    """An image id as docker shows it: 12 hex digits, no ``sha256:``."""
    return image_id.removeprefix("sha256:")[:12]


def drift(hosts: Sequence[HostStatus]) -> list[Drift]:
    """Every field on which hosts of one app disagree, app by app, in field order.

    A field is compared among the hosts that report it (an image tag named per host is
    compared with nobody); a host that could not be read is left out.
    """
    found: list[Drift] = []
    by_app: dict[str, list[HostStatus]] = {}
    for host in sorted(hosts, key=lambda h: h.host):
        if host.read:
            by_app.setdefault(host.app, []).append(host)
    for app, members in sorted(by_app.items()):
        fields = {h.host: h.fields() for h in members}
        for name in field_names(list(fields.values())):
            values = {h: f[name] for h, f in fields.items() if name in f}
            if len(values) < 2 or len(set(values.values())) < 2:
                continue
            (top, top_count), *rest = Counter(values.values()).most_common()
            majority = None if rest and rest[0][1] == top_count else top
            found.append(Drift(app, name, values, majority))
    return found


def last_runs(
    rows: Sequence[HistoryRow], inventory: str, hosts: Sequence[str]
) -> dict[str, LastRun]:
    """Each host's newest run recorded for this inventory (status runs left out)."""
    found: dict[str, LastRun] = {}
    for row in rows:  # oldest first: a later row replaces an earlier one
        if row.level == OWN_LEVEL or row.inventory != inventory:
            continue
        for host in hosts:
            if host in row.hosts:
                found[host] = LastRun.of(row)
    return found


def status(
    inventory_sources: str | Sequence[str],
    *,
    limit: str | None = None,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
    observer: api.Observer | None = None,
) -> StatusReport:
    """Where every targeted host stands, and the drift between the hosts of each app.

    Changes nothing on any host and takes no lock; like every run it is recorded in the
    history (and left out of the hosts' "last run").
    """
    prep = api.prepare(
        "status", inventory_sources, limit=limit, state_dir=state_dir, options=options
    )
    warnings: list[str] = []
    rows = history.read(paths.state_dir(state_dir), warnings)
    runs = last_runs(rows, prep.inventory.name, prep.hosts)
    result = api.execute(prep, state_dir=state_dir, observer=observer)
    hosts: dict[str, HostStatus] = {}
    for name in prep.hosts:
        inv_host = prep.inventory.hosts[name]
        host = HostStatus(
            host=name,
            address=inv_host.address,
            app=prep.apps[name].name,
            environment=str(inv_host.vars.get("rollback_environment", "")),
            last_run=runs.get(name),
        )
        ran = result.hosts[name]
        answer = ran.data.get("status")
        if ran.status in ("ok", "changed") and isinstance(answer, dict):
            _fill(host, answer)
        else:
            host.result = ran.status if ran.status not in ("ok", "changed") else "failed"
            host.message = ran.message or "no status from this host"
        hosts[name] = host
    return StatusReport(
        run_id=result.run_id,
        inventory=prep.inventory.name,
        inventory_path=str(prep.inventory.path),
        hosts=hosts,
        drift=drift(list(hosts.values())),
        warnings=[*warnings, *result.warnings],
    )


def _fill(host: HostStatus, answer: dict[str, Any]) -> None:
    host.flags = dict(answer.get("flags") or {})
    host.code = dict(answer.get("code") or {})
    host.images = dict(answer.get("images") or {})
    host.containers = dict(answer.get("containers") or {})
    host.units = dict(answer.get("units") or {})
    host.maintenance = answer.get("maintenance")
    host.lock = dict(answer.get("lock") or {})
    host.backup = dict(answer.get("backup") or {})
    host.backup_sets = int(answer.get("backup_sets") or 0)
    host.problems = [str(p) for p in answer.get("problems") or []]


# ----------------------------------------------------------------------------- output


def document(report: StatusReport) -> dict[str, Any]:
    """The report as the versioned JSON document of kind ``status``
    (``rollback_ops/schemas/status.schema.json``)."""
    return jsonout.document(
        "status",
        {
            "run_id": report.run_id,
            "inventory": report.inventory,
            "inventory_path": report.inventory_path,
            "checked_at": _iso(report.checked_at),
            "exit_status": report.exit_status,
            "in_sync": not report.drift,
            "unreadable": report.unreadable,
            "incomplete": report.incomplete,
            "hosts": {
                name: {
                    **{k: v for k, v in asdict(h).items() if k != "host"},
                    "last_run": asdict(h.last_run) if h.last_run else None,
                }
                for name, h in sorted(report.hosts.items())
            },
            "drift": [
                {
                    "app": d.app,
                    "field": d.field,
                    "values": d.values,
                    "majority": d.majority,
                    "odd_hosts": d.odd_hosts,
                }
                for d in report.drift
            ],
            "warnings": report.warnings,
        },
    )


def render(report: StatusReport) -> str:
    """The report as text: per app, a table with a row per field and a column per host
    (an odd value marked ``!``), then the drift in words and the verdict."""
    lines = [f"status of inventory {report.inventory} (run {report.run_id})"]
    odd = {(d.app, d.field, h) for d in report.drift for h in d.odd_hosts}
    for app, names in report.apps.items():
        hosts = [report.hosts[n] for n in names]
        lines += ["", f"app {app}: {', '.join(names)}"]
        rows = [["", *names]]
        rows.append(["address", *(h.address for h in hosts)])
        readable = [h for h in hosts if h.read]
        for name in field_names([h.fields() for h in readable]):
            cells = []
            for h in hosts:
                value = h.fields().get(name, "")
                cells.append(f"! {value}" if (app, name, h.host) in odd else value)
            rows.append([name, *cells])
            if name == "code":
                rows.append(["  describe", *(str(h.code.get("describe", "")) for h in hosts)])
        rows.append(["lock", *(_lock(h, report.checked_at) for h in hosts)])
        rows.append(["backup", *(_backup(h) for h in hosts)])
        rows.append(["last run", *(_last_run(h, report.checked_at) for h in hosts)])
        lines += ["  " + line for line in table(rows)]
        for h in hosts:
            if not h.read:
                lines.append(f"  {h.host}: {h.result}: {h.message}")
            lines += [f"  {h.host}: could not read: {p}" for p in h.problems]
    if report.drift:
        lines += ["", "DRIFT (the odd ones out are marked !):"]
        for d in report.drift:
            groups: dict[str, list[str]] = {}
            for host, value in sorted(d.values.items()):
                groups.setdefault(value, []).append(host)
            ordered = sorted(groups.items(), key=lambda g: -len(g[1]))  # the majority first
            shown = "; ".join(f"{v} on {', '.join(hs)}" for v, hs in ordered)
            lines.append(f"  app {d.app}, {d.field}: {shown}")
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append("")
    if report.unreadable or report.incomplete:
        missed = ", ".join(report.unreadable + [f"part of {h}" for h in report.incomplete])
        lines.append(f"could not read {missed} (exit {UNREADABLE_EXIT})")
    elif report.drift:
        count = len(report.drift)
        lines.append(f"DRIFT: hosts of one app disagree on {count} field(s) (exit {DRIFT_EXIT})")
    else:
        lines.append("in sync: the hosts of each app agree")
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    """A duration the way a person reads it at a glance: 45s, 12m, 3h, 2d."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _since(stamp: str, now: float) -> float | None:
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return now - moment.timestamp()


def _lock(host: HostStatus, now: float) -> str:
    if not host.read:
        return ""
    if not host.lock:
        return "free"
    held = host.lock
    since = age(held.get("age_seconds"))
    return f"run {held.get('run_id', '?')} of {held.get('operator', '?')}, {since}"


def _backup(host: HostStatus) -> str:
    if not host.read:
        return ""
    if not host.backup:
        return f"no verified set ({host.backup_sets} sets)" if host.backup_sets else "none"
    return f"{host.backup.get('set_id', '?')}, {age(host.backup.get('age_seconds'))} old"


def _last_run(host: HostStatus, now: float) -> str:
    run = host.last_run
    if run is None:
        return "none recorded here"
    check = " check" if run.check else ""
    return f"{run.run_id} {run.level}{check} {run.result}, {age(_since(run.started, now))} ago"
