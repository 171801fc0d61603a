"""Every JSON output is a versioned document valid against the schema shipped for its kind.

The outputs are real: a receipt of a real run on the demo's sandbox (Ansible's local
connection), `plan --json` on the sandbox and on the shipped example inventories,
`history --json` after the run, `recommend --json`; the negative tests show the schemas do
reject a wrong shape (a schema that accepts anything would pass the positive ones). The step
ids are checked for what makes them stable: one per task name in each role or tasks file,
the same in the plan as in the run.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from rollback_ops import jsonout, receipts
from rollback_ops.events import step_id
from rollback_ops.exceptions import ConfigError
from rollback_ops.lab.hosts import LabHost, lab_app_vars
from tests.conftest import ROOT
from tests.unit.ci_sandbox import run, sandbox

SHIPPED = {"receipt", "plan", "history", "recommend", "lab"}


def valid(kind: str, doc: Any) -> list[str]:
    """The schema's complaints about doc (empty: valid); doc must say its kind and version."""
    validator = Draft202012Validator(jsonout.schema(kind))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize("kind", jsonout.kinds())
def test_every_shipped_schema_is_a_valid_draft_2020_12_schema(kind: str):
    schema = jsonout.schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["kind"] == {"const": kind}
    assert schema["properties"]["schema_version"] == {"const": jsonout.SCHEMA_VERSION}
    assert {"schema_version", "kind"} <= set(schema["required"])


def test_the_outputs_have_their_schemas():
    assert set(jsonout.kinds()) >= SHIPPED


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real flag run on the sandbox through the CLI: its receipt, plan and history."""
    state = tmp_path_factory.mktemp("state")
    sandbox(state)
    capsys = _Capture()
    outputs: dict[str, Any] = {"state": state}
    code, out, err = capsys.run(state, "plan", "--level", "flag", "-i", "local", "--json")
    assert code == 0, err
    outputs["plan"] = json.loads(out)
    code, out, err = capsys.run(state, "apply", "--level", "flag", "-i", "local", "--yes", "--json")
    assert code == 0, err
    outputs["receipt"] = json.loads(out)
    code, out, err = capsys.run(state, "history", "--json")
    assert code == 0, err
    outputs["history"] = json.loads(out)
    return outputs


class _Capture:
    """capsys for a module-scoped fixture: the CLI's stdout and stderr through files."""

    def run(self, state: Path, *argv: str) -> tuple[int, str, str]:
        import contextlib
        import io

        from rollback_ops import cli

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--state-dir", str(state), *argv])
        return code, out.getvalue(), err.getvalue()


def test_a_real_receipt_is_valid_on_stdout_and_on_disk(demo_run: dict[str, Any]):
    receipt = demo_run["receipt"]
    assert valid("receipt", receipt) == []
    assert receipt["schema_version"] == 1 and receipt["kind"] == "receipt"
    saved = json.loads((Path(receipt["run_dir"]) / "receipt.json").read_text())
    assert saved == receipt
    steps = receipt["hosts"]["localhost"]["steps"]
    assert any(s["status"] == "changed" for s in steps)  # the run did change the sandbox
    # ids beside display names, never Ansible's free text
    by_id = {s["id"]: s["step"] for s in steps}
    assert by_id["envfile.set-values-in-the-env-file"] == "envfile: Set values in the env file"
    assert by_id["app.arguments-main"].startswith("app: Validating arguments against arg spec")
    assert not any("validating" in s["id"] for s in steps)
    # and receipts.load reads it back
    data, _ = receipts.load(demo_run["state"], receipt["run_id"])
    assert data == receipt


def test_plan_json_is_valid_and_names_the_steps_the_run_reports(demo_run: dict[str, Any]):
    plan = demo_run["plan"]
    assert valid("plan", plan) == []
    assert plan["kind"] == "plan" and plan["level"] == "flag" and plan["inventory"] == "local"
    (host,) = plan["hosts"]
    assert host["host"] == "localhost"
    planned = [s["id"] for s in host["steps"]]
    assert len(set(planned)) == len(planned)
    # the steps the run did were planned under the same ids (the plan leaves out what it
    # knows will not run on this host, e.g. the health call of an app without a health URL)
    done = {
        s["id"]
        for s in demo_run["receipt"]["hosts"]["localhost"]["steps"]
        if s["status"] == "changed"
        or (s["status"] != "skipped" and s["action"].startswith("rollback_ops.rollback."))
    }
    assert "envfile.set-values-in-the-env-file" in done
    assert "preflight.check-the-host-can-take-the-rollback" in done
    assert done <= set(planned), done - set(planned)


