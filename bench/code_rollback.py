#!/usr/bin/env python3
"""Time a code rollback of the lab's bad release on 1 and on N hosts, four ways, alternating in
one run (each timed run starts from the bad release, deployed untimed before it):

  rollback-ops           `rollback-ops apply --level code --no-verify` (all its steps: preflight,
                         maintenance, stop, record + revert, pip, no-cache image rebuild,
                         compose up + settle, start, maintenance off)
  rollback-ops verified  the same with the checks (units, health, log)
  ansible-playbook       a plain play doing the core of it (git checkout, docker-compose build
                         --no-cache + up -d, systemctl restart), Ansible's default settings
  ssh loop               the same commands over `ssh`, host after host

Needs a lab: `rollback-ops lab up --hosts 3`.
Usage: python bench/code_rollback.py [--rounds N] [--hosts 1,3] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

APP = "/opt/analyticbot/app"
CORE = (
    f"cd {APP} && git checkout -q -f release-1.4.0 && cd worker && "
    "docker-compose build -q --no-cache worker && docker-compose up -d worker 2>/dev/null && "
    "systemctl restart analyticbot-api"
)
PLAY = f"""
- name: Plain code rollback
  hosts: all
  gather_facts: false
  tasks:
    - name: Check out the good release
      ansible.builtin.command: git -C {APP} checkout -q -f release-1.4.0
    - name: Rebuild the worker image
      ansible.builtin.command: docker-compose build -q --no-cache worker
      args:
        chdir: {APP}/worker
    - name: Recreate the worker
      ansible.builtin.command: docker-compose up -d worker
      args:
        chdir: {APP}/worker
    - name: Restart the API
      ansible.builtin.systemd_service:
        name: analyticbot-api
        state: restarted
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", default="1,3", help="host counts to time, comma-separated")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    from rollback_ops import paths

    state = paths.state_dir(args.state_dir)
    inventory = state / "labs" / "lab" / "inventory.yml"
    if not inventory.exists():
        print("no lab: run `rollback-ops lab up --hosts 3` first", file=sys.stderr)
        return 2
    data = yaml.safe_load(inventory.read_text())["all"]
    all_hosts = list(data["hosts"])
    key = data["vars"]["ansible_ssh_private_key_file"]
    bindir = Path(sys.executable).parent
    tool = shutil.which("rollback-ops", path=str(bindir)) or "rollback-ops"
    playbook_bin = shutil.which("ansible-playbook", path=str(bindir)) or "ansible-playbook"
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    (work / "play.yml").write_text(PLAY)
    (work / "empty.cfg").write_text("")
    ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    ssh += ["-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin:/usr/sbin:/sbin",
        "ANSIBLE_CONFIG": str(work / "empty.cfg"),
        "HOME": str(Path.home()),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
    }

    def on_hosts(hosts: list[str], script: str) -> None:
        def one(host: str) -> None:
            address = data["hosts"][host]["ansible_host"]
            subprocess.run([*ssh, f"root@{address}", script], check=True, capture_output=True)

        with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(one, hosts))

    def rollback_ops(hosts: list[str], verify: bool) -> list[list[str]]:
        argv = [tool, "--state-dir", str(state), "apply", "--level", "code", "--inventory", "lab"]
        argv += ["--limit", ",".join(hosts), "--yes", "--json"]
        return [argv + ([] if verify else ["--no-verify"])]

    def ansible(hosts: list[str]) -> list[list[str]]:
        return [
            [playbook_bin, "-i", str(inventory), "--limit", ",".join(hosts), str(work / "play.yml")]
        ]

    def ssh_loop(hosts: list[str]) -> list[list[str]]:
        return [[*ssh, f"root@{data['hosts'][h]['ansible_host']}", CORE] for h in hosts]

    methods = {
        "rollback-ops": lambda hs: rollback_ops(hs, verify=False),
        "rollback-ops verified": lambda hs: rollback_ops(hs, verify=True),
        "ansible-playbook": ansible,
        "ssh loop": ssh_loop,
    }
    breakdown: dict[str, float] = {}
    for count in [int(c) for c in args.hosts.split(",")]:
        hosts = all_hosts[:count]
        if len(hosts) < count:
            print(f"the lab has {len(all_hosts)} host(s), not {count}", file=sys.stderr)
            return 2
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.rounds):
            for name, make in methods.items():
                on_hosts(hosts, "lab-release reset && lab-release deploy-bad")
                t0 = time.perf_counter()
                for argv in make(hosts):
                    proc = subprocess.run(
                        argv, env=env, capture_output=True, text=True, check=False
                    )
                    if proc.returncode != 0:
                        print(f"{name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
                        return 1
                    if name == "rollback-ops":
                        for host in json.loads(proc.stdout)["hosts"].values():
                            for step in host["steps"]:
                                breakdown[step["step"]] = (
                                    breakdown.get(step["step"], 0.0) + step["duration"]
                                )
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["ansible-playbook"])
        print(f"\ncode rollback on {count} host(s), {args.rounds} alternating rounds")
        print(f"{'method':<24}{'median s':>10}{'min s':>8}{'max s':>8}{'vs ansible':>12}")
        for name, values in times.items():
            med = statistics.median(values)
            print(
                f"{name:<24}{med:>10.2f}{min(values):>8.2f}{max(values):>8.2f}{med / base:>11.2f}x"
            )
    on_hosts(all_hosts, "lab-release reset")
    total = sum(breakdown.values()) or 1.0
    print("\nwhere rollback-ops' time goes (sum over hosts and rounds, per step):")
    for step, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {seconds / total:>5.0%}  {step}")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
