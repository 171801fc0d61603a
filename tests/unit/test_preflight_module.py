"""The preflight module's env-file checks (roles/preflight/library/rollback_preflight.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_module

preflight = load_module("roles/preflight/library/rollback_preflight.py")


def params(**kw: object) -> dict:
    base = {
        "env_file": "",
        "env_keys": [],
        "declared_keys": [],
        "allow_new_keys": False,
        "min_free_mb": 0,
    }
    base.update(kw)
    return base


def test_every_problem_is_reported_at_once(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("export A=1\nB=2\n")
    problems: list[str] = []
    result: dict = {}
    preflight.check_env(
        params(env_file=str(env), env_keys=["A", "TYPO", "C"], declared_keys=["A", "C"]),
        problems,
        result,
    )
    assert problems[0].startswith("TYPO not declared")
    assert "keys not present in the file: TYPO, C" in problems[1]
    assert result["free_mb"] > 0


def test_missing_file_and_disk_space(tmp_path: Path):
    problems: list[str] = []
    preflight.check_env(params(env_file=str(tmp_path / "nope")), problems, {})
    assert problems == [f"env file not found: {tmp_path / 'nope'}"]
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    problems = []
    preflight.check_env(params(env_file=str(env), env_keys=["A"], min_free_mb=10**9), problems, {})
    assert "MiB free" in problems[0]
