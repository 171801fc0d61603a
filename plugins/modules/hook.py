#!/usr/bin/python
"""Run one of the app's hooks (rollback_app.hooks): an argv, no shell, as a user."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hook
short_description: Run the app's hooks of one step of a rollback level, in order
description:
  - Runs each of I(hooks) in order, and stops at the first that fails. A hook's I(command)
    is an argv, run without a shell, as its I(user) (C(runuser -u USER), which needs root
    unless it is the connection's user), in its I(chdir) (default the user's home), with its
    I(environment) and its I(secret_environment) values added, killed after its I(timeout)
    seconds. An exit code outside its I(expect_rc) fails, with the hook's name, step, exit
    code and the tail of its output.
  - In check mode nothing runs; the result lists what would run.
  - I(secret_environment) is no_log; its values are masked in every output, the hooks' own
    output included.
  - Each hook that passed is recorded in I(state_dir)C(/<run_id>.json) on the host. A hook
    recorded there for the run I(resumes) (C(apply --resume RUN_ID)) is not run again, and
    is recorded for this run too; a hook that failed there runs again.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Lists the hooks; runs nothing, writes nothing.
options:
  step:
    description: The step of the level the hooks run at (recorded and shown).
    type: str
    required: true
  level:
    description: The level this run is; only the hooks of I(step) on it run.
    type: str
    required: true
  hooks:
    description:
      - The app's hooks, as in C(rollback_app.hooks); those of I(step) whose C(levels) is
        empty or holds I(level) run (C(environment_from) is ignored here).
    type: list
    elements: dict
    required: true
  secret_environment:
    description: Per hook name, the secret env values it gets (never reported).
    type: dict
    default: {}
  run_id:
    description: This run's id (where passed hooks are recorded); empty records nothing.
    type: str
    default: ""
  resumes:
    description: The run this one resumes; its passed hooks are not run again.
    type: str
    default: ""
  state_dir:
    description: Where the passed hooks of each run are recorded.
    type: path
    default: /var/lib/rollback-ops/hooks
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Run the hooks after the code changed
  rollback_ops.rollback.hook:
    step: after_revert
    level: code
    hooks:
      - name: collectstatic
        command: [/srv/app/venv/bin/python, manage.py, collectstatic, --noinput]
        user: www-data
        chdir: /srv/app
    secret_environment:
      collectstatic:
        DJANGO_SECRET_KEY: "{{ lookup('ansible.builtin.env', 'DJANGO_SECRET_KEY') }}"
"""

RETURN = r"""
hooks:
  description: Each hook of the step, in order, up to the one that failed (no secret values).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The hook's name., type: str}
    step: {description: Its step., type: str}
    rc: {description: The exit code (null when it did not run)., type: int}
    duration: {description: Seconds it took., type: float}
    ran: {description: Whether it ran (false in check mode and when passed before)., type: bool}
    passed_in: {description: The run it passed in, when not run again., type: str}
    would_run: {description: In check mode, what would run., type: str}
    stdout_tail: {description: The end of its standard output., type: str}
    stderr_tail: {description: The end of its standard error., type: str}
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.hooks import (
    describe,
    for_step,
    run,
)

RUN_ID = re.compile(r"^[A-Za-z0-9._-]+\Z")


def _record_path(state_dir, run_id):
    if not run_id or not RUN_ID.match(run_id):
        return None
    return os.path.join(state_dir, run_id + ".json")


def passed(state_dir, run_id):
    """{"step/name": run id it passed in} recorded for ``run_id``."""
    path = _record_path(state_dir, run_id)
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(state_dir, run_id, key, passed_in):
    path = _record_path(state_dir, run_id)
    if not path:
        return
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o700)
    data = passed(state_dir, run_id)
    data[key] = passed_in
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            step=dict(type="str", required=True),
            level=dict(type="str", required=True),
            hooks=dict(type="list", elements="dict", required=True),
            secret_environment=dict(type="dict", default={}, no_log=True),
            run_id=dict(type="str", default=""),
            resumes=dict(type="str", default=""),
            state_dir=dict(type="path", default="/var/lib/rollback-ops/hooks"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    step = p["step"]
    secrets = {}
    for name, values in (p["secret_environment"] or {}).items():
        secrets[str(name)] = dict((str(k), str(v)) for k, v in (values or {}).items())
        module.no_log_values.update(v for v in secrets[str(name)].values() if v)
    earlier = passed(p["state_dir"], p["resumes"])
    done = []
    changed = False
    for hook in for_step(p["hooks"], p["level"], step):
        name = str(hook.get("name", ""))
        command = [str(a) for a in hook.get("command") or []]
        summary = dict(name=name, step=step, rc=None, duration=0.0, ran=False)
        done.append(summary)
        if not command or not command[0]:
            module.fail_json(
                msg="hook %s (%s): command must be a non-empty argv" % (name, step), hooks=done
            )
        key = "%s/%s" % (step, name)
        if earlier.get(key):
            summary["passed_in"] = earlier[key]
            if not module.check_mode:
                record(p["state_dir"], p["run_id"], key, earlier[key])
            continue
        spec = dict(hook, command=command, environment_from=secrets.get(name, {}))
        if module.check_mode:
            summary["would_run"] = describe(spec)
            changed = True
            continue
        env = dict((str(k), str(v)) for k, v in (hook.get("environment") or {}).items())
        env.update(secrets.get(name, {}))
        result = run(spec, env)
        summary.update(
            rc=result.get("rc"),
            duration=result.get("duration", 0.0),
            ran=result.get("rc") is not None,
            stdout_tail=result.get("stdout_tail", ""),
            stderr_tail=result.get("stderr_tail", ""),
        )
        if result["error"]:
            tail = (summary["stderr_tail"] or summary["stdout_tail"]).strip()[-500:]
            module.fail_json(
                msg="hook %s (%s) %s%s"
                % (name, step, result["error"], (": " + tail) if tail else ""),
                hooks=done,
                changed=changed or step != "verify",
            )
        record(p["state_dir"], p["run_id"], key, p["run_id"])
        # a verify hook checks: it changes nothing the run reports
        changed = changed or step != "verify"
    msg = ""
    if module.check_mode and done:
        msg = "would run: " + "; ".join(h["would_run"] for h in done if "would_run" in h)
    module.exit_json(changed=changed, hooks=done, msg=msg)


if __name__ == "__main__":
    main()
