#!/usr/bin/python
"""Set keys in a dotenv/systemd EnvironmentFile, keeping every other byte as it is."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: envfile
short_description: Set keys in an env file in place, with a backup, atomically
description:
  - Sets C(KEY=VALUE) assignments in a C(.env)-style file (dotenv, shell, systemd EnvironmentFile).
  - Only the value of each assignment changes; comments, order, blank lines, C(export) prefixes,
    quoting style, inline comments, CRLF line endings, a UTF-8 byte order mark and a missing
    final newline are kept byte for byte.
  - Lines end at C(\n) only, as shells, systemd and dotenv read them (not at C(\v), C(\f),
    C(\x85), U+2028...). A new value holding a control character other than TAB (or C(\x85),
    U+2028, U+2029) is refused, naming the key.
  - Lines inside another key's multi-line quoted value (dotenv) or backslash-continued value are
    part of that value, never assignments. A key whose own value spans lines is refused before
    any change (edit it by hand).
  - Every assignment of a key that appears more than once is updated, and a warning names
    the duplicates.
  - A symlink is followed and kept; its final target is replaced atomically (temp file in the
    target's directory, fsync, rename). A file with more than one hard link is refused before
    any change (a rename would break the links apart).
  - Before changing the file it makes a copy beside the path given (for a symlink, beside the
    link) named C(<path>.backup.<UTC stamp>), holding the target's bytes, mode, owner and times.
    It first checks (in check mode too) that the filesystems have room for that copy and the
    temp file plus I(min_free_mb); on any failure while copying or writing (a full disk
    included) it removes the partial copy and temp file, leaves the file as it was and fails
    naming the file.
  - The values of secret keys (I(secret_values), and keys matching I(secret_keys)) are never
    reported; C(before), C(after), the diff, the module arguments echoed back and the messages
    show C(<secret sha256:XXXXXXXX>) (the first 8 hex digits of the value's SHA-256) instead.
  - The diff holds only the changed lines, never the rest of the file, which often holds
    secrets.
extends_documentation_fragment:
  - rollback_ops.rollback.space
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
attributes:
  check_mode:
    support: full
    details: Checks the edit and the free space; writes nothing.
  diff_mode:
    support: full
    details: The changed lines only.
options:
  path:
    description: The env file to edit (or a symlink to it). It must exist.
    type: path
    required: true
  values:
    description:
      - Keys to set and their new values (compared as strings, after unquoting).
      - Put secret keys in I(secret_values) instead, so their values stay out of the task's
        arguments and output.
    type: dict
    default: {}
  secret_values:
    description:
      - Keys to set whose values are secret, as for I(values); never shown. A key may not be
        in both I(values) and I(secret_values).
      - Ansible also replaces any occurrence of these values in the module's output with
        C(********).
    type: dict
    default: {}
  secret_keys:
    description:
      - fnmatch patterns (case-sensitive) or exact names of keys whose values are secret even
        when given in I(values).
    type: list
    elements: str
    default: ["*_KEY", "*_TOKEN", "*PASSWORD*", "*SECRET*"]
  remove:
    description:
      - Keys whose assignments are removed (every line of each); an absent key is left
        alone. C(rollback-ops undo) removes so a key that a run added. A key may not be in
        both I(remove) and I(values) or I(secret_values).
    type: list
    elements: str
    default: []
  values_from:
    description:
      - Set I(keys) to the values they have in I(path), a copy of this env file this module
        made (C(<path>.backup.<stamp>) beside it), read on the host; C(rollback-ops undo)
        puts secret keys back so, their values never passing through the controller. The
        values are secret (as I(secret_values)); the copy is never pruned by this call.
      - Refused before any change, naming the copy, when it is not such a copy, is gone, its
        sha256 is not I(sha256) (when given), or it does not assign a key.
    type: dict
    default: {}
    suboptions:
      path:
        description: The copy (required with I(keys)).
        type: path
        default: ""
      keys:
        description: The keys to take from it (none, the default, takes nothing).
        type: list
        elements: str
        default: []
      sha256:
        description: The copy's expected sha256 (empty, the default, is not checked).
        type: str
        default: ""
  allow_new_keys:
    description: Append keys that are not in the file yet instead of failing.
    type: bool
    default: false
  backup:
    description: Copy the file beside itself before changing it.
    type: bool
    default: true
  keep_backups:
    description:
      - After a change, keep the newest this many C(<path>.backup.<stamp>) copies of the
        file and remove older ones (each copy holds the file's secrets); C(0) keeps them all.
      - Never removes the newest copy, the copy this change made, a copy in
        I(protect_backups), or a symlink named like a copy. Nothing is removed when nothing
        changed; in check mode C(removed_backups) lists what would go.
    type: int
    default: 10
  protect_backups:
    description: Backup copies (paths) never removed, e.g. those a run still needs.
    type: list
    elements: path
    default: []
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Turn the master switch off
  rollback_ops.rollback.envfile:
    path: /srv/analyticbot/.env.production
    values:
      ENABLE_ADVANCED_RECOMMENDATIONS: "false"

- name: Rotate the API key back (its old and new values are never shown)
  rollback_ops.rollback.envfile:
    path: /srv/analyticbot/.env.production
    values:
      ENABLE_TIME_WEIGHTING: "false"
    secret_values:
      PARTNER_API_KEY: "{{ vault_partner_api_key_previous }}"
    secret_keys: ["*_KEY", "*_TOKEN", "*PASSWORD*", "*SECRET*", "DATABASE_URL"]

- name: Turn a flag off, keeping only the newest 5 backup copies of the file
  rollback_ops.rollback.envfile:
    path: /srv/analyticbot/.env.production
    values:
      ENABLE_TIME_WEIGHTING: "false"
    keep_backups: 5

- name: Put a flag back and remove the key a run added
  rollback_ops.rollback.envfile:
    path: /srv/analyticbot/.env.production
    values:
      ENABLE_TIME_WEIGHTING: "true"
    remove: [ENABLE_EXPERIMENT]
"""

