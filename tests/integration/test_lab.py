"""The lab itself: `lab up` is safe to run twice, `lab status` says how to reach each host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import LabHosts
from tests.integration.test_demo import NO_DOCKER


def test_lab_up_twice_keeps_the_hosts_and_status_lists_them(lab_session: LabHosts):
    ids = {h: lab_session.lab.container(h).id for h in lab_session.names}
    hosts = lab_session.lab.up(3)
    assert [h.name for h in hosts] == lab_session.names
    assert {h: lab_session.lab.container(h).id for h in lab_session.names} == ids
    run = lab_session.cli("lab", "status", "--name", "test", "--json")
    assert run.code == 0, run.stderr
    status = json.loads(run.stdout)
    assert status["inventory"] == lab_session.inventory
    for host in status["hosts"]:
        assert host["state"] == "running"
        assert host["address"].startswith("127.0.1.")
        assert f"root@{host['address']}" in host["ssh"]
        with socket.create_connection((host["address"], 22), timeout=2) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")


def test_lab_without_the_docker_sdk_says_how_to_get_it(tmp_path: Path):
    (tmp_path / "sitecustomize.py").write_text(NO_DOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NO_DOCKER_LOG=str(tmp_path / "log"))
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(tmp_path), "lab", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 4
    assert "the test lab needs the Docker SDK: pip install -e '.[lab]'" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # one line, no traceback
    assert (tmp_path / "log").read_text().startswith("docker")
