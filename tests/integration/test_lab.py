"""The lab itself: `lab up` is safe to run twice, `lab status` says how to reach each host."""

from __future__ import annotations

import json
import socket

from jsonschema import Draft202012Validator

from rollback_ops import jsonout
from tests.integration.conftest import LabHosts


def test_lab_up_twice_keeps_the_hosts_and_status_lists_them(lab_session: LabHosts):
    ids = {h: lab_session.lab.container(h).id for h in lab_session.names}
    hosts = lab_session.lab.up(3)
    assert [h.name for h in hosts] == lab_session.names
    assert {h: lab_session.lab.container(h).id for h in lab_session.names} == ids
    run = lab_session.cli("lab", "status", "--name", "test", "--json")
    assert run.code == 0, run.stderr
    status = json.loads(run.stdout)
    schema = Draft202012Validator(jsonout.schema("lab"))
    assert [e.message for e in schema.iter_errors(status)] == []
    assert status["inventory"] == lab_session.inventory
    for host in status["hosts"]:
        assert host["state"] == "running"
        assert host["address"].startswith("127.0.1.")
        assert f"root@{host['address']}" in host["ssh"]
        with socket.create_connection((host["address"], 22), timeout=2) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH")