RETURN = r"""
before:
  description:
    - Each requested key's effective value before the change (null when absent).
    - A secret key's value shows as C(<secret sha256:XXXXXXXX>).
  type: dict
  returned: always
after:
  description: Each requested key's value after the change (secret ones masked as in before).
  type: dict
  returned: always
removed_keys:
  description: The keys of I(remove) that were (or in check mode would be) removed.
  type: list
  elements: str
  returned: always
changed_keys:
  description: The keys whose assignments changed (or would change in check mode).
  type: list
  elements: str
  returned: always
secret_keys:
  description: The requested keys whose values are masked.
  type: list
  elements: str
  returned: always
backup_file:
  description:
    - Path of the copy made before the change, beside the path given (for a symlink, beside
      the link); empty when nothing changed or in check mode.
  type: str
  returned: always
backup_sha256:
  description:
    - The sha256 of that copy (empty without one), which the run's receipt keeps so that
      C(rollback-ops undo) can check the copy it reads I(values_from) is the run's.
  type: str
  returned: always
target:
  description: The file actually written (the symlink's final target, else I(path)).
  type: str
  returned: always
removed_backups:
  description:
    - The old backup copies removed after the change (I(keep_backups)); in check mode, those
      that would be.
  type: list
  elements: str
  returned: always
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile import (
    DEFAULT_SECRET_KEYS,
    EnvFileError,
    changed_lines,
    decode,
    edit,
    encode,
    file_problem,
    is_secret,
    mask,
    prune_backups,
    read_values,
    remove,
    safe_write,
    space_problems,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    space_argument_spec,
)


def keep_selinux_context(module, target):
    """A before_rename hook giving the temp file the target's SELinux context, if any."""
    if not module.selinux_enabled():
        return None
    context = module.selinux_context(target)
    return lambda tmp: module.set_context_if_different(tmp, context, False)


