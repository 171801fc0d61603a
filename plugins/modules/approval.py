#!/usr/bin/python
"""Write production approval records on a host: a request, an approval, its use by a run."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: approval
short_description: Request, approve or consume a production rollback's approval on a host
description:
  - The identity of every record is its file owner in I(directory) (root-owned, mode 1777),
    the login the task runs as. Run C(request) and C(approve) without C(become), as the
    person's own SSH login; records owned by root prove nobody and are refused.
  - C(state=request) writes the pending run I(run) (its I(hash), and I(record)) as this login.
  - C(state=approve) writes an approval of I(run) as this login, only if this login is in
    I(approvers), is not root, did not write the request, and I(hash) (the plan the approver
    computed) is the request's.
  - C(state=consume) (the start of C(rollback-ops apply --run)) checks that I(run) has a
    request matching I(hash) and I(request_fields), not older than I(max_age) hours, and an
    approval by a listed approver other than the requester; then marks it used by I(run_id),
    so that one approval allows one run (and that run's resumes, I(resumes)).
  - The records are read as untrusted (regular files with one link, small JSON objects,
    symlinks not followed); see M(rollback_ops.rollback.approval_info) to read them.
extends_documentation_fragment:
  - rollback_ops.rollback.run.run_id
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Checks everything and writes nothing.
options:
  state:
    description: What to write.
    type: str
    required: true
    choices: [request, approve, consume]
  run:
    description: The run id of the request (the id C(apply --run) and C(approve) take).
    type: str
    required: true
  hash:
    description: The hash of the run's plan, as the requester, approver or applying run computed it.
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
  record:
    description:
      - C(state=request) only, what the request holds beside run and hash; its C(fields)
        are what C(state=consume) compares with I(request_fields).
    type: dict
    default: {}
  request_fields:
    description: C(state=consume) only, this run's request; each must equal the approved one.
    type: dict
    default: {}
  resumes:
    description: C(state=consume) only, the run this one resumes (it may use its approval).
    type: str
    default: ""
  directory:
    description: The drop directory of the records (root-owned, mode 1777).
    type: path
    default: /var/spool/rollback-ops
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Record the pending run, as the requester's own login
  rollback_ops.rollback.approval:
    state: request
    run: 20240501T101500Z-1a2b3c
    hash: "{{ plan_hash }}"
    record: {level: code, fields: {level: code, to: release-1.4}}
  become: false

- name: Approve it, as another listed login
  rollback_ops.rollback.approval:
    state: approve
    run: 20240501T101500Z-1a2b3c
    hash: "{{ plan_hash }}"
    approvers: "{{ rollback_approvers }}"
  become: false

- name: Consume the approval at the start of the approved run
  rollback_ops.rollback.approval:
    state: consume
    run: 20240501T101500Z-1a2b3c
    hash: "{{ plan_hash }}"
    approvers: "{{ rollback_approvers }}"
    request_fields: {level: code, to: release-1.4}
    run_id: 20240501T113000Z-4d5e6f
"""

RETURN = r"""
login:
  description: The login this task ran as (the identity its records carry).
  type: str
  returned: always
requester:
  description: The login that wrote the request (its file owner).
  type: str
  returned: when the request was read
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
path:
  description: The record written (empty when none).
  type: str
  returned: always
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.approvals import (
    DEFAULT_DIRECTORY,
    REQUEST_SUFFIX,
    RecordError,
    check_run_id,
    directory_problem,
    judge_approvals,
    judge_request,
    login_of,
    mark_used,
    new_approval_name,
    request_mismatches,
    stamp,
    used_by,
    write_record,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    run_argument_spec,
)


def request(module, p, result):
    if os.getuid() == 0:
        return [
            "the host sees this request as root, which proves nobody's identity: connect "
            "with your personal login (approvals need one login per person)"
        ]
    problem = directory_problem(p["directory"])
    if problem:
        return [problem]
    record = dict(
        p["record"],
        run_id=p["run"],
        hash=p["hash"],
        requested_at=stamp(),
        requested_epoch=time.time(),
    )
    if not module.check_mode:
        result["path"] = write_record(p["directory"], p["run"] + REQUEST_SUFFIX, record)
        result["changed"] = True
    return []


def approve(module, p, result, pending):
    uid = os.getuid()
    if uid == 0:
        return ["the host sees this approval as root, which proves nobody's identity"]
    if uid == pending.get("requester_uid"):
        return [
            "%s requested run %s and cannot approve it: ask another approver"
            % (result["login"], p["run"])
        ]
    if result["login"] not in p["approvers"]:
        return [
            "%s is not in rollback_approvers (%s)"
            % (result["login"], ", ".join(p["approvers"]) or "none listed")
        ]
    if pending.get("hash") != p["hash"]:
        return [
            "the plan you computed differs from the one requested (run %s): the request "
            "was made from another inventory or options" % p["run"]
        ]
    if result["login"] in result["approvers"]:
        return []  # approved already: nothing to write
    if not module.check_mode:
        result["path"] = write_record(
            p["directory"],
            new_approval_name(p["run"]),
            dict(run_id=p["run"], hash=p["hash"], approved_at=stamp(), epoch=time.time()),
        )
        result["changed"] = True
    return []


def consume(module, p, result, pending):
    problems = []
    if pending.get("hash") != p["hash"]:
        problems.append(
            "the plan changed since it was approved (run %s): request and approve "
            "it again" % p["run"]
        )
    mismatched = request_mismatches(pending.get("fields"), p["request_fields"])
    if mismatched:
        problems.append("this run's %s differ from the approved request's" % ", ".join(mismatched))
    if not result["approvers"]:
        problems.append(
            "run %s has no approval by a listed approver other than %s"
            % (p["run"], result.get("requester", "its requester"))
        )
    used = used_by(p["directory"], p["run"])
    if used and not (p["resumes"] and used == p["resumes"]):
        problems.append(
            "the approval of run %s was used already (by run %s): one approval, "
            "one run" % (p["run"], used)
        )
    if problems or used or module.check_mode:
        return problems
    try:
        mark_used(p["directory"], p["run"], p["run_id"])
    except RecordError:
        return ["the approval of run %s was used already: one approval, one run" % p["run"]]
    result["changed"] = True
    return []


def main():
    spec = dict(
        state=dict(type="str", required=True, choices=["request", "approve", "consume"]),
        run=dict(type="str", required=True),
        hash=dict(type="str", required=True),
        approvers=dict(type="list", elements="str", default=[]),
        max_age=dict(type="int", default=24),
        record=dict(type="dict", default={}),
        request_fields=dict(type="dict", default={}),
        resumes=dict(type="str", default=""),
        directory=dict(type="path", default=DEFAULT_DIRECTORY),
    )
    spec.update(run_argument_spec(operator=False))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, login=login_of(os.getuid()), approvers=[], rejected=[], path="")
    try:
        check_run_id(p["run"])
        max_age = max(p["max_age"], 0) * 3600
        if p["state"] == "request":
            problems = request(module, p, result)
        else:
            pending, problems = judge_request(p["directory"], p["run"], max_age)
            if pending:
                result["requester"] = pending["requester"]
            if not problems:
                result["approvers"], result["rejected"] = judge_approvals(
                    p["directory"], p["run"], pending, p["approvers"], max_age
                )
                action = approve if p["state"] == "approve" else consume
                problems = action(module, p, result, pending)
    except RecordError as exc:
        problems = [str(exc)]
    if problems:
        module.fail_json(msg="refused: " + "; ".join(problems), problems=problems, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
