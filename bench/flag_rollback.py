#!/usr/bin/env python3
"""Time a one-host flag rollback (edit one env line + restart the unit, checks off) three ways,
alternating in one run, and print medians and ratios:

  rollback-ops   `rollback-ops apply --level flag --no-verify` (its preflight included)
  ansible        plain `ansible-playbook` of an equivalent play (lineinfile + systemd restart)
                 with Ansible's default settings (no ansible.cfg)
  ssh            `ssh host "sed -i ... && systemctl restart ..."`

Needs a lab: `rollback-ops lab up --hosts 1` (or more; the first host is used).
Usage: python bench/flag_rollback.py [--rounds N] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ENV_FILE = "/srv/analyticbot/.env.production"
FLAG = "ENABLE_TIME_WEIGHTING"
PLAY = f"""
- name: Equivalent plain play
  hosts: all
  gather_facts: false
  tasks:
    - name: Set the flag
      ansible.builtin.lineinfile:
        path: {ENV_FILE}
        regexp: '^{FLAG}='
        line: '{FLAG}={{{{ value }}}}'
      register: edit
    - name: Restart
      ansible.builtin.systemd_service:
        name: analyticbot-api
        state: restarted
      when: edit is changed
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    from rollback_ops import paths

    state = paths.state_dir(args.state_dir)
    inventory = state / "labs" / "lab" / "inventory.yml"
    if not inventory.exists():
        print("no lab: run `rollback-ops lab up --hosts 1` first", file=sys.stderr)
        return 2
    data = yaml.safe_load(inventory.read_text())["all"]
    host, host_vars = next(iter(data["hosts"].items()))
    address, key = host_vars["ansible_host"], data["vars"]["ansible_ssh_private_key_file"]
    bindir = Path(sys.executable).parent
    tool = shutil.which("rollback-ops", path=str(bindir)) or "rollback-ops"
    playbook_bin = shutil.which("ansible-playbook", path=str(bindir)) or "ansible-playbook"
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    (work / "play.yml").write_text(PLAY)
    (work / "empty.cfg").write_text("")
    ssh_opts = [
        "-i",
        key,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
    ]

    def rollback_ops(value: str) -> list[str]:
        return [
            tool,
            "--state-dir",
            str(state),
            "apply",
            "--level",
            "flag",
            "--inventory",
            "lab",
            "--limit",
            host,
            "--flag",
            f"{FLAG}={value}",
            "--no-verify",
            "--yes",
        ]

    def ansible(value: str) -> list[str]:
        return [
            playbook_bin,
            "-i",
            str(inventory),
            "--limit",
            host,
            "-e",
            f"value={value}",
            str(work / "play.yml"),
        ]

    def ssh(value: str) -> list[str]:
        script = (
            f"sed -i 's/^{FLAG}=.*/{FLAG}={value}/' {ENV_FILE} && systemctl restart analyticbot-api"
        )
        return ["ssh", *ssh_opts, f"root@{address}", script]

    methods = {
        "rollback-ops": rollback_ops,
        "ansible-playbook (defaults)": ansible,
        "ssh loop": ssh,
    }
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "ANSIBLE_CONFIG": str(work / "empty.cfg"),
        "HOME": str(Path.home()),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    value = "false"
    for _ in range(args.rounds):
        for name, argv in methods.items():
            value = "true" if value == "false" else "false"  # every run really changes the file
            t0 = time.perf_counter()
            proc = subprocess.run(argv(value), env=env, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                print(
                    f"{name} failed (rc {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                )
                return 1
            times[name].append(elapsed)
    base = statistics.median(times["ansible-playbook (defaults)"])
    print(
        f"one-host flag rollback (edit + restart, checks off), "
        f"{args.rounds} alternating rounds, host {host}"
    )
    print(f"{'method':<30}{'median s':>10}{'min s':>8}{'max s':>8}{'vs ansible':>12}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<30}{med:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{med / base:>11.2f}x")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
