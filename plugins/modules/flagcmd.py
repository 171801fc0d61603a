#!/usr/bin/python
"""Set feature flags through the app's own commands (rollback_app.flag_backend: command)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: flagcmd
short_description: Set feature flags through the app's own get and set commands
description:
  - Reads each key of I(values) with the I(get) argv, runs the I(set) argv only for the keys
    whose current value differs, then reads them again with I(get) and fails unless each
    now reads as set. A second run with the same values changes nothing.
  - C({key}) and C({value}) in the argv are replaced by the key and the value, literally, in
    one pass (no Jinja, no shell). The commands run as I(user) (C(runuser -u USER), which
    needs root unless it is the connection's user), in I(chdir), with I(environment), each
    killed after I(timeout) seconds.
  - I(get) must exit 0 and print the value on one line (a final line break is dropped);
    values are compared as strings, byte for byte.
  - With I(expect) (C(rollback-ops undo)), a key whose current value is none of the listed
    ones fails the task before any set runs.
  - In check mode only I(get) runs; the result says what would change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Runs only the get command.
  diff_mode:
    support: full
options:
  get:
    description: The argv printing the current value of C({key}).
    type: list
    elements: str
    required: true
  set:
    description: The argv setting C({key}) to C({value}).
    type: list
    elements: str
    required: true
  values:
    description: The keys to set and their values (strings).
    type: dict
    required: true
  check_only:
    description:
      - Only read the flags and check I(expect) (the preflight of every host before any
        change); returns I(before) and I(would_change), never I(after), and changes nothing.
    type: bool
    default: false
  expect:
    description: Per key, the values it may have now (C(rollback-ops undo)); others fail.
    type: dict
    default: {}
  user:
    description: The OS user the commands run as; empty for the connection's user.
    type: str
    default: ""
  chdir:
    description: The directory they run in; empty for the user's home.
    type: path
    default: ""
  environment:
    description: Env values they get.
    type: dict
    default: {}
  timeout:
    description: Seconds before one command is killed and fails.
    type: int
    default: 60
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Turn message harmonization off for tenant acme
  rollback_ops.rollback.flagcmd:
    get: [/srv/bot/venv/bin/python, manage.py, configure_ux_features, --get, "{key}"]
    set: [/srv/bot/venv/bin/python, manage.py, configure_ux_features, --set, "{key}", "{value}"]
    values:
      acme:enable_message_harmonization: "false"
    user: bot
    chdir: /srv/bot
"""

RETURN = r"""
before:
  description: Each key's value before the change.
  returned: success
  type: dict
after:
  description: Each key's value after the change (in check mode, what it would be).
  returned: success, unless check_only
  type: dict
changed_keys:
  description: The keys whose value changed (or would change).
  returned: success, unless check_only
  type: list
  elements: str
would_change:
  description: With check_only, the keys a run would set.
  returned: check_only
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.flagcmd import (
    FlagCommandError,
    FlagCommands,
)


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            get=dict(type="list", elements="str", required=True),
            set=dict(type="list", elements="str", required=True),
            values=dict(type="dict", required=True),
            expect=dict(type="dict", default={}),
            check_only=dict(type="bool", default=False),
            user=dict(type="str", default=""),
            chdir=dict(type="path", default=""),
            environment=dict(type="dict", default={}),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["get"] or not p["set"]:
        module.fail_json(msg="flag backend: get and set must be non-empty argv lists")
    commands = FlagCommands(
        p["get"], p["set"], p["user"], p["chdir"], p["environment"], p["timeout"]
    )
    wanted = dict((str(k), _text(v)) for k, v in p["values"].items())
    before = {}
    try:
        for key in wanted:
            before[key] = commands.get(key)
    except FlagCommandError as e:
        module.fail_json(msg=str(e))
    for key, allowed in (p["expect"] or {}).items():
        allowed = [_text(a) for a in allowed or [] if a is not None]
        if key in before and allowed and before[key] not in allowed:
            module.fail_json(
                msg="flag %s is %r on this host, not %s: something changed it since the run "
                "being undone (undo --force sets it anyway)"
                % (key, before[key], " or ".join(repr(a) for a in allowed)),
                before=before,
            )
    changed_keys = [k for k in wanted if before[k] != wanted[k]]
    if p["check_only"]:
        module.exit_json(changed=False, before=before, would_change=changed_keys)
    diff = dict(
        before="".join("%s=%s\n" % (k, before[k]) for k in changed_keys),
        after="".join("%s=%s\n" % (k, wanted[k]) for k in changed_keys),
        before_header="flags (get)",
        after_header="flags (set)",
    )
    result = dict(
        changed=bool(changed_keys),
        before=before,
        after=wanted,
        changed_keys=changed_keys,
        diff=diff,
    )
    if module.check_mode or not changed_keys:
        module.exit_json(**result)
    done = []
    try:
        for key in changed_keys:
            commands.set(key, wanted[key])
            done.append(key)
        for key in changed_keys:
            now = commands.get(key)
            if now != wanted[key]:
                raise FlagCommandError(
                    "flag %s: set to %r but get reads back %r" % (key, wanted[key], now)
                )
    except FlagCommandError as e:
        module.fail_json(
            msg=str(e),
            changed=bool(done),
            before=before,
            set_keys=done,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
