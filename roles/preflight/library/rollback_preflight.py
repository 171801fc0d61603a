#!/usr/bin/python
"""Every read-only check a rollback level needs on one host, in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollback_preflight
short_description: Check a host can take a rollback, before anything is changed
description:
  - Read-only but for the host's rollback lock (see I(lock_path)). Checks in one call
    everything a level needs and reports every problem found,
    not only the first: the env file exists and is a writable regular file, the keys to set
    are declared and present, systemd runs and knows every unit, there is free disk space.
  - Also returns facts later steps use (whether systemd runs, the log's current size).
options:
  env_file:
    description: Env file the level will edit (empty when the level edits none).
    type: str
    default: ""
  env_keys:
    description: Keys the level will set in env_file.
    type: list
    elements: str
    default: []
  declared_keys:
    description:
      - Keys the app declares; keys outside it are problems unless allow_new_keys.
      - Empty means no restriction.
    type: list
    elements: str
    default: []
  allow_new_keys:
    description: Accept keys that are undeclared or missing from env_file.
    type: bool
    default: false
  units:
    description: systemd units the level acts on; each must be loaded where systemd runs.
    type: list
    elements: str
    default: []
  log_path:
    description: Log file whose current size is returned as log_offset.
    type: str
    default: ""
  paths:
    description: Paths whose existence is returned in C(paths) (e.g. a maintenance flag file).
    type: list
    elements: str
    default: []
  min_free_mb:
    description: Free space needed on the env file's filesystem, in MiB.
    type: int
    default: 10
  lock_path:
    description:
      - The host's rollback lock file. With I(run_id) set, the lock is taken for this run when
        every other check passed (never in check mode); a lock held by another live run is a
        problem naming its holder; one older than I(lock_max_age) was left by a dead run and is
        taken over (reported in C(lock_taken_over)).
      - Taking the lock is bookkeeping for the run, not a change to the host's app, so it does
        not make the task changed.
    type: str
    default: /var/lib/rollback-ops/rollback.lock
  run_id:
    description: This run's id; empty takes no lock.
    type: str
    default: ""
  operator:
    description: Who runs the rollback (recorded in the lock).
    type: str
    default: ""
  controller:
    description: The machine the rollback runs from (recorded in the lock).
    type: str
    default: ""
  lock_max_age:
    description: Minutes after which a lock is taken as left by a dead run.
    type: int
    default: 240
author: rollback-ops developers
"""

RETURN = r"""
problems:
  description: Every problem found (the module fails when there is any).
  type: list
  returned: always
systemd:
  description: Whether systemd runs on the host.
  type: bool
  returned: always
units:
  description: LoadState and ActiveState of each unit.
  type: dict
  returned: always
log_offset:
  description: Current size of log_path in bytes (0 when absent).
  type: int
  returned: always
paths:
  description: For each of I(paths), whether it exists.
  type: dict
  returned: always
free_mb:
  description: Free MiB on the env file's filesystem.
  type: int
  returned: when env_file is set
lock:
  description: The lock this run holds on the host (empty when none was taken).
  type: dict
  returned: always
lock_taken_over:
  description: A dead run's lock that this run replaced (empty when none).
  type: dict
  returned: always
"""

import json
import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

ASSIGNMENT = re.compile(r"^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")


def env_keys_in(path):
    keys = set()
    with open(path, "rb") as handle:
        for raw in handle:
            match = ASSIGNMENT.match(raw.decode("utf-8", "replace"))
            if match:
                keys.add(match.group(1))
    return keys


