"""A run as a JUnit XML report (``--junit FILE``), for CI systems that show test results.

One ``<testsuite>`` per run, named after its level and inventory ("flag on staging"), with
the run's id, level, inventory, check mode and result as properties. One ``<testcase>`` per
host and step: ``classname`` is the host, ``name`` the step's display name, ``time`` its
duration, and its properties hold the stable step id (``step_id``, see
:mod:`rollback_ops.results`) and the step's status. A failed step has a ``<failure>`` with
its message (a role's rescue that re-fails naming the failed step is a failed testcase too,
as in Ansible's own recap), an unreachable host an ``<error>``, a step that did not run
``<skipped>`` with the reason when the playbook gave one; a changed step's diff (changed
lines only, secrets masked as on the terminal) is its ``<system-out>``. Ansible's
bookkeeping tasks (argument validation, includes) appear only when they fail. A host that
failed without a failed step (interrupted, never reached) gets one testcase saying so. A run
refused before it started (a guard, bad input) still gets a report: one failed testcase
naming the command.

Written with the standard library (``xml.etree``), atomically; :func:`check_target` is
called before the run so that a bad path is said before any host is touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rollback_ops.events import is_hidden
from rollback_ops.exceptions import ConfigError
from rollback_ops.results import HostResult, RunResult, StepEvent
from rollback_ops.text import one_line

FAILED, ERROR = "failed", "unreachable"
# what XML 1.0 cannot hold (control characters, an ANSI escape's ESC): shown as U+FFFD
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def check_target(path: Path) -> Path:
    """``path`` if a report can be written there (its directory exists, it is not a
    directory); ConfigError naming it if not."""
    shown = one_line(str(path), 200)
    if path.is_dir():
        raise ConfigError(f"--junit {shown}: is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(
            f"--junit {shown}: the directory {one_line(str(parent), 200)} does not exist"
        )
    return path


def suite_name(level: str, inventories: list[str] | str) -> str:
    names = [inventories] if isinstance(inventories, str) else inventories
    return f"{level} on {','.join(names)}"


def report(result: RunResult) -> ET.ElementTree:
    """The JUnit document of a finished run."""
    suite = ET.Element("testsuite", name=suite_name(result.level, result.inventory))
    suite.set("timestamp", result.started.removesuffix("Z"))
    suite.set("time", f"{result.duration:.3f}")
    _properties(
        suite,
        {
            "run_id": result.run_id,
            "level": result.level,
            "inventory": result.inventory,
            "check": str(result.check).lower(),
            "result": result.outcome,
        },
    )
    for _, host in sorted(result.hosts.items()):
        for step in host.steps:
            if step.status == FAILED or step.status == ERROR or not is_hidden(step.action):
                _step_case(suite, step)
        if host.status in ("failed", "unreachable", "interrupted") and not any(
            s.status in (FAILED, ERROR) for s in host.steps
        ):
            _host_case(suite, host)
    return _wrap(suite)


def refused(
    level: str, inventories: list[str], command: str, message: str, outcome: str = "refused"
) -> ET.ElementTree:
    """The JUnit document of a run that did not start (``outcome``: refused by a guard, or
    error for bad input): one failed testcase with why."""
    suite = ET.Element("testsuite", name=suite_name(level, inventories))
    _properties(suite, {"level": level, "inventory": ",".join(inventories), "result": outcome})
    case = ET.SubElement(suite, "testcase", classname="rollback-ops", name=command, time="0")
    failure = ET.SubElement(case, "failure", message=message, type=outcome)
    failure.text = message
    return _wrap(suite)


def write(tree: ET.ElementTree, path: Path) -> None:
    """Write atomically (a temp file beside it, renamed over it); OSError if it cannot."""
    ET.indent(tree)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            tree.write(handle, encoding="utf-8", xml_declaration=True)
        tmp.replace(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _step_case(suite: ET.Element, step: StepEvent) -> None:
    case = ET.SubElement(
        suite, "testcase", classname=step.host, name=step.step, time=f"{step.duration:.3f}"
    )
    _properties(case, {"step_id": step.id, "status": step.status})
    if step.status == FAILED:
        ET.SubElement(case, "failure", message=step.message, type=FAILED).text = step.message
    elif step.status == ERROR:
        ET.SubElement(case, "error", message=step.message, type=ERROR).text = step.message
    elif step.status == "skipped":
        skipped = ET.SubElement(case, "skipped")
        if step.message:
            skipped.set("message", step.message)
    if step.diff:
        ET.SubElement(case, "system-out").text = step.diff


def _host_case(suite: ET.Element, host: HostResult) -> None:
    name = host.failed_step or "(run)"
    case = ET.SubElement(suite, "testcase", classname=host.name, name=name, time="0")
    _properties(case, {"status": host.status})
    kind = "error" if host.status == "unreachable" else "failure"
    ET.SubElement(case, kind, message=host.message, type=host.status).text = host.message


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=value)


def _wrap(suite: ET.Element) -> ET.ElementTree:
    """The suite's counts, and the suite inside ``<testsuites>`` with the same counts."""
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    top = ET.Element("testsuites", name="rollback-ops")
    for element in (suite, top):
        for key, value in counts.items():
            element.set(key, str(value))
    top.set("time", suite.get("time", "0"))
    top.append(suite)
    for element in top.iter():  # messages and names come from the hosts: any character
        element.attrib = {k: NOT_XML.sub("\ufffd", v) for k, v in element.attrib.items()}
        if element.text:
            element.text = NOT_XML.sub("\ufffd", element.text)
    return ET.ElementTree(top)
