#!/usr/bin/python
"""Every read-only check a rollback level needs on one host, in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: preflight
short_description: Check a host can take a rollback, before anything is changed
description:
  - Read-only but for the host's rollback lock (see I(lock_path)). Checks in one call
    everything a level needs and reports every problem found,
    not only the first (the env file exists and is a writable regular file with one link, a
    symlink being followed; the keys to set are declared and present and none has a
    multi-line value; systemd runs and knows every unit; there is free disk space for the env
    file's backup copy and temp file).
  - The env file is read with the same parser as M(rollback_ops.rollback.envfile). No value is
    ever returned or printed, only keys.
  - Also returns facts later steps use (whether systemd runs, the log's current size).
  - With I(run_id) set, the host's lock is taken for this run when every other check passed
    (never in check mode); a lock held by another live run is a problem naming its holder; one
    older than I(lock_max_age) was left by a dead run and is taken over (reported in
    C(lock_taken_over); moved aside under an flock on I(lock_path) + C(.takeover), so one of
    several runs taking it over at once holds it). Taking the lock is bookkeeping for the
    run, not a change to the host's app, so it does not make the task changed. An empty
    I(run_id) takes no lock.
extends_documentation_fragment:
  - rollback_ops.rollback.run
  - rollback_ops.rollback.lock
  - rollback_ops.rollback.space
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Checks everything; the lock is not taken, and another run's lock is a warning.
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
  env_expect:
    description:
      - For each key, the values it may hold now (null for absent); another value is a
        problem naming the key. C(rollback-ops undo) sends the value the undone run set and
        the one the undo puts back, so a key a later run changed is not silently reverted.
      - Values are never shown for a key matching the default secret patterns. An accepted
        value may be a secret's mask (C(<secret sha256:XXXXXXXX>), as receipts keep it).
    type: dict
    default: {}
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
    description:
      - MiB to keep free beside the env file beyond what the edit writes there, a backup copy
        and a temp file of the file's size (2 x its size on one filesystem; for a symlink the
        copy goes beside the link and the temp file beside its target).
    type: int
    default: 10
  controller:
    description: The machine the rollback runs from (recorded in the lock).
    type: str
    default: ""
  lock_max_age:
    description: Minutes after which a lock is taken as left by a dead run.
    type: int
    default: 240
  controller_pid:
    description:
      - The pid of the rollback-ops process on the controller, recorded in the lock so the
        controller can tell a live holder from a dead one.
    type: int
    default: 0
  controller_pid_start:
    description: That process's start time (/proc/PID/stat field 22), recorded likewise.
    type: str
    default: ""
  environment:
    description: This host's C(rollback_environment) as Ansible resolves it on this host.
    type: str
    default: ""
  authorized_environments:
    description:
      - The environments the controller's production guard authorized this run for. When set,
        a host whose I(environment) is not among them is a problem. This is defense in depth,
        so that a variable the controller did not see cannot turn a staging run into a
        production one.
      - Unset (null) skips the check.
    type: list
    elements: str
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Check the env file, the keys and the units, and take the host's lock for the run
  rollback_ops.rollback.preflight:
    env_file: /srv/analyticbot/.env.production
    env_keys: [ENABLE_ADVANCED_RECOMMENDATIONS]
    declared_keys: [ENABLE_ADVANCED_RECOMMENDATIONS, ENABLE_TIME_WEIGHTING]
    units: [analyticbot-api.service, analyticbot-worker.service]
    log_path: /var/log/analyticbot/app.log
    run_id: 20240501T101500Z-1a2b
    operator: ana
    controller: ops1.example.com
  register: preflight

- name: Only check (without a run id no lock is taken)
  rollback_ops.rollback.preflight:
    units: [analyticbot-api.service]
"""

