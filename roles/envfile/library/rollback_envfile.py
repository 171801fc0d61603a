#!/usr/bin/python
"""Set keys in a dotenv/systemd EnvironmentFile, keeping every other byte as it is."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollback_envfile
short_description: Set keys in an env file in place, with a backup, atomically
description:
  - Sets C(KEY=VALUE) assignments in a C(.env)-style file (dotenv, shell, systemd EnvironmentFile).
  - Only the value of each assignment changes; comments, order, blank lines, C(export) prefixes,
    quoting style, inline comments, CRLF line endings and a missing final newline are kept
    byte for byte.
  - Every assignment of a key that appears more than once is updated, and a warning names
    the duplicates.
  - Before changing the file it makes a timestamped copy beside it (C(<path>.backup.<UTC stamp>)),
    keeping mode and owner, then writes the new content atomically.
  - Supports check mode and diff mode. The diff holds only the changed lines, never the rest
    of the file, which often holds secrets.
options:
  path:
    description: The env file to edit. It must exist.
    type: path
    required: true
  values:
    description: Keys to set and their new values (compared as strings, after unquoting).
    type: dict
    required: true
  allow_new_keys:
    description: Append keys that are not in the file yet instead of failing.
    type: bool
    default: false
  backup:
    description: Copy the file beside itself before changing it.
    type: bool
    default: true
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Turn the master switch off
  rollback_envfile:
    path: /srv/analyticbot/.env.production
    values:
      ENABLE_ADVANCED_RECOMMENDATIONS: "false"
"""

RETURN = r"""
before:
  description: Each requested key's effective value before the change (null when absent).
  type: dict
  returned: always
after:
  description: Each requested key's value after the change.
  type: dict
  returned: always
changed_keys:
  description: The keys whose value changed (or would change in check mode).
  type: list
  returned: always
backup_file:
  description: Path of the copy made before the change; empty when nothing changed or in check mode.
  type: str
  returned: always
"""

import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

ASSIGNMENT = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)"
    r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?P<eq>[ \t]*=[ \t]*)"
    r"(?P<raw>.*)$",
    re.DOTALL,
)
SAFE_UNQUOTED = re.compile(r"^[A-Za-z0-9_./:@%+,-]*$")


class EnvFileError(ValueError):
    pass


def split_lines(text):
    """Lines as (body, eol) pairs; eol is '\\r\\n', '\\n' or '' (last line without newline)."""
    out = []
    for chunk in text.splitlines(True):
        if chunk.endswith("\r\n"):
            out.append((chunk[:-2], "\r\n"))
        elif chunk.endswith("\n"):
            out.append((chunk[:-1], "\n"))
        else:
            out.append((chunk, ""))
    return out


def split_value(raw):
    """Split the text after '=' into (quote, value, suffix).

    quote is '"', "'" or ''; suffix keeps trailing blanks and an inline comment.
    """
    if raw[:1] in ('"', "'"):
        quote = raw[0]
        i = 1
        chars = []
        while i < len(raw):
            c = raw[i]
            if quote == '"' and c == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                chars.append({"n": "\n", "t": "\t"}.get(nxt, nxt) if nxt in '"\\$`nt' else c + nxt)
                i += 2
                continue
            if c == quote:
                return quote, "".join(chars), raw[i + 1 :]
            chars.append(c)
            i += 1
        # Unterminated quote: take the text literally rather than guess.
        return "", raw, ""
    match = re.search(r"[ \t]+#", raw)
    value = raw[: match.start()] if match else raw.rstrip(" \t")
    return "", value, raw[len(value) :]


