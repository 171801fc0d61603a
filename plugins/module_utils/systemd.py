# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""Ask systemd about units: whether it runs, and ``systemctl show``'s properties per unit.

Shared host-side code of the preflight and systemd_units modules. Python 3.6+ standard
library only; ``systemctl`` is run through the module's ``run_command`` (no shell).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


class SystemdError(Exception):
    """systemctl failed, or a unit systemd does not know; the message names it."""


def systemd_running():
    """Whether systemd is the host's init (as systemd itself tells: /run/systemd/system)."""
    return os.path.isdir("/run/systemd/system")


def parse_show(out, units):
    """``systemctl show``'s output for units (blocks separated by a blank line, in the order
    asked) as {unit: {property: value}}."""
    blocks = [b for b in out.strip().split("\n\n") if b.strip()]
    return dict(
        (unit, dict(line.split("=", 1) for line in block.splitlines() if "=" in line))
        for unit, block in zip(units, blocks)
    )


def not_loaded(unit, props):
    """None, or the problem of a unit systemd has not loaded (unknown, masked, bad setting)."""
    if props.get("LoadState") == "loaded":
        return None
    return "systemd unit %s is %s, not loaded" % (unit, props.get("LoadState") or "unknown")


def show(module, units, properties, systemctl=None):
    """{unit: {property: value}} for units; SystemdError when systemctl fails."""
    systemctl = systemctl or module.get_bin_path("systemctl", required=True)
    rc, out, err = module.run_command(
        [systemctl, "show", "--property=" + ",".join(properties), "--"] + list(units)
    )
    if rc != 0:
        raise SystemdError("systemctl show failed: %s" % err.strip())
    return parse_show(out, units)
