#!/usr/bin/python
"""Release or clear a host's rollback lock (the one the preflight module takes)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: unlock
short_description: Release this run's rollback lock on a host, or clear a dead run's
description:
  - With I(run_id), removes the lock only if this run holds it (the end of every run);
    releasing one's own lock is bookkeeping and does not make the task changed.
  - With I(clear=true), removes whoever's lock is there (an operator clearing a dead run's
    lock, C(rollback-ops unlock)); that is a change. With I(clear_run_id) only that run's.
  - With neither, only reads the lock (returned in C(held)).
  - The lock is the one M(rollback_ops.rollback.preflight) takes.
extends_documentation_fragment:
  - rollback_ops.rollback.run.run_id
  - rollback_ops.rollback.lock
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
options:
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

EXAMPLES = r"""
- name: Release this run's lock (a lock of another run is left in place)
  rollback_ops.rollback.unlock:
    run_id: 20240501T101500Z-1a2b

- name: Clear the lock a dead run left
  rollback_ops.rollback.unlock:
    clear: true
    clear_run_id: 20240430T220000Z-9f8e

- name: Read who holds the lock
  rollback_ops.rollback.unlock:
  register: lock
"""

RETURN = r"""
removed:
  description: The lock that was removed (empty when none).
  type: dict
  returned: always
  sample: {"run_id": "20240501T101500Z-1a2b", "operator": "ana", "since": "2024-05-01T10:15:03Z"}
held:
  description: The lock left in place (empty when none).
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.lock import release
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    lock_argument_spec,
    run_argument_spec,
)


def main():
    spec = dict(
        clear=dict(type="bool", default=False),
        clear_run_id=dict(type="str", default=""),
    )
    spec.update(run_argument_spec(operator=False))
    spec.update(lock_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    removed, held, changed = release(
        p["lock_path"], p["run_id"], p["clear"], p["clear_run_id"], module.check_mode
    )
    module.exit_json(changed=changed, removed=removed, held=held)


if __name__ == "__main__":
    main()
