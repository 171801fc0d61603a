#!/usr/bin/python
"""Read and judge a production run's request and approvals on a host (changes nothing)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: approval_info
short_description: Read a pending production run and judge its approvals, by their file owners
description:
  - Reads the request I(run) that M(rollback_ops.rollback.approval) wrote, and its approvals,
    in I(directory). Each record's identity is its file owner on this host, never a name
    inside it.
  - Read-only. Never fails on what it reads; C(problems) says why the request cannot be
    approved or applied, C(rejected) why an approval does not count.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
options:
  run:
    description: The run id of the request.
    type: str
    required: true
  approvers:
    description: The logins that may approve (the inventory's C(rollback_approvers)).
    type: list
    elements: str
    default: []
  max_age:
    description: Hours a request and an approval stay valid.
    type: int
    default: 24
  directory:
    description: The drop directory of the records.
    type: path
    default: /var/spool/rollback-ops
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Read the pending run and who approved it
  rollback_ops.rollback.approval_info:
    run: 20240501T101500Z-1a2b3c
    approvers: "{{ rollback_approvers }}"
  register: pending
"""

RETURN = r"""
login:
  description: The login this task ran as.
  type: str
  returned: always
request:
  description: The request as recorded, plus C(requester), the login owning its file.
  type: dict
  returned: always
problems:
  description: Why the request cannot be approved or applied (empty when it can).
  type: list
  elements: str
  returned: always
approvers:
  description: The logins whose approvals count.
  type: list
  elements: str
  returned: always
rejected:
  description: Approval records that do not count, each with why.
  type: list
  elements: str
  returned: always
used_by:
  description: The run that used the approval (empty when none).
  type: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.approvals import (
    DEFAULT_DIRECTORY,
    RecordError,
    check_run_id,
    judge_approvals,
    judge_request,
    login_of,
    used_by,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run=dict(type="str", required=True),
            approvers=dict(type="list", elements="str", default=[]),
            max_age=dict(type="int", default=24),
            directory=dict(type="path", default=DEFAULT_DIRECTORY),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, login=login_of(os.getuid()), request={}, approvers=[], rejected=[])
    try:
        check_run_id(p["run"])
    except RecordError as exc:
        module.fail_json(msg=str(exc), **result)
    max_age = max(p["max_age"], 0) * 3600
    request, problems = judge_request(p["directory"], p["run"], max_age)
    result.update(problems=problems, used_by="")
    if request:
        result["approvers"], result["rejected"] = judge_approvals(
            p["directory"], p["run"], request, p["approvers"], max_age
        )
        result["used_by"] = used_by(p["directory"], p["run"])
    result["request"] = {k: v for k, v in request.items() if k != "requester_uid"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
