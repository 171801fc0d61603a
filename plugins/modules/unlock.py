#!/usr/bin/python
"""Release or clear a host's rollback lock (the one rollback_preflight takes)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollback_unlock
short_description: Release this run's rollback lock on a host, or clear a dead run's
description:
  - With I(run_id), removes the lock only if this run holds it (the end of every run);
    releasing one's own lock is bookkeeping and does not make the task changed.
  - With I(clear=true), removes whoever's lock is there (an operator clearing a dead run's
    lock, C(rollback-ops unlock)); that is a change. With I(clear_run_id) only that run's.
options:
  path:
    description: The lock file.
    type: str
    default: /var/lib/rollback-ops/rollback.lock
  run_id:
    description: Release the lock if this run holds it.
    type: str
    default: ""
  clear:
    description: Remove the lock whoever holds it (or only I(clear_run_id)'s).
    type: bool
    default: false
  clear_run_id:
    description: With I(clear), remove the lock only if this run holds it.
    type: str
    default: ""
author: rollback-ops developers
"""

RETURN = r"""
removed:
  description: The lock that was removed (empty when none).
  type: dict
  returned: always
held:
  description: The lock left in place (empty when none).
  type: dict
  returned: always
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule


def read_lock(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="str", default="/var/lib/rollback-ops/rollback.lock"),
            run_id=dict(type="str", default=""),
            clear=dict(type="bool", default=False),
            clear_run_id=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    held = read_lock(p["path"]) if os.path.exists(p["path"]) else {}
    if not held:
        module.exit_json(changed=False, removed={}, held={})
    if p["clear"]:
        wanted = not p["clear_run_id"] or held.get("run_id") == p["clear_run_id"]
        changed = wanted
    else:
        wanted = bool(p["run_id"]) and held.get("run_id") == p["run_id"]
        changed = False
    if not wanted:
        module.exit_json(changed=False, removed={}, held=held)
    if not module.check_mode:
        os.unlink(p["path"])
    module.exit_json(changed=changed, removed=held, held={})


if __name__ == "__main__":
    main()