RETURN = r"""
problems:
  description: Every problem found (the module fails when there is any).
  type: list
  elements: str
  returned: always
systemd:
  description: Whether systemd runs on the host.
  type: bool
  returned: always
units:
  description: C(load_state) and C(active_state) of each unit.
  type: dict
  returned: always
  sample: {"app.service": {"load_state": "loaded", "active_state": "active"}}
log_offset:
  description: Current size of log_path in bytes (0 when absent).
  type: int
  returned: always
paths:
  description: For each of I(paths), whether it exists.
  type: dict
  returned: always
free_mb:
  description:
    - Free MiB on the env file's filesystem (the tighter one when the backup copy and the
      temp file go to two).
  type: int
  returned: when env_file is set
needed_mb:
  description: MiB the env file's edit needs there (backup copy + temp file + min_free_mb).
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
lock_holder:
  description: The lock of another run that made this preflight fail (empty when none).
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile import (
    DEFAULT_SECRET_KEYS,
    MIB,
    decode,
    file_problem,
    is_secret,
    key_problems,
    keys_in,
    mask,
    read_values,
    space_needs,
    space_problems,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.lock import (
    acquire,
    describe,
    is_live,
    lock_record,
    read_lock,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    lock_argument_spec,
    run_argument_spec,
    space_argument_spec,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.systemd import (
    SystemdError,
    not_loaded,
    show,
    systemd_running,
)


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
    problem = file_problem(path)
    if problem:
        problems.append(problem)
    if not os.path.isfile(path):
        return
    target = os.path.realpath(path)
    directories = set([os.path.dirname(target), os.path.dirname(os.path.abspath(path))])
    if not os.access(target, os.R_OK | os.W_OK) or not all(
        os.access(d, os.W_OK) for d in directories
    ):
        problems.append(
            "env file %s (or its directory) is not writable by %s" % (path, os.getuid())
        )
    with open(target, "rb") as handle:
        data = handle.read()
    text = decode(data)
    check_expected(params.get("env_expect") or {}, read_values(text), path, problems)
    present = keys_in(text)
    missing = [k for k in wanted if k not in present]
    if missing and not params["allow_new_keys"]:
        problems.append("%s: keys not present in the file: %s" % (path, ", ".join(missing)))
    problems.extend("%s: %s" % (path, p) for p in key_problems(text, wanted))
    # Room for what the edit writes: a backup copy and a temp file of the file's size.
    size, margin = len(data), params["min_free_mb"]
    tightest = min(space_needs(path, size, size, margin), key=lambda n: n[1] - n[2])
    result["free_mb"] = int(tightest[1] // MIB)
    result["needed_mb"] = int(-(-tightest[2] // MIB))
    problems.extend(space_problems(path, size, size, margin))


def check_expected(expect, values, path, problems):
    """Each key of expect holds one of its accepted values (None: absent)."""
    for key in sorted(expect):
        accepted = expect[key] if isinstance(expect[key], list) else [expect[key]]
        now = values.get(key)
        # a secret's value is expected by its mask (the receipt keeps only that)
        if now in accepted or (now is not None and mask(now) in accepted):
            continue
        if is_secret(key, DEFAULT_SECRET_KEYS):
            shown = "another value"
        else:
            shown = (
                ("%r" % now if now is not None else "absent")
                + ", not "
                + " or ".join("%r" % v if v is not None else "absent" for v in accepted)
            )
        problems.append(
            "%s: %s is %s: a later change? (rollback-ops undo --force overwrites it)"
            % (path, key, shown)
        )


def check_units(module, problems, result):
    units = module.params["units"]
    result["systemd"] = systemd_running()
    result["units"] = {}
    if not units or not result["systemd"]:
        return
    try:
        states = show(module, units, ["Id", "LoadState", "ActiveState"])
    except SystemdError as exc:
        problems.append(str(exc))
        return
    for unit, props in states.items():
        result["units"][unit] = {
            "load_state": props.get("LoadState", ""),
            "active_state": props.get("ActiveState", ""),
        }
        problem = not_loaded(unit, props)
        if problem:
            problems.append(problem)


def check_guard(params, problems):
    """Defense in depth: this host's environment, as Ansible resolved it here, must be one the
    controller's production guard authorized for this run."""
    authorized = params["authorized_environments"]
    if authorized is None:
        return
    environment = params["environment"]
    if environment not in authorized:
        problems.append(
            "this host's rollback_environment is %r as Ansible resolves it here, but the "
            "controller authorized this run for %s only; refusing (nothing was changed)"
            % (environment, ", ".join(repr(e) for e in authorized) or "no environment")
        )


def check_lock(params, problems, result, check_mode, warn):
    """Take the host's lock for this run, or say who holds it (in lock_holder)."""
    result["lock"], result["lock_taken_over"], result["lock_holder"] = {}, {}, {}
    path, run_id = params["lock_path"], params["run_id"]
    if not path or not run_id:
        return
    held = read_lock(path)
    if held.get("run_id") != run_id and is_live(held, params["lock_max_age"]):
        if check_mode:
            warn("another rollback holds this host: " + describe(held))
        else:
            problems.append("host locked by %s; one rollback at a time" % describe(held))
            result["lock_holder"] = held
        return
    if problems or check_mode:
        return
    record = lock_record(
        run_id,
        params["operator"],
        params["controller"],
        params["controller_pid"],
        params["controller_pid_start"],
    )
    try:
        problem, result["lock_holder"], result["lock_taken_over"] = acquire(
            path, record, params["lock_max_age"]
        )
    except OSError as exc:  # a full disk, a read-only or unwritable lock directory
        problem = "could not take the host lock %s: %s" % (path, exc)
    if problem:
        problems.append(problem)
    else:
        result["lock"] = record


def main():
    spec = dict(
        env_file=dict(type="str", default=""),
        env_keys=dict(type="list", elements="str", default=[]),
        env_expect=dict(type="dict", default={}),
        declared_keys=dict(type="list", elements="str", default=[]),
        allow_new_keys=dict(type="bool", default=False),
        units=dict(type="list", elements="str", default=[]),
        log_path=dict(type="str", default=""),
        paths=dict(type="list", elements="str", default=[]),
        controller=dict(type="str", default=""),
        lock_max_age=dict(type="int", default=240),
        controller_pid=dict(type="int", default=0),
        controller_pid_start=dict(type="str", default=""),
        environment=dict(type="str", default=""),
        authorized_environments=dict(type="list", elements="str"),
    )
    spec.update(run_argument_spec())
    spec.update(lock_argument_spec())
    spec.update(space_argument_spec())
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
    )
    problems = []
    result = dict(changed=False)
    check_env(module.params, problems, result)
    check_units(module, problems, result)
    log_path = module.params["log_path"]
    result["log_offset"] = os.path.getsize(log_path) if log_path and os.path.isfile(log_path) else 0
    result["paths"] = dict((p, os.path.lexists(p)) for p in module.params["paths"])
    check_guard(module.params, problems)
    check_lock(module.params, problems, result, module.check_mode, module.warn)
    result["problems"] = problems
    if problems:
        module.fail_json(msg="preflight: " + "; ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
