"""The code level before any host is touched: rollback_app.code/maintenance/docker, the plan,
and resuming a run from its receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import api, operations
from rollback_ops.exceptions import ConfigError

GIT_APP: dict[str, Any] = {
    "name": "analyticbot",
    "env_file": "/srv/analyticbot/.env",
    "units": ["analyticbot-api"],
    "drain_timeout": 60,
    "code": {
        "path": "/opt/analyticbot/app",
        "git": {"mode": "revert", "release_tags": "release-*"},
        "deps": {"requirements": "requirements.txt", "venv": "/opt/analyticbot/venv"},
    },
    "maintenance": {"file": "/srv/analyticbot/MAINTENANCE"},
    "docker": {
        "images": [{"context": "/opt/analyticbot/app/worker", "tag": "worker:1", "nocache": True}],
        "compose": {"project_dir": "/opt/analyticbot/app/worker", "services": ["worker"]},
        "log_error_pattern": "Traceback",
    },
    "health": {"url": "http://127.0.0.1:1/health", "expect": {"status": "healthy"}},
}


def write_inventory(tmp_path: Path, app: dict[str, Any], name: str = "inv") -> str:
    path = tmp_path / f"{name}.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"web1": {"ansible_host": "127.0.0.1"}, "web2": {}},
                    "vars": {"rollback_environment": "staging", "rollback_app": app},
                }
            }
        )
    )
    return str(path)


def test_plan_of_a_git_app_lists_every_step_in_order(tmp_path: Path, state_dir: Path):
    inv = write_inventory(tmp_path, GIT_APP)
    steps = api.plan(api.prepare("code", inv, limit="web1", state_dir=state_dir))[0].changes
    assert steps[0].startswith("preflight (every host, all or nothing): the previous release")
    assert "the Docker engine answers, compose is installed" in steps[0]
    firsts = [s.split(" (")[0].split(",")[0].split()[0] for s in steps]
    assert firsts == [
        "preflight",
        "if",
        "maintenance",
        "stop",
        "stop",
        "record",
        "pip",
        "rebuild",
        "compose",
        "start",
        "verify",
        "verify",
        "maintenance",
    ]
    assert "up to 60 s to drain" in steps[3]
    assert "commit the target's tree on top of HEAD (history kept)" in steps[5]
    assert "rebuild image worker:1 from /opt/analyticbot/app/worker, no cache" in steps[7]
    assert "log nothing matching /Traceback/" in steps[8]


def test_plan_of_a_files_app_and_the_options_that_do_not_fit(tmp_path: Path, state_dir: Path):
    app = {**GIT_APP, "code": {"path": "/srv/e", "files": {"restore": ["w.py"], "remove": ["x"]}}}
    inv = write_inventory(tmp_path, app)
    prep = api.prepare(
        "code", inv, operations.Request(backup_stamp="20250120_140000"), state_dir=state_dir
    )
    steps = api.plan(prep)[0].changes
    assert "/srv/e/<file>.backup.20250120_140000 exists for w.py" in steps[0]
    assert any(s.startswith("tar the current files") and "remove x" in s for s in steps)
    with pytest.raises(ConfigError, match="web1, web2: --to is for git; app analyticbot restores"):
        api.prepare("code", inv, operations.Request(to="v1"), state_dir=state_dir)
    git_inv = write_inventory(tmp_path, GIT_APP, "git")
    with pytest.raises(ConfigError, match="--backup-stamp is for backup files"):
        api.prepare("code", git_inv, operations.Request(backup_stamp="1"), state_dir=state_dir)


def test_an_app_without_code_cannot_take_the_code_level(tmp_path: Path, state_dir: Path):
    inv = write_inventory(tmp_path, {"name": "shop", "env_file": "/srv/.env"})
    with pytest.raises(ConfigError, match=r"app shop has no rollback_app\.code"):
        api.prepare("code", inv, state_dir=state_dir)


def test_every_problem_in_the_code_sections_is_named_at_once(tmp_path: Path, state_dir: Path):
    app = {
        "name": "x",
        "code": {"path": "opt/x", "git": {"mode": "reset"}, "files": {"restore": ["../etc"]}},
        "maintenance": {"env": {"MAINT": "1"}, "enable_command": ["on"]},
        "docker": {"images": [{"tag": "t", "nocache": "yes", "pull": True}], "settle": -1},
    }
    inv = write_inventory(tmp_path, app)
    with pytest.raises(ConfigError) as info:
        api.prepare("code", inv, state_dir=state_dir)
    text = str(info.value)
    for expected in (
        "rollback_app.code.path: must be an absolute path, not 'opt/x'",
        "rollback_app.code: needs exactly one of git or files",
        "rollback_app.code.git.mode: must be checkout or revert, not 'reset'",
        "rollback_app.code.files.restore[0]: '../etc' must be relative to code.path",
        "rollback_app.maintenance.env: needs rollback_app.env_file",
        "rollback_app.maintenance.env_off: must set the same keys as maintenance.env",
        "rollback_app.maintenance: enable_command and disable_command go together",
        "rollback_app.docker.images[0].context: is required",
        "rollback_app.docker.images[0].nocache: must be true or false",
        "rollback_app.docker.images[0].pull: unknown key",
        "rollback_app.docker.settle: must be a whole number >= 0",
    ):
        assert expected in text, (expected, text)


def receipt(state_dir: Path, run_id: str, inv: str, **over: Any) -> None:
    run_dir = state_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    data = {
        "run_id": run_id,
        "level": "code",
        "inventory_path": inv,
        "check": False,
        "result": "failed",
        "request": {"level": "code", "to": "", "backup_stamp": "", "force": True},
        "hosts": {
            "web1": {"status": "changed", "code": {"target": {"sha": "a" * 40}}},
            "web2": {"status": "failed", "code": {"target": {"sha": "b" * 40}}},
        },
        **over,
    }
    (run_dir / "receipt.json").write_text(json.dumps(data))


def test_resume_continues_only_the_unfinished_hosts_with_their_pinned_targets(
    tmp_path: Path, state_dir: Path
):
    inv = write_inventory(tmp_path, GIT_APP)
    receipt(state_dir, "R1", inv)
    prep = api.prepare_resume("R1", state_dir=state_dir)
    assert prep.hosts == ["web2"]
    assert prep.request.targets == {"web2": "b" * 40}
    assert prep.request.force and prep.request.resumes == "R1"
    plan = api.plan(prep)[0].changes
    assert plan[0].startswith(f"preflight (every host, all or nothing): {'b' * 40} exists")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"result": "ok"}, "finished on every host; nothing to resume"),
        ({"check": True}, "was a check-mode run"),
        ({"level": "flag"}, "is level 'flag'; only code, data, full resume"),
    ],
)
def test_resume_refuses_what_cannot_be_resumed(
    tmp_path: Path, state_dir: Path, over: dict[str, Any], message: str
):
    inv = write_inventory(tmp_path, GIT_APP)
    receipt(state_dir, "R1", inv, **over)
    with pytest.raises(ConfigError, match=message):
        api.prepare_resume("R1", state_dir=state_dir)


def test_resume_of_an_unknown_run_or_against_another_inventory(tmp_path: Path, state_dir: Path):
    inv = write_inventory(tmp_path, GIT_APP)
    with pytest.raises(ConfigError, match="no receipt for run 'R9'"):
        api.prepare_resume("R9", state_dir=state_dir)
    receipt(state_dir, "R1", inv)
    other = write_inventory(tmp_path, GIT_APP, "other")
    with pytest.raises(ConfigError, match="leave --inventory out to resume it"):
        api.prepare_resume("R1", inventory_sources=other, state_dir=state_dir)


def test_a_missing_password_variable_stops_the_run_before_any_host_but_not_the_plan(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    app = {
        **GIT_APP,
        "databases": [
            {"name": "main", "engine": "postgresql", "database": "a", "password_env": "NO_SUCH_PW"}
        ],
    }
    monkeypatch.delenv("NO_SUCH_PW", raising=False)
    prep = api.prepare("full", write_inventory(tmp_path, app), state_dir=state_dir)
    assert api.plan(prep)[0].steps  # planning needs no password
    with pytest.raises(ConfigError, match="its password variable NO_SUCH_PW is not set"):
        api.execute(prep, state_dir=state_dir)
    assert not (state_dir / "runs").exists()  # refused before a run started
