#!/usr/bin/python
"""Report lines matching a pattern in the part of a log written since an offset."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: logscan_info
short_description: Find new lines matching a pattern in a log since a byte offset
description:
  - Reads the log from I(offset) (from the start when the file is now shorter, i.e. rotated)
    and returns the lines that match I(pattern).
  - Read-only; a missing file has no new lines.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
options:
  path:
    description: The log file. A missing file has no new lines.
    type: path
    required: true
  offset:
    description: Byte offset where the new part starts (the size at an earlier look).
    type: int
    default: 0
  pattern:
    description: Python regular expression of a line to report.
    type: str
    required: true
  max_matches:
    description: At most this many matching lines are returned.
    type: int
    default: 20
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Note the log's size before the restart
  ansible.builtin.stat:
    path: /var/log/analyticbot/app.log
  register: log_before

- name: Look for errors the app logged since then
  rollback_ops.rollback.logscan_info:
    path: /var/log/analyticbot/app.log
    offset: "{{ log_before.stat.size | default(0) }}"
    pattern: "ERROR|Traceback"
  register: new_errors
  failed_when: new_errors.count > 0
"""

RETURN = r"""
matches:
  description: The matching lines (at most max_matches).
  type: list
  elements: str
  returned: always
count:
  description: How many lines matched in all.
  type: int
  returned: always
rotated:
  description: The file was shorter than the offset, so it was read from the start.
  type: bool
  returned: always
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule


def scan(handle, offset, regex, max_matches):
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    rotated = size < offset
    handle.seek(0 if rotated else offset)
    matches, count = [], 0
    for raw in handle:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if regex.search(line):
            count += 1
            if len(matches) < max_matches:
                matches.append(line)
    return matches, count, rotated


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            offset=dict(type="int", default=0),
            pattern=dict(type="str", required=True),
            max_matches=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    try:
        regex = re.compile(module.params["pattern"])
    except re.error as exc:
        module.fail_json(msg="bad error pattern %r: %s" % (module.params["pattern"], exc))
    path = module.params["path"]
    if not os.path.exists(path):
        module.exit_json(changed=False, matches=[], count=0, rotated=False)
    with open(path, "rb") as handle:
        matches, count, rotated = scan(
            handle, module.params["offset"], regex, module.params["max_matches"]
        )
    module.exit_json(changed=False, matches=matches, count=count, rotated=rotated)


if __name__ == "__main__":
    main()