def check_env(params, problems, result):
    path = params["env_file"]
    wanted = params["env_keys"]
    declared = params["declared_keys"]
    if declared and not params["allow_new_keys"]:
        undeclared = [k for k in wanted if k not in declared]
        if undeclared:
            problems.append(
                "%s not declared for this app (declared: %s); a typo must not add a new key"
                % (", ".join(undeclared), ", ".join(declared))
            )
    if not path:
        return
    if not os.path.isfile(path):
        problems.append("env file not found: %s" % path)
        return
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(
        os.path.dirname(path) or ".", os.W_OK
    ):
        problems.append(
            "env file %s (or its directory) is not writable by %s" % (path, os.getuid())
        )
    present = env_keys_in(path)
    missing = [k for k in wanted if k not in present]
    if missing and not params["allow_new_keys"]:
        problems.append("%s: keys not present in the file: %s" % (path, ", ".join(missing)))
    stat = os.statvfs(os.path.dirname(path) or ".")
    result["free_mb"] = int(stat.f_bavail * stat.f_frsize // (1024 * 1024))
    if result["free_mb"] < params["min_free_mb"]:
        problems.append(
            "only %d MiB free beside %s (need %d)"
            % (result["free_mb"], path, params["min_free_mb"])
        )


def check_units(module, problems, result):
    units = module.params["units"]
    result["systemd"] = os.path.isdir("/run/systemd/system")
    result["units"] = {}
    if not units or not result["systemd"]:
        return
    systemctl = module.get_bin_path("systemctl", required=True)
    rc, out, err = module.run_command(
        [systemctl, "show", "--property=Id,LoadState,ActiveState", "--"] + units
    )
    if rc != 0:
        problems.append("systemctl show failed: %s" % err.strip())
        return
    blocks = [b for b in out.strip().split("\n\n") if b.strip()]
    for unit, block in zip(units, blocks):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        result["units"][unit] = {
            "load_state": props.get("LoadState", ""),
            "active_state": props.get("ActiveState", ""),
        }
        if props.get("LoadState") != "loaded":
            problems.append(
                "systemd unit %s is %s, not loaded" % (unit, props.get("LoadState") or "unknown")
            )


def read_lock(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_lock(params, problems, result, check_mode, warn):
    """Take the host's lock for this run, or say who holds it."""
    result["lock"], result["lock_taken_over"] = {}, {}
    path, run_id = params["lock_path"], params["run_id"]
    if not path or not run_id:
        return
    held = read_lock(path)
    if held and held.get("run_id") != run_id:
        age = time.time() - float(held.get("epoch", 0))
        if age < params["lock_max_age"] * 60:
            holder = "run %s of %s from %s since %s" % (
                held.get("run_id"),
                held.get("operator"),
                held.get("controller"),
                held.get("since"),
            )
            if check_mode:
                warn("another rollback holds this host: " + holder)
            else:
                problems.append(
                    "host locked by %s; one rollback at a time (a dead run's lock: "
                    "rollback-ops unlock)" % holder
                )
            return
        result["lock_taken_over"] = held
    if problems or check_mode:
        return
    record = dict(
        run_id=run_id,
        operator=params["operator"],
        controller=params["controller"],
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        epoch=time.time(),
    )
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".lock.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.rename(tmp, path)
    result["lock"] = record


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env_file=dict(type="str", default=""),
            env_keys=dict(type="list", elements="str", default=[]),
            declared_keys=dict(type="list", elements="str", default=[]),
            allow_new_keys=dict(type="bool", default=False),
            units=dict(type="list", elements="str", default=[]),
            log_path=dict(type="str", default=""),
            paths=dict(type="list", elements="str", default=[]),
            min_free_mb=dict(type="int", default=10),
            lock_path=dict(type="str", default="/var/lib/rollback-ops/rollback.lock"),
            run_id=dict(type="str", default=""),
            operator=dict(type="str", default=""),
            controller=dict(type="str", default=""),
            lock_max_age=dict(type="int", default=240),
        ),
        supports_check_mode=True,
    )
    problems = []
    result = dict(changed=False)
    check_env(module.params, problems, result)
    check_units(module, problems, result)
    log_path = module.params["log_path"]
    result["log_offset"] = os.path.getsize(log_path) if log_path and os.path.isfile(log_path) else 0
    result["paths"] = dict((p, os.path.lexists(p)) for p in module.params["paths"])
    check_lock(module.params, problems, result, module.check_mode, module.warn)
    result["problems"] = problems
    if problems:
        module.fail_json(msg="preflight: " + "; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
