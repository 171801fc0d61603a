"""`rollback-ops status` on the lab hosts: the hosts in sync, then one drifted by hand (a flag
edited and another release checked out on web2, a lock left by another controller's run), a
verified backup set on web1; status shows web2's values beside the others', exits 5, its JSON
is valid, and it changed nothing on any host."""

from __future__ import annotations

import json
import time

import jsonschema

from rollback_ops import jsonout
from rollback_ops.status import DRIFT_EXIT
from tests.integration.conftest import ENV_FILE, LabHosts

LOCK = "/var/lib/rollback-ops/rollback.lock"
APP = "/opt/analyticbot/app"


def status(lab: LabHosts, *extra: str) -> tuple[int, dict, str]:
    run = lab.cli("status", "--inventory", lab.inventory, "--json", *extra)
    doc = json.loads(run.stdout) if run.stdout.strip() else {}
    if doc:
        jsonschema.validate(doc, jsonout.schema("status"), cls=jsonschema.Draft202012Validator)
    return run.code, doc, run.stderr


def test_status_shows_where_each_host_stands_and_the_drifted_one(lab: LabHosts):
    code, doc, err = status(lab)
    assert code == 0, err
    assert doc["drift"] == [] and doc["in_sync"] and doc["unreadable"] == doc["incomplete"] == []
    for host in lab.names:
        seen = doc["hosts"][host]
        assert seen["flags"]["ENABLE_TIME_WEIGHTING"] == "true"
        assert seen["code"]["release"] == "release-1.4.0" and not seen["code"]["dirty"]
        assert seen["units"] == {"analyticbot-api": "active"} and seen["maintenance"] is False
        (image,) = seen["images"].values()
        (worker,) = seen["containers"]["worker"]
        assert worker["status"] == "running" and worker["image"] == image  # its tag's image
        assert seen["lock"] == {}
    made = lab.cli("backup", "create", "--inventory", lab.inventory, "--limit", "web1", "--json")
    assert made.code == 0, made.stderr
    set_id = made.receipt["hosts"]["web1"]["data"]["set_id"]
    record = {
        "run_id": "20260101T000000Z-e0e0e0",
        "operator": "eve",
        "controller": "ctl-2",
        "since": "2026-01-01T00:00:00Z",
        "epoch": time.time() - 90,
    }
    try:
        lab.sh(
            "web2",
            f"sed -i 's/^ENABLE_TIME_WEIGHTING=true$/ENABLE_TIME_WEIGHTING=false/' {ENV_FILE} && "
            f"git -C {APP} checkout -q release-1.5.0 && "
            f"mkdir -p /var/lib/rollback-ops && echo '{json.dumps(record)}' > {LOCK}",
        )
        before = lab.fingerprint()
        code, doc, err = status(lab)
        text = lab.cli("status", "--inventory", lab.inventory)
        lab.assert_unchanged(before)  # status changed nothing on any host
    finally:
        lab.sh("web2", f"git -C {APP} checkout -q main && rm -f {LOCK}")
        lab.sh("web1", f"rm -rf /var/backups/rollback-ops/analyticbot/{set_id}")
    assert code == DRIFT_EXIT and text.code == DRIFT_EXIT, err + text.stderr
    drifted = {d["field"]: d for d in doc["drift"]}
    assert {"flag ENABLE_TIME_WEIGHTING", "code", "release"} <= set(drifted)
    for field in ("flag ENABLE_TIME_WEIGHTING", "code", "release"):
        assert drifted[field]["odd_hosts"] == ["web2"], field
    flag = drifted["flag ENABLE_TIME_WEIGHTING"]
    assert flag["values"] == {"web1": "true", "web2": "false", "web3": "true"}
    assert drifted["release"]["values"]["web2"] == "release-1.5.0"
    assert doc["hosts"]["web2"]["lock"]["operator"] == "eve"
    assert 60 <= doc["hosts"]["web2"]["lock"]["age_seconds"] < 600
    web1 = doc["hosts"]["web1"]
    assert web1["backup"]["set_id"] == set_id and web1["backup"]["age_seconds"] < 600
    assert web1["last_run"]["level"] == "backup-create" and web1["last_run"]["result"] == "ok"
    # side by side: web2's value between web1's and web3's, marked as the odd one out
    row = next(line.split() for line in text.stdout.splitlines() if "ENABLE_TIME_WEIGHTING" in line)
    assert row == ["flag", "ENABLE_TIME_WEIGHTING", "true", "!", "false", "true"]
    assert "run 20260101T000000Z-e0e0e0 of eve" in text.stdout
    assert "DRIFT: hosts of one app disagree" in text.stdout