def values_of_copy(path, source):
    """{key: value} of source's keys in the copy source["path"] of path (EnvFileError: why
    not: not such a copy, gone, another sha256, a key it does not assign)."""
    copy = source["path"]
    name = os.path.basename(copy)
    if os.path.dirname(copy) != os.path.dirname(path) or not name.startswith(
        os.path.basename(path) + ".backup."
    ):
        raise EnvFileError("%s is not a copy of it (<file>.backup.* beside it)" % copy)
    if os.path.islink(copy) or not os.path.isfile(copy):
        raise EnvFileError("its copy %s is gone (or not a regular file)" % copy)
    with open(copy, "rb") as handle:
        data = handle.read()
    if source.get("sha256") and hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise EnvFileError("its copy %s is not the one the run made (another sha256)" % copy)
    values = read_values(decode(data))
    missing = [str(k) for k in source["keys"] if values.get(str(k)) is None]
    if missing:
        raise EnvFileError("its copy %s assigns no %s" % (copy, ", ".join(missing)))
    return dict((str(k), values[str(k)]) for k in source["keys"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            values=dict(type="dict", default={}),
            secret_values=dict(type="dict", default={}, no_log=True),
            secret_keys=dict(
                type="list", elements="str", default=list(DEFAULT_SECRET_KEYS), no_log=False
            ),
            remove=dict(type="list", elements="str", default=[], no_log=False),
            values_from=dict(
                type="dict",
                default={},
                options=dict(
                    path=dict(type="path", default=""),
                    keys=dict(type="list", elements="str", default=[], no_log=False),
                    sha256=dict(type="str", default=""),
                ),
            ),
            allow_new_keys=dict(type="bool", default=False),
            backup=dict(type="bool", default=True),
            keep_backups=dict(type="int", default=10),
            protect_backups=dict(type="list", elements="path", default=[]),
            **space_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    plain = dict((str(k), str(v)) for k, v in (params["values"] or {}).items())
    hidden = dict((str(k), str(v)) for k, v in (params["secret_values"] or {}).items())
    source = params["values_from"] if (params["values_from"] or {}).get("keys") else {}
    try:
        copied = values_of_copy(path, source) if source else {}
    except EnvFileError as exc:
        module.fail_json(msg="%s: %s" % (path, exc), changed=False)
    module.no_log_values.update(v for v in copied.values() if v)
    twice = sorted(set(copied) & (set(plain) | set(hidden)))
    hidden.update(copied)
    drop = [str(k) for k in params["remove"] or []]
    secret = set(hidden) | set(k for k in list(plain) + drop if is_secret(k, params["secret_keys"]))

    def shown(values):
        return dict((k, mask(v) if k in secret else v) for k, v in values.items())

    # The arguments echoed back (invocation) with secret values masked: Ansible would echo
    # values as given, and only the no_log option's values as VALUE_SPECIFIED_IN_NO_LOG_...
    invocation = dict(module_args=dict(params, values=shown(plain), secret_values=shown(hidden)))
    result = dict(
        changed=False,
        path=path,
        target=path,
        before={},
        after={},
        changed_keys=[],
        removed_keys=[],
        secret_keys=sorted(k for k in secret if k in plain or k in hidden or k in drop),
        backup_file="",
        backup_sha256="",
        removed_backups=[],
        invocation=invocation,
    )

    def fail(msg):
        module.fail_json(msg="%s: %s" % (path, msg), **result)

    both = sorted(set(plain) & set(hidden))
    if both:
        fail("%s given in both values and secret_values" % ", ".join(both))
    if twice:
        fail("%s given both in values_from and to set" % ", ".join(twice))
    both = sorted(set(drop) & (set(plain) | set(hidden)))
    if both:
        fail("%s given both to set and to remove" % ", ".join(both))
    problem = file_problem(path)
    if problem:
        module.fail_json(msg=problem, **result)
    target = os.path.realpath(path)
    result["target"] = target
    with open(target, "rb") as handle:
        data = handle.read()
    text = decode(data)
    wanted = dict(plain, **hidden)
    try:
        new_text, before, changed_keys, duplicates = edit(text, wanted, params["allow_new_keys"])
        new_text, gone, removed_keys = remove(new_text, drop)
    except EnvFileError as exc:
        fail(str(exc))
    before.update(gone)
    result.update(
        before=shown(before),
        after=shown(wanted),
        changed_keys=changed_keys + removed_keys,
        removed_keys=removed_keys,
    )
    for key in duplicates:
        module.warn("%s: %s is assigned more than once; every assignment was set" % (path, key))
    result["changed"] = new_text != text
    if module._diff and result["changed"]:
        # Only the changed lines: the rest of an env file often holds secrets (DATABASE_URL,
        # API keys) that must not reach the output or ansible-runner's artifacts.
        before_lines, after_lines = changed_lines(text, new_text, secret)
        header = "%s (changed lines only)" % path
        result["diff"] = dict(
            before_header=header, after_header=header, before=before_lines, after=after_lines
        )
    if not result["changed"]:
        module.exit_json(**result)
    new_data = encode(new_text)
    backup_size = len(data) if params["backup"] else None
    problems = space_problems(path, backup_size, len(new_data), params["min_free_mb"])
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    if params["keep_backups"] < 0:
        fail("keep_backups must be 0 (keep all) or more")
    if not module.check_mode:
        try:
            result["backup_file"] = safe_write(
                path, data, new_data, params["backup"], keep_selinux_context(module, target)
            )
        except EnvFileError as exc:
            module.fail_json(msg=str(exc), **result)
        if result["backup_file"]:
            result["backup_sha256"] = hashlib.sha256(data).hexdigest()
    source_paths = [source["path"]] if source else []
    if params["backup"]:
        try:
            result["removed_backups"] = prune_backups(
                path,
                params["keep_backups"],
                protect=[result["backup_file"], *params["protect_backups"], *source_paths],
                dry_run=module.check_mode,
            )
        except EnvFileError as exc:
            module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":  # pragma: no mutate (the entry point, equal under any test)
    main()
