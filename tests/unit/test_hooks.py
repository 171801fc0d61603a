"""The app's hooks (rollback_app.hooks): the schema and its rules (unknown step, a step the
level lacks, a bad argv, duplicate names), the steps a level runs, the plan's lines, and the
runner in plugins/module_utils/hooks.py (argv without a shell, chdir, env, timeout, rc)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import paths
from rollback_ops.operations import OPERATIONS
from rollback_ops.operations.base import Request
from tests.unit.test_appspec import APP, validator

_spec = importlib.util.spec_from_file_location(
    "hooks_utils", paths.plugins_dir() / "module_utils" / "hooks.py"
)
assert _spec and _spec.loader
hooks_utils = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hooks_utils)

HOOK = {"name": "static", "step": "after_revert", "command": ["manage.py", "collectstatic"]}


def problems(*hooks: dict[str, Any]) -> dict[str, str]:
    _app, found = validator.validate_app({**APP, "hooks": list(hooks)})
    return dict(found)


def test_a_valid_hook_gets_its_defaults():
    app, found = validator.validate_app({**APP, "hooks": [HOOK]})
    assert found == []
    assert app["hooks"] == [
        {
            **HOOK,
            "user": "",
            "chdir": "",
            "environment": {},
            "environment_from": {},
            "timeout": 300,
            "expect_rc": [0],
            "levels": [],
        }
    ]


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"step": "after_lunch"}, "step", "'after_lunch' is not a step; steps: after_change"),
        ({"levels": ["flag"]}, "levels", "level flag has no step after_revert"),
        ({"levels": ["nightly"]}, "levels", "'nightly' is not a level with hooks"),
        ({"command": []}, "command", "must be a non-empty argv list"),
        ({"command": ["  "]}, "command", "must be a non-empty argv list"),
        ({"timeout": 0}, "timeout", "must be at least 1 second"),
        ({"environment": {"A=B": "x"}}, "environment", "'A=B' is not an env key"),
    ],
)
def test_a_bad_hook_is_named_by_its_key(change: dict[str, Any], key: str, message: str):
    found = problems({**HOOK, **change})
    assert message in found[f"rollback_app.hooks[0].{key}"], found


def test_a_string_command_is_refused_by_the_schema():
    found = problems({**HOOK, "command": "manage.py collectstatic"})
    assert any(k.startswith("rollback_app.hooks[0].command") for k in found), found


def test_hook_names_are_unique():
    found = problems(HOOK, {**HOOK, "step": "verify"})
    assert "used by another hook" in found["rollback_app.hooks[1].name"]


def test_the_steps_of_a_level_pick_its_hooks_in_order():
    hooks = [
        {**HOOK, "name": "a"},
        {**HOOK, "name": "b", "levels": ["full"]},
        {**HOOK, "name": "c", "levels": ["code", "full"]},
        {**HOOK, "name": "d", "step": "verify"},
    ]
    assert [h["name"] for h in hooks_utils.for_step(hooks, "code", "after_revert")] == ["a", "c"]
    assert [h["name"] for h in hooks_utils.for_step(hooks, "full", "after_revert")] == [
        "a",
        "b",
        "c",
    ]
    assert hooks_utils.for_step(hooks, "flag", "after_revert") == []


def test_the_plan_lists_the_hooks_at_their_place():
    from rollback_ops import appspec

    app, found = validator.validate_app(
        {
            **APP,
            "hooks": [
                {**HOOK, "user": "www-data", "chdir": "/opt/shop"},
                {"name": "ping", "step": "verify", "command": ["celery", "inspect", "ping"]},
            ],
        }
    )
    assert found == []
    spec = appspec.build(app)
    plan = OPERATIONS["code"].plan("web1", spec, Request(level="code"))
    text = "\n".join(plan)
    assert "hook after_revert: static: manage.py collectstatic (as www-data; in /opt/shop)" in text
    assert plan[-1].startswith("hook verify: ping: celery inspect ping") or any(
        s.startswith("hook verify: ping") for s in plan
    )
    revert = next(i for i, s in enumerate(plan) if s.startswith("record HEAD"))
    assert plan.index(next(s for s in plan if s.startswith("hook after_revert"))) > revert


def test_the_runner_runs_the_argv_without_a_shell_in_chdir_with_env(tmp_path: Path):
    hook = {"name": "x", "command": ["sh", "-c", 'pwd; echo "$V"; exit 3'], "chdir": str(tmp_path)}
    result = hooks_utils.run({**hook, "expect_rc": [3]}, {"V": "a value; $(not run)"})
    assert result["error"] == "" and result["rc"] == 3
    assert result["stdout_tail"] == f"{tmp_path}\na value; $(not run)\n"
    failed = hooks_utils.run(hook, {})
    assert failed["error"] == "exited 3 (expected 0)"
    slow = hooks_utils.run({"name": "s", "command": ["sleep", "5"], "timeout": 1}, {})
    assert slow["timed_out"] and slow["error"] == "timed out after 1s"
    assert slow["duration"] < 4
    missing = hooks_utils.run({"name": "m", "command": ["/nonexistent/prog"]}, {})
    assert missing["rc"] is None and "cannot run /nonexistent/prog" in missing["error"]