@pytest.mark.parametrize("inventory", ["example:staging", "example:production"])
@pytest.mark.parametrize("level", ["flag", "emergency"])
def test_plan_json_of_the_shipped_examples_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inventory: str, level: str
):
    code, out, err = run(capsys, tmp_path, "plan", "--level", level, "-i", inventory, "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert valid("plan", plan) == []
    assert len(plan["hosts"]) >= 2


@pytest.mark.parametrize("level", ["flag", "emergency", "config", "code", "full"])
def test_plan_json_of_every_level_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str
):
    """Every level, on an inventory describing the lab's app (every level's keys); a plan
    contacts no host, so its address need not answer."""
    inventory = tmp_path / "hosts.yml"
    app = lab_app_vars()
    hosts = {"web1": {"ansible_host": "127.0.1.11"}}
    data = {
        "all": {"vars": {"rollback_environment": "staging", "rollback_app": app}, "hosts": hosts}
    }
    inventory.write_text(yaml.safe_dump(data))
    code, out, err = run(capsys, tmp_path, "plan", "--level", level, "-i", str(inventory), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert valid("plan", plan) == []
    ids = [s["id"] for s in plan["hosts"][0]["steps"]]
    assert "preflight.check-the-host-can-take-the-rollback" in ids


def test_history_json_is_valid_and_lists_the_run(demo_run: dict[str, Any]):
    history = demo_run["history"]
    assert valid("history", history) == []
    (row,) = history["runs"]
    assert row["run_id"] == demo_run["receipt"]["run_id"]
    assert row["result"] == "ok" and row["level"] == "flag"


@pytest.mark.parametrize(
    "signals",
    [
        (),
        ("--error-rate", "12", "--for-minutes", "10"),
        ("--data-corruption", "--security"),
        ("--p95-ms", "6000", "--memory-mb", "4000", "--users-affected", "30"),
    ],
)
def test_recommend_json_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signals: tuple[str, ...]
):
    code, out, err = run(capsys, tmp_path, "recommend", *signals, "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert valid("recommend", rec) == []
    assert rec["decision"] in rec["fired"] or rec["fired"] == []


def test_lab_documents_are_valid():
    """The lab's shape from its own host records (the real `lab status --json` is validated
    in tests/integration/test_lab.py, which has the hosts)."""
    hosts = [LabHost("web1", "127.0.1.11", "rollback-ops-lab-web1", "running", "ssh root@x")]
    doc = jsonout.document(
        "lab", {"inventory": "/s/lab/hosts.yml", "hosts": [h.as_dict() for h in hosts]}
    )
    assert valid("lab", doc) == []


# --- the schemas reject what is not the contract -------------------------------------------


def test_the_receipt_schema_rejects_a_wrong_shape(demo_run: dict[str, Any]):
    good = demo_run["receipt"]
    cases: list[tuple[str, Any]] = [
        ("schema_version", 2),
        ("kind", "plan"),
        ("result", "succeeded"),
        ("exit_status", "0"),
        ("hosts", []),
    ]
    for key, value in cases:
        bad = {**good, key: value}
        assert valid("receipt", bad), key
    missing = {k: v for k, v in good.items() if k != "run_id"}
    assert any("run_id" in e for e in valid("receipt", missing))
    bad = copy.deepcopy(good)
    bad["hosts"]["localhost"]["steps"][0]["status"] = "done"
    assert any("steps/0/status" in e for e in valid("receipt", bad))
    bad = copy.deepcopy(good)
    del bad["hosts"]["localhost"]["steps"][0]["id"]
    assert any("'id' is a required property" in e for e in valid("receipt", bad))
    bad = copy.deepcopy(good)
    bad["hosts"]["localhost"]["steps"][0]["id"] = "Validating arguments against arg spec"
    assert valid("receipt", bad)


def test_the_old_bare_shapes_are_rejected(demo_run: dict[str, Any]):
    """What plan and history printed before (a bare list) is not the versioned document."""
    plan = demo_run["plan"]
    assert valid("plan", plan["hosts"])
    assert valid("history", demo_run["history"]["runs"])
    bare_steps = copy.deepcopy(plan)
    bare_steps["hosts"][0]["steps"] = [s["step"] for s in plan["hosts"][0]["steps"]]
    assert valid("plan", bare_steps)
    assert valid(
        "recommend", {"schema_version": 1, "kind": "recommend", "decision": {}, "fired": []}
    )


# --- receipts: versions ----------------------------------------------------------------------


def _saved(state: Path, receipt: dict[str, Any]) -> str:
    run_dir = state / "runs" / receipt["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "receipt.json").write_text(json.dumps(receipt))
    return str(receipt["run_id"])


def test_a_receipt_written_before_schema_version_still_loads(
    tmp_path: Path, demo_run: dict[str, Any]
):
    old = {k: v for k, v in demo_run["receipt"].items() if k not in ("schema_version", "kind")}
    for host in old["hosts"].values():
        for step in host["steps"]:
            del step["id"]  # and before step ids
    data, _ = receipts.load(tmp_path, _saved(tmp_path, old))
    assert data["run_id"] == old["run_id"]


def test_a_receipt_of_a_newer_version_or_another_kind_is_refused_naming_it(
    tmp_path: Path, demo_run: dict[str, Any]
):
    newer = {**demo_run["receipt"], "run_id": "20990101T000000Z-aaaaaa", "schema_version": 7}
    with pytest.raises(ConfigError, match="schema_version 7: written by a newer rollback-ops"):
        receipts.load(tmp_path, _saved(tmp_path, newer))
    plan = {**demo_run["receipt"], "run_id": "20990101T000000Z-bbbbbb", "kind": "plan"}
    with pytest.raises(ConfigError, match="kind: not receipt but str 'plan'"):
        receipts.load(tmp_path, _saved(tmp_path, plan))


# --- step ids: stable, one per task ----------------------------------------------------------


def _tasks(node: Any) -> list[dict[str, Any]]:
    """Every named task of a tasks file or playbook, blocks' inner tasks included."""
    out: list[dict[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            out += _tasks(item)
    elif isinstance(node, dict):
        if "hosts" in node or "import_playbook" in node:  # a play: its task lists
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                out += _tasks(node.get(key))
        else:
            if "name" in node and not {"block", "rescue", "always"} & set(node):
                out.append(node)
            for key in ("block", "rescue", "always"):
                out += _tasks(node.get(key))
    return out


def test_every_shipped_task_has_a_unique_id_in_its_role_or_file():
    ids: dict[str, str] = {}
    files = [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/**/*.yml")]
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(ROOT)
        role = rel.parts[1] if rel.parts[0] == "roles" else ""
        for task in _tasks(yaml.safe_load(path.read_text())):
            sid = step_id(role, str(task["name"]), "", str(rel))
            assert sid, (rel, task["name"])
            where = f"{rel}: {task['name']}"
            assert ids.setdefault(sid, where) == where or sid.split(".")[0] == rel.stem, (
                sid,
                ids[sid],
                where,
            )
    assert "preflight.check-the-host-can-take-the-rollback" in ids


def test_step_ids_ignore_templating_noise_and_keep_namespaces_apart():
    spec = "ansible.builtin.validate_argument_spec"
    noisy = "Validating arguments against arg spec 'release' - Release this run's lock"
    assert (
        step_id("preflight", noisy, spec, "/x/playbooks/flag.yml:5")
        == "preflight.arguments-release"
    )
    start = (
        "/tmp/runs/r1/collections/ansible_collections/rollback_ops/rollback"
        "/playbooks/tasks/start.yml:27"
    )
    assert (
        step_id("", "Check the request", "ansible.builtin.assert", start)
        == "start.check-the-request"
    )
    # the same task from another checkout, another run dir, another line: the same id
    other = "/srv/venv/lib/rollback_ops/_ansible/playbooks/tasks/start.yml:31"
    assert (
        step_id("", "Check the request", "ansible.builtin.assert", other)
        == "start.check-the-request"
    )
    assert step_id("backup", "Take the set", "x", "") == "backup.take-the-set"
    assert step_id("", "", "x", "") == ""


# --- a reader that goes away (`rollback-ops plan --json | head`) -----------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("plan", "--level", "flag", "-i", "local", "--json"),
        ("plan", "--level", "emergency", "-i", "example:production", "--json"),
        ("history", "--json"),
        ("recommend", "--error-rate", "30", "--json"),
        ("demo", "--json"),
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_json_output_into_a_closed_pipe_ends_quietly_with_141(
    tmp_path: Path, argv: tuple[str, ...]
):
    """The real CLI, its stdout a pipe whose reader has gone before it writes (as `| head`
    when the output outgrows the pipe): exit 141, no traceback, no "Exception ignored"."""
    sandbox(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(tmp_path), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "rollback-ops: error" not in err and "internal error" not in err


def test_plan_json_read_by_head_ends_cleanly(tmp_path: Path):
    """`plan --json | head -3` through a shell, as reported."""
    sandbox(tmp_path)
    line = (
        f"{shlex.quote(sys.executable)} -m rollback_ops --state-dir {shlex.quote(str(tmp_path))} "
        "plan --level flag -i local --json | head -3; echo rc=${PIPESTATUS[0]}"
    )
    proc = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=300, check=False
    )
    head, _, rc = proc.stdout.rpartition("rc=")
    assert head.splitlines() == ["{", '  "schema_version": 1,', '  "kind": "plan",']
    assert rc.strip() in ("0", "141") and proc.stderr == ""
