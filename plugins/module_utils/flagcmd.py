# -*- coding: utf-8 -*-
# A command flag backend (rollback_app.flag_backend, type command): the app's own commands
# read and write its flags (seed 002's manage.py configure_ux_features, flags in a database,
# per tenant). {key} and {value} in the argv are replaced here, in one pass, by the literal
# key and value (never Jinja, never a shell). Runs through hooks.run (argv, as a user, in a
# directory, with an environment and a timeout). Stdlib only.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.rollback_ops.rollback.plugins.module_utils.hooks import run

PLACEHOLDER = re.compile(r"\{(key|value)\}")


def argv(template, key, value=None):
    """TEMPLATE with {key} and {value} replaced, each element in one pass (a value holding
    "{key}" stays as it is)."""
    values = {"key": key, "value": "" if value is None else value}
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], str(a)) for a in template]


def last_line(text):
    """The last non-blank line of TEXT (a command's error, in a one-line message)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


class FlagCommandError(Exception):
    """A get or set failed: its one-line message names the key and the command."""


class FlagCommands:
    """The get and set commands of one app, run as its user in its directory."""

    def __init__(self, get, set_, user="", chdir="", environment=None, timeout=60):
        self.get_argv = list(get)
        self.set_argv = list(set_)
        self.user = user or ""
        self.chdir = chdir or ""
        self.environment = dict((str(k), str(v)) for k, v in (environment or {}).items())
        self.timeout = int(timeout or 60)

    def _run(self, command, what):
        spec = dict(
            command=command,
            user=self.user,
            chdir=self.chdir,
            timeout=self.timeout,
            expect_rc=[0],
        )
        result = run(spec, self.environment)
        if result.get("error"):
            why = last_line(result.get("stderr_tail")) or last_line(result.get("stdout_tail"))
            raise FlagCommandError(
                "%s: %s %s%s" % (what, command[0], result["error"], (": " + why) if why else "")
            )
        return result

    def get(self, key):
        """KEY's current value: the command's stdout without its final line break."""
        result = self._run(argv(self.get_argv, key), "flag backend get %s" % key)
        out = result.get("stdout_tail") or ""
        if out.endswith("\n"):
            out = out[:-1]
        if out.endswith("\r"):
            out = out[:-1]
        if "\n" in out:
            raise FlagCommandError(
                "flag backend get %s: %s printed %d lines; it must print the value on one line"
                % (key, self.get_argv[0], out.count("\n") + 1)
            )
        return out

    def set(self, key, value):
        self._run(argv(self.set_argv, key, value), "flag backend set %s" % key)
