#!/usr/bin/python
"""Restart, start or stop several systemd units in one call, reporting each unit's state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: systemd_units
short_description: Restart, start or stop systemd units together, with before/after state
description:
  - Acts on all I(units) with one C(systemctl) call and returns, per unit, the active state,
    main PID and start time before and after, so a caller can see that a restart really happened.
  - Before a start or restart it clears the units' failed state (C(systemctl reset-failed)),
    so a unit that crash-looped before the rollback, and hit its start limit, can start again.
  - C(restarted) always changes (with I(only_if_older_than), only units that have not seen
    that file); C(started) changes units that are not active; C(stopped) changes units that
    are active.
  - A lighter alternative to M(ansible.builtin.systemd_service) for the hot path of a rollback.
  - Every unit must be loaded (known to systemd); the module fails naming the first that is not.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change and acts on nothing.
options:
  units:
    description: systemd units, acted on in this order.
    type: list
    elements: str
    required: true
  state:
    description: What to do with the units.
    type: str
    choices: [restarted, started, stopped]
    default: restarted
  only_if_older_than:
    description:
      - C(restarted) only. Restart only the units whose process has not seen this file, that
        is the units that became active before the file's last change (or are not active).
        Empty restarts every unit.
      - A rollback that changed the env file but was stopped before the restart is finished
        by the next run this way, although the file no longer changes.
    type: str
    default: ""
  drain_timeout:
    description:
      - C(stopped) only. Seconds to wait for the units to stop on their own (workers finishing
        their tasks) before killing them with SIGKILL; 0 leaves it to systemd's TimeoutStopSec.
      - Units that had to be killed are named in a warning.
    type: int
    default: 0
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Restart the app's units that have not seen the new env file yet
  rollback_ops.rollback.systemd_units:
    units: [analyticbot-api.service, analyticbot-worker.service]
    state: restarted
    only_if_older_than: /srv/analyticbot/.env.production
  register: restart

- name: Stop the workers, giving them a minute to finish their tasks
  rollback_ops.rollback.systemd_units:
    units: [analyticbot-worker.service]
    state: stopped
    drain_timeout: 60
"""

RETURN = r"""
units:
  description:
    - Per unit, C(before) and C(after), each with C(active_state), C(main_pid) and C(since)
      (the monotonic usec it became active), and C(acted) (whether it was acted on).
  type: dict
  returned: always
  sample:
    app.service:
      acted: true
      before: {"active_state": "active", "main_pid": 812, "since": 91234567}
      after: {"active_state": "active", "main_pid": 1630, "since": 99887766}
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.systemd import (
    SystemdError,
    not_loaded,
    show,
)

PROPERTIES = ["Id", "LoadState", "ActiveState", "MainPID", "ActiveEnterTimestampMonotonic"]


def states_of(module, systemctl, units):
    """{unit: {active_state, main_pid, since}}; fails naming a unit systemd has not loaded."""
    try:
        found = show(module, units, PROPERTIES, systemctl)
    except SystemdError as exc:
        module.fail_json(msg=str(exc))
    states = {}
    for unit, props in found.items():
        problem = not_loaded(unit, props)
        if problem:
            module.fail_json(msg=problem)
        states[unit] = dict(
            active_state=props.get("ActiveState", ""),
            main_pid=int(props.get("MainPID") or 0),
            since=int(props.get("ActiveEnterTimestampMonotonic") or 0),
        )
    return states


def stale(module, states, path):
    """The units whose process started before path last changed (or that are not active)."""
    try:
        changed_at = os.stat(path).st_mtime
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, exc))
    # systemd's monotonic clock is CLOCK_MONOTONIC, Python's time.monotonic()
    boot_offset = time.time() - time.monotonic()
    return [
        unit
        for unit, state in states.items()
        if state["active_state"] != "active"
        or not state["since"]
        or boot_offset + state["since"] / 1e6 < changed_at
    ]


def wait_stopped(module, systemctl, units, timeout):
    """Wait until the units are inactive; SIGKILL those still running after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        states = states_of(module, systemctl, units)
        running = [u for u in units if states[u]["active_state"] in ("active", "deactivating")]
        if not running:
            return []
        if time.monotonic() >= deadline:
            module.run_command([systemctl, "kill", "--signal=SIGKILL", "--"] + running)
            module.run_command([systemctl, "stop", "--"] + running)
            return running
        time.sleep(0.5)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type="list", elements="str", required=True),
            state=dict(
                type="str", choices=["restarted", "started", "stopped"], default="restarted"
            ),
            drain_timeout=dict(type="int", default=0),
            only_if_older_than=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    units, state = module.params["units"], module.params["state"]
    if not units:
        module.exit_json(changed=False, units={})
    systemctl = module.get_bin_path("systemctl", required=True)
    before = states_of(module, systemctl, units)
    if state == "restarted" and module.params["only_if_older_than"]:
        targets = stale(module, before, module.params["only_if_older_than"])
    elif state == "restarted":
        targets = list(units)
    elif state == "started":
        targets = [u for u in units if before[u]["active_state"] != "active"]
    else:
        targets = [
            u for u in units if before[u]["active_state"] in ("active", "activating", "reloading")
        ]
    verb = {"restarted": "restart", "started": "start", "stopped": "stop"}[state]
    if targets and not module.check_mode:
        if state != "stopped":
            # A unit that crash-looped before the rollback may be in the failed state or over
            # its start limit; the rollback must still be able to start it.
            module.run_command([systemctl, "reset-failed", "--"] + targets)
        drain = module.params["drain_timeout"] if state == "stopped" else 0
        argv = [systemctl, verb] + (["--no-block"] if drain else []) + ["--"] + targets
        rc, _out, err = module.run_command(argv)
        if rc == 0 and drain:
            killed = wait_stopped(module, systemctl, targets, drain)
            if killed:
                module.warn(
                    "%s did not stop within %d s and were killed" % (", ".join(killed), drain)
                )
        if rc != 0:
            module.fail_json(
                msg="systemctl %s %s failed: %s" % (verb, " ".join(targets), err.strip()),
                units=dict((u, dict(before=before[u])) for u in units),
            )
    after = before if module.check_mode else states_of(module, systemctl, units)
    module.exit_json(
        changed=bool(targets),
        units=dict((u, dict(before=before[u], after=after[u], acted=u in targets)) for u in units),
    )


if __name__ == "__main__":
    main()
