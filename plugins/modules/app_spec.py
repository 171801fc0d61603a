#!/usr/bin/python
"""Documentation of the action plugin rollback_ops.rollback.app_spec (plugins/action/)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: app_spec
short_description: Validate the app's description (rollback_app) and fill in its defaults
description:
  - Runs on the controller, once per host, never connects and changes nothing (check mode
    safe). Validates the host's C(rollback_app) against the app schema, the argument spec
    of the role C(rollback_ops.rollback.app) (C(roles/app/meta/argument_specs.yml)), with
    ansible-core's ArgumentSpecValidator, strict types and the cross-field rules of
    C(plugins/module_utils/app_spec.py) (the code rollback-ops validates inventories with).
  - Fails listing every problem, each with its key path (C(rollback_app.databases[1].engine)).
  - With I(procedure), returns the app as that procedure of C(rollback_app.procedures) runs
    it, the procedure's top-level keys in place of the app's; an unknown name fails, listing
    the declared ones.
options:
  procedure:
    description: A name of C(rollback_app.procedures); empty for the app as it is.
    type: str
    default: ""
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Validate the app and fill in the schema's defaults
  rollback_ops.rollback.app_spec:
  register: __app_spec

- name: The app as its partial procedure runs it
  rollback_ops.rollback.app_spec:
    procedure: partial
  register: __app_spec
"""

RETURN = r"""
app:
  description: The app with every default of the schema filled in; an option without a
    default that is not set is absent. Env values are the strings written to the env file.
  type: dict
  returned: success
procedure:
  description: The procedure applied (empty for none).
  type: str
  returned: success
secret_keys:
  description: The env key patterns whose values are secret (the defaults and the app's).
  type: list
  elements: str
  returned: success
declared_keys:
  description: The env keys the app declares (master switch, flags, emergency keys).
  type: list
  elements: str
  returned: success
problems:
  description: Every problem found, as C(<key path>) then a colon and the message.
  type: list
  elements: str
  returned: failure
"""

if __name__ == "__main__":
    raise SystemExit("app_spec is an action plugin: it runs on the controller")
