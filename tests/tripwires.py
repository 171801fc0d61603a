"""Tripwires for "this is never reached" (`plan` contacts no host): ansible-runner's entry
points, the runner adapter, every new process and every outgoing connection are replaced by
functions that fail the test if they are ever called.

A host can only be reached through one of them: Ansible runs through ansible-runner (a
forked ansible-playbook), SSH is a forked ``ssh`` (or paramiko's socket), and anything else
on the network needs a socket's connect. In the unit tier ``install`` is used in-process with
pytest's monkeypatch; ``python tests/tripwires.py ARGS`` runs the CLI with them in place
(exit 99 naming the wire when one trips), for the integration tests that run the CLI in a
process of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import ansible_runner
import ansible_runner.interface

from rollback_ops import inventory, runner

TRIPPED_EXIT = 99


def install(trip: Callable[[str], Any], patch: Callable[[Any, str, Any], None]) -> None:
    """Replace every way out with one that calls trip(what); patch(owner, name, value) does
    the replacing (pytest's monkeypatch.setattr, so the unit tests undo it)."""
    # first what the CLI does anyway, with no host in sight: ansible-core reads its
    # configuration as rollback-ops sets it, and ansible's display runs ldconfig (to find
    # libc) when first imported
    inventory.configure_ansible()
    import ansible.utils.display  # noqa: F401

    def wire(what: str) -> Callable[..., Any]:
        def tripped(*args: Any, **kwargs: Any) -> Any:
            return trip(f"{what} called: {args!r:.300}")

        return tripped

    for owner, name in [
        (ansible_runner, "run"),
        (ansible_runner, "run_async"),
        (ansible_runner.interface, "run"),
        (ansible_runner.interface, "run_async"),
        (runner, "run_playbook"),
        (subprocess.Popen, "_execute_child"),  # every subprocess.run/Popen/check_output
        (os, "fork"),  # pexpect (ansible-runner), multiprocessing
        (os, "forkpty"),
        (os, "posix_spawn"),
        (os, "posix_spawnp"),
        (os, "system"),
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
    ]:
        patch(owner, name, wire(f"{getattr(owner, '__name__', owner)}.{name}"))


def _trip_and_exit(what: str) -> None:
    sys.stderr.write(f"TRIPWIRE: {what}\n")
    sys.stderr.flush()
    os._exit(TRIPPED_EXIT)  # at once: no handler may catch it and carry on


def main() -> int:
    from rollback_ops import cli

    install(_trip_and_exit, setattr)
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
