#!/usr/bin/python
"""What a host holds of one backup set, checked file by file against its manifest."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: offhost_info
short_description: Whether a host holds a whole, verified copy of a backup set
description:
  - Reads C(<root>/<app>/<backup_id>/manifest.json) and checks every file the manifest lists
    against its sha256 and size. Needs no database engine, so it runs on a backup host as
    well as on the database host.
  - A backup host keeps the sets of each database host under
    C(<offhost root>/<database host>/<app>/<set id>/); give I(root) as
    C(<offhost root>/<database host>).
  - Without I(backup_id), the newest set whose manifest says it passed its verification
    (forensic sets aside; of I(kinds) when given).
  - Read-only. I(record) is returned as the C(offhost) key, with C(set_id) and C(verified)
    added, for the run's receipt (where a copy is and whether it was copied or fetched).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
  - rollback_ops.rollback.backupset
options:
  backup_id:
    description: The set; empty means the newest verified one.
    type: str
    default: ""
  kinds:
    description: Without I(backup_id), choose among sets of these kinds only (empty, any).
    type: list
    elements: str
    default: []
  record:
    description:
      - Returned as C(offhost) with C(set_id) and C(verified) added (e.g. C(host), C(path),
        C(copied), C(fetched)); empty returns no C(offhost).
    type: dict
    default: {}
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: The set on the database host
  rollback_ops.rollback.offhost_info:
    app: shop
    backup_id: 20261203T070000Z-predeploy
  register: __source

- name: Its copy on the backup host
  rollback_ops.rollback.offhost_info:
    root: /var/backups/rollback-ops-offhost/db1
    app: shop
    backup_id: 20261203T070000Z-predeploy
    record: {host: backup1, copied: false}
  delegate_to: backup1
"""

RETURN = r"""
set_id:
  description: The set looked at ("" when there is no verified set).
  type: str
  returned: always
present:
  description: The set's manifest is there.
  type: bool
  returned: always
verified:
  description: Its manifest says it passed verification and every file matches its sha256.
  type: bool
  returned: always
path:
  description: The set's directory.
  type: str
  returned: always
created:
  description: When the set was made (the manifest's created).
  type: str
  returned: always
files:
  description: The set's files relative to its directory, manifest.json last.
  type: list
  returned: always
manifest_sha256:
  description: The sha256 of manifest.json ("" when absent).
  type: str
  returned: always
problems:
  description: Why the set is not present or not verified.
  type: list
  returned: always
offhost:
  description: I(record) with set_id and verified.
  type: dict
  returned: when record is given
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    describe,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backup_id=dict(type="str", default=""),
            kinds=dict(type="list", elements="str", default=[]),
            record=dict(type="dict", default={}),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = describe(params["root"], params["app"], params["backup_id"], params["kinds"])
    except BackupError as exc:
        module.fail_json(msg="offhost_info: %s" % exc)
    if params["record"]:
        offhost = dict(params["record"])
        offhost.update(set_id=result["set_id"], verified=result["verified"])
        result["offhost"] = offhost
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
