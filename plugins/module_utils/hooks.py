# -*- coding: utf-8 -*-
# The app's hooks (rollback_app.hooks): which steps each level has, the rules the schema
# cannot express, and running one hook on the host (argv, no shell, as a user, in a
# directory, with an environment and a timeout). Used by the hook module, the app schema's
# rules (app_spec.py) and the plan (rollback_ops/operations/levels.py). Stdlib only.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import pwd
import signal
import subprocess
import time

# the points of each level where hooks run, in the order they run (a new level adds a row;
# its playbook includes playbooks/tasks/hooks.yml with hooks_step at each of them)
STEPS = {
    "code": ("before_stop", "after_revert", "after_start", "verify"),
    "full": ("before_stop", "after_revert", "after_start", "verify"),
    "data": ("before_stop", "after_restore", "after_start", "verify"),
    # the app keeps running (seed 003 step 4): no stop, so no before_stop/after_start
    "schema": ("before_change", "after_change", "verify"),
    "config": ("before_change", "after_change", "after_start", "verify"),
    "flag": ("after_change", "after_start", "verify"),
    "emergency": ("after_change", "after_start", "verify"),
}
ALL_STEPS = tuple(sorted(set(s for steps in STEPS.values() for s in steps)))
TAIL_CHARS = 2000  # of stdout and stderr kept in the result


def problems(hooks):
    """(index, key, message) for each hook the schema lets through but cannot run."""
    seen = set()
    for i, hook in enumerate(hooks or []):
        name, step = hook.get("name", ""), hook.get("step", "")
        if not name:
            yield i, "name", "must not be empty"
        elif name in seen:
            yield i, "name", "%r is used by another hook" % name
        seen.add(name)
        command = hook.get("command") or []
        if not command or not str(command[0]).strip():
            yield i, "command", "must be a non-empty argv list (the program first)"
        if step not in ALL_STEPS:
            yield i, "step", "%r is not a step; steps: %s" % (step, ", ".join(ALL_STEPS))
            continue
        levels = hook.get("levels") or []
        for level in levels:
            if level not in STEPS:
                yield (
                    i,
                    "levels",
                    "%r is not a level with hooks; levels: %s"
                    % (
                        level,
                        ", ".join(sorted(STEPS)),
                    ),
                )
            elif step not in STEPS[level]:
                yield (
                    i,
                    "levels",
                    "level %s has no step %s; its steps: %s"
                    % (
                        level,
                        step,
                        ", ".join(STEPS[level]),
                    ),
                )
        if not levels and not any(step in s for s in STEPS.values()):
            yield i, "step", "no level has step %r" % step
        if hook.get("timeout", 1) <= 0:
            yield i, "timeout", "must be at least 1 second"
        for key in list(hook.get("environment") or {}) + list(hook.get("environment_from") or {}):
            if not key or "=" in key or "\0" in key:
                yield i, "environment", "%r is not an env key" % key


def for_step(hooks, level, step):
    """The hooks that run at ``step`` of ``level``, in their order."""
    return [
        h
        for h in hooks or []
        if h.get("step") == step
        and step in STEPS.get(level, ())
        and (not h.get("levels") or level in h["levels"])
    ]


def describe(hook):
    """How the plan and check mode show a hook: ``name: argv (as user, in dir)``."""
    where = []
    if hook.get("user"):
        where.append("as " + hook["user"])
    if hook.get("chdir"):
        where.append("in " + hook["chdir"])
    secret = sorted(hook.get("environment_from") or {})
    if secret:
        where.append("secret env " + ", ".join(secret))
    text = "%s: %s" % (hook.get("name", ""), " ".join(hook.get("command") or []))
    return text + (" (%s)" % "; ".join(where) if where else "")


def _tail(data):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
    return text[-TAIL_CHARS:]


def run(hook, env_values, stdout_file=None):
    """Run one hook; a dict with rc, duration, stdout_tail, stderr_tail, timed_out and an
    error message ("" when rc is expected). ``env_values`` is its whole extra environment.
    With ``stdout_file`` (an open binary file) its whole stdout goes there instead (a dump
    of the app's config rows), and stdout_tail is empty."""
    argv = [str(a) for a in hook["command"]]
    user = hook.get("user") or ""
    home = None
    if user:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return {"rc": None, "error": "user %s does not exist on this host" % user}
        home = entry.pw_dir
        if entry.pw_uid != os.geteuid():
            if os.geteuid() != 0:
                return {"rc": None, "error": "running as user %s needs root" % user}
            argv = ["runuser", "-u", user, "--"] + argv
    env = dict(os.environ)
    if user:
        env.update(HOME=home or "/", USER=user, LOGNAME=user)
    env.update(dict((str(k), str(v)) for k, v in env_values.items()))
    cwd = hook.get("chdir") or home or os.environ.get("HOME") or "/"
    if not os.path.isdir(cwd):
        return {"rc": None, "error": "directory %s does not exist" % cwd}
    started = time.time()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_file is None else stdout_file,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        return {"rc": None, "error": "cannot run %s: %s" % (argv[0], e.strerror or e)}
    timed_out = False
    try:
        out, err = proc.communicate(timeout=hook.get("timeout") or 300)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    result = {
        "rc": proc.returncode,
        "duration": round(time.time() - started, 3),
        "stdout_tail": _tail(out),
        "stderr_tail": _tail(err),
        "timed_out": timed_out,
        "error": "",
    }
    expected = hook.get("expect_rc") or [0]
    if timed_out:
        result["error"] = "timed out after %ss" % hook.get("timeout")
    elif proc.returncode not in expected:
        result["error"] = "exited %s (expected %s)" % (
            proc.returncode,
            " or ".join(str(c) for c in expected),
        )
    return result
