"""Named rollback procedures (rollback_app.procedures, apply --procedure NAME) and the plan
of the code level's other sources (git paths, archive directories), before any host is
touched: validated against the one app schema, unknown names refused in one line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import api, appspec, operations
from rollback_ops.exceptions import ConfigError
from tests.unit.test_code_level import GIT_APP, write_inventory

APP: dict[str, Any] = {
    **GIT_APP,
    "procedures": {
        "phase-4": {
            "description": "seed 001 phases 4-6: the monoliths back, the extracted modules gone",
            "code": {
                "path": "/opt/analyticbot/app",
                "git": {
                    "paths": ["scripts/core/batch_opportunity_scoring.py", "core"],
                    "remove_added": True,
                    "remove": ["core/deduplication"],
                },
            },
        },
        "phase-11": {
            "description": "seed 001 phase 11: the archived monoliths back",
            "code": {
                "path": "/opt/analyticbot/app",
                "archive": {
                    "dir": "scripts/archive/monoliths_*",
                    "files": "*.py",
                    "to": "scripts/core",
                },
            },
            "units": ["analyticbot-batch"],
        },
    },
}


def test_a_procedure_replaces_the_apps_keys_for_its_run(tmp_path: Path, state_dir: Path):
    inv = write_inventory(tmp_path, APP)
    plain = api.prepare("code", inv, limit="web1", state_dir=state_dir)
    assert plain.apps["web1"].code.method == "git" and not plain.apps["web1"].code.paths
    prep = api.prepare(
        "code", inv, operations.Request(procedure="phase-4"), limit="web1", state_dir=state_dir
    )
    app = prep.apps["web1"]
    assert app.procedure == "phase-4"
    assert app.code.paths == ("scripts/core/batch_opportunity_scoring.py", "core")
    assert app.code.remove_added and app.code.remove == ("core/deduplication",)
    assert app.code.git_mode == "checkout"  # the procedure's code, with the schema's defaults
    assert app.units == ("analyticbot-api",)  # what it does not replace stays the app's
    steps = api.plan(prep)[0].changes
    assert steps[0] == (
        "procedure phase-4: seed 001 phases 4-6: the monoliths back, the extracted modules gone"
    )
    revert = next(s for s in steps if s.startswith("tar the files that change"))
    assert "restore scripts/core/batch_opportunity_scoring.py, core from the target" in revert
    assert "remove the tracked files under them the target lacks" in revert
    assert "remove core/deduplication" in revert

    archive = api.prepare(
        "code",
        inv,
        operations.Request(procedure="phase-11", backup_stamp="20260120"),
        limit="web1",
        state_dir=state_dir,
    )
    app = archive.apps["web1"]
    assert app.code.method == "archive" and app.units == ("analyticbot-batch",)
    steps = api.plan(archive)[0].changes
    assert any(
        "copy '*.py' of 20260120 /opt/analyticbot/app/scripts/archive/monoliths_*" in s
        for s in steps
    )
    with pytest.raises(ConfigError, match="--to is for git; app analyticbot restores an archive"):
        api.prepare(
            "code", inv, operations.Request(procedure="phase-11", to="v1"), state_dir=state_dir
        )


def test_an_unknown_procedure_is_refused_in_one_line_naming_the_declared_ones(
    tmp_path: Path, state_dir: Path
):
    inv = write_inventory(tmp_path, APP)
    with pytest.raises(ConfigError) as caught:
        api.prepare("code", inv, operations.Request(procedure="phase-9"), state_dir=state_dir)
    assert str(caught.value) == (
        "app analyticbot has no procedure 'phase-9' (declared: phase-11, phase-4)"
    )
    with pytest.raises(ConfigError, match="--procedure"):
        api.prepare("code", inv, operations.Request(procedure="-x"), state_dir=state_dir)


def _problems(procedures: Any) -> dict[str, str]:
    app = copy.deepcopy(APP)
    app["procedures"] = procedures
    _, found = appspec.validator.validate_app(app)
    return dict(found)


def test_procedures_are_validated_against_the_same_schema():
    assert _problems(APP["procedures"]) == {}
    found = _problems(
        {
            "bad": {"code": {"path": "/opt/a", "git": {"paths": ["../x"], "mode": "pull"}}},
            "empty": {"description": "nothing"},
            "renamed": {"name": "other", "code": {"path": "/opt/a", "git": {}}},
            "odd name!": {"code": {"path": "/opt/a", "git": {}}},
            "both": {"code": {"path": "/opt/a", "git": {}, "archive": {"dir": "a_*", "to": "b"}}},
            "lone": {"code": {"path": "/opt/a", "git": {"remove_added": True}}},
            "units": {"units": "api"},
        }
    )
    assert found == {
        "rollback_app.procedures.bad.code.git.mode": "must be checkout or revert, not 'pull'",
        "rollback_app.procedures.bad.code.git.paths[0]": (
            "'../x' must be relative to code.path, inside it"
        ),
        "rollback_app.procedures.empty": "replaces no key of the app (give code, or another key)",
        "rollback_app.procedures.renamed.name": found["rollback_app.procedures.renamed.name"],
        "rollback_app.procedures": "'odd name!' is not a simple name (letters, digits, _ . -)",
        "rollback_app.procedures.both.code": "needs exactly one of git or files or archive",
        "rollback_app.procedures.lone.code.git.remove_added": (
            "needs code.git.paths: the paths to remove under"
        ),
        "rollback_app.procedures.units.units": "must be a list of strings, not 'api'",
    }
    assert found["rollback_app.procedures.renamed.name"].startswith("unknown key (allowed: ")
    # git paths outside code.path, on the app itself and in a procedure
    app = copy.deepcopy(APP)
    app["code"] = {"path": "/opt/a", "git": {"paths": ["/etc"], "remove": ["a/../../b"]}}
    _, found_app = appspec.validator.validate_app(app)
    assert dict(found_app) == {
        "rollback_app.code.git.paths[0]": "'/etc' must be relative to code.path, inside it",
        "rollback_app.code.git.remove[0]": "'a/../../b' must be relative to code.path, inside it",
    }


def test_the_procedure_reaches_the_playbook_and_the_history(tmp_path: Path, state_dir: Path):
    request = operations.Request(procedure="phase-4")
    sent = operations.rollback_request(
        request,
        run_id="r",
        authorization={"operator": "ana"},
        controller={"controller": "c", "pid": 1, "pid_start": "1"},
        authorized_environments=["staging"],
        public_flags={},
    )
    assert sent["procedure"] == "phase-4"
    assert set(sent) == set(operations.REQUEST_KEYS)
