"""The shared argument spec pieces (plugins/module_utils/options.py) and their doc fragments."""

from __future__ import annotations

import yaml

from tests.conftest import load_module

options = load_module("plugins/module_utils/options.py")
lock = load_module("plugins/module_utils/lock.py")


def fragment(name: str, variant: str = "DOCUMENTATION") -> dict:
    module = load_module(f"plugins/doc_fragments/{name}.py")
    return yaml.safe_load(getattr(module.ModuleDocFragment, variant))["options"]


def same(spec: dict, docs: dict) -> None:
    assert sorted(spec) == sorted(docs)
    for key, option in spec.items():
        assert docs[key]["type"] == option["type"], key
        assert docs[key].get("default") == option.get("default"), key
        assert bool(docs[key].get("required")) == bool(option.get("required")), key
        assert docs[key]["description"], key


def test_each_spec_is_documented_by_its_fragment():
    same(options.run_argument_spec(), fragment("run"))
    same(options.run_argument_spec(operator=False), fragment("run", "RUN_ID"))
    same(options.lock_argument_spec(), fragment("lock"))
    same(options.space_argument_spec(), fragment("space"))
    same(options.backupset_argument_spec(), fragment("backupset"))


def test_the_lock_path_is_the_locks_default():
    assert options.lock_argument_spec()["lock_path"]["default"] == lock.DEFAULT_LOCK_PATH


def test_each_call_gives_a_new_spec():
    first = options.run_argument_spec()
    first["run_id"]["default"] = "changed"
    assert options.run_argument_spec()["run_id"]["default"] == ""