def quote_value(value, style):
    """Render value in the quoting style the line already used, where that is safe."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise EnvFileError("values cannot contain newlines or NUL bytes")
    if style == "'" and "'" not in value:
        return "'" + value + "'"
    if style == '"':
        return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'
    if SAFE_UNQUOTED.match(value):
        return value
    if "'" not in value:
        return "'" + value + "'"
    return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'


def read_values(text):
    """The effective value of every key (the last assignment wins, as in shells and systemd)."""
    values = {}
    for body, _eol in split_lines(text):
        match = ASSIGNMENT.match(body)
        if match:
            values[match.group("key")] = split_value(match.group("raw"))[1]
    return values


def edit(text, values, allow_new_keys=False):
    """Return (new_text, before, changed_keys, duplicates) for setting values in text."""
    values = dict((str(k), str(v)) for k, v in values.items())
    for key in values:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise EnvFileError("not a valid env key: %r" % key)
    current = read_values(text)
    before = dict((key, current.get(key)) for key in values)
    missing = [key for key in values if key not in current]
    if missing and not allow_new_keys:
        raise EnvFileError("keys not present in the file: %s" % ", ".join(missing))
    seen = {}
    lines = []
    for body, eol in split_lines(text):
        match = ASSIGNMENT.match(body)
        if match and match.group("key") in values:
            key = match.group("key")
            seen[key] = seen.get(key, 0) + 1
            quote, old, suffix = split_value(match.group("raw"))
            if old != values[key]:
                body = (
                    match.group("lead")
                    + key
                    + match.group("eq")
                    + quote_value(values[key], quote)
                    + suffix
                )
        lines.append(body + eol)
    if missing:
        newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        lines.extend(key + "=" + quote_value(values[key], "") + newline for key in missing)
    changed_keys = [key for key in values if before[key] != values[key]]
    duplicates = sorted(key for key, count in seen.items() if count > 1)
    return "".join(lines), before, changed_keys, duplicates


def changed_lines(old_text, new_text):
    """The lines that differ, as 'N: line' texts (appended keys count as new lines)."""
    old = old_text.splitlines()
    new = new_text.splitlines()
    before, after = [], []
    for n in range(max(len(old), len(new))):
        a = old[n] if n < len(old) else None
        b = new[n] if n < len(new) else None
        if a != b:
            if a is not None:
                before.append("%d: %s\n" % (n + 1, a))
            if b is not None:
                after.append("%d: %s\n" % (n + 1, b))
    return "".join(before), "".join(after)


def backup_path(path):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate = "%s.backup.%s" % (path, stamp)
    n = 1
    while os.path.lexists(candidate):
        candidate = "%s.backup.%s.%d" % (path, stamp, n)
        n += 1
    return candidate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            values=dict(type="dict", required=True),
            allow_new_keys=dict(type="bool", default=False),
            backup=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not os.path.isfile(path):
        module.fail_json(msg="env file not found: %s" % path, path=path)
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8", "surrogateescape")
    try:
        new_text, before, changed_keys, duplicates = edit(
            text, module.params["values"], module.params["allow_new_keys"]
        )
    except EnvFileError as exc:
        module.fail_json(msg="%s: %s" % (path, exc), path=path)
    after = dict((str(k), str(v)) for k, v in module.params["values"].items())
    for key in duplicates:
        module.warn("%s: %s is assigned more than once; every assignment was set" % (path, key))
    result = dict(
        changed=new_text != text,
        path=path,
        before=before,
        after=after,
        changed_keys=changed_keys,
        backup_file="",
    )
    if module._diff and result["changed"]:
        # Only the changed lines: the rest of an env file often holds secrets (DATABASE_URL,
        # API keys) that must not reach the output or ansible-runner's artifacts.
        before_lines, after_lines = changed_lines(text, new_text)
        header = "%s (changed lines only)" % path
        result["diff"] = dict(
            before_header=header, after_header=header, before=before_lines, after=after_lines
        )
    if result["changed"] and not module.check_mode:
        if module.params["backup"]:
            result["backup_file"] = backup_path(path)
            module.preserved_copy(path, result["backup_file"])
        fd, tmp = tempfile.mkstemp(prefix=".rollback-ops.", dir=os.path.dirname(path) or ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(new_text.encode("utf-8", "surrogateescape"))
                handle.flush()
                os.fsync(handle.fileno())
        except Exception:
            os.unlink(tmp)
            raise
        module.atomic_move(tmp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
