"""Every module in plugins/modules has documentation Ansible can read, and it tells the truth.

The docs are read by ansible-core's own plugin docs loader (what ``ansible-doc`` runs), doc
fragments merged, in a separate process (its collection loader must not change how this
session imports the collection). Each module's argument spec, captured by running its
``main()`` up to ``AnsibleModule``, must match the documented options: name, type, default,
required, choices, elements and aliases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import COLLECTIONS, ROOT, load_module

MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
LOADER = textwrap.dedent("""
    import json, sys
    from ansible.plugins.loader import fragment_loader, init_plugin_loader, module_loader
    from ansible.utils.plugin_docs import get_plugin_docs
    init_plugin_loader([sys.argv[1]])
    out = {}
    for name in sys.argv[2:]:
        try:
            doc, examples, returns, _meta = get_plugin_docs(
                "rollback_ops.rollback." + name, "module", module_loader, fragment_loader, False
            )
            out[name] = {"doc": doc, "examples": examples, "return": returns}
        except Exception as exc:
            out[name] = {"error": "%s: %s" % (type(exc).__name__, exc)}
    print(json.dumps(out, default=str))
""")


@pytest.fixture(scope="module")
def docs() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(COLLECTIONS), *MODULES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class _Spec(Exception):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__("captured")
        self.spec = spec


def argument_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module's argument spec, as its main() gives it to AnsibleModule."""
    module = load_module(f"plugins/modules/{name}.py")

    def capture(*_args: Any, **kwargs: Any) -> None:
        raise _Spec(kwargs["argument_spec"])

    monkeypatch.setattr(module, "AnsibleModule", capture)
    with pytest.raises(_Spec) as caught:
        module.main()
    return caught.value.spec


@pytest.mark.parametrize("name", MODULES)
def test_the_docs_parse_with_every_section(docs: dict[str, Any], name: str):
    found = docs[name]
    assert "error" not in found, found.get("error")
    doc = found["doc"]
    assert doc["module"] == name
    assert doc["short_description"] and doc["description"] and doc["author"]
    assert found["examples"] and f"rollback_ops.rollback.{name}:" in found["examples"]
    assert found["return"], "RETURN is missing"
    for key, value in found["return"].items():
        assert value.get("description") and value.get("type") and value.get("returned"), key


def _documented(option: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": option.get("type", "str"),
        "default": option.get("default"),
        "required": bool(option.get("required", False)),
        "choices": option.get("choices"),
        "elements": option.get("elements"),
        "aliases": sorted(option.get("aliases") or []),
    }


ACTION_ONLY = sorted(
    p.stem for p in (ROOT / "plugins" / "action").glob("*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("name", [m for m in MODULES if m not in ACTION_ONLY])
def test_the_documented_options_are_the_argument_spec(
    docs: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
):
    assert "error" not in docs[name], docs[name].get("error")
    options = docs[name]["doc"].get("options") or {}
    spec = argument_spec(name, monkeypatch)
    assert sorted(options) == sorted(spec)
    for key, option in options.items():
        assert option.get("description"), f"{name}: option {key} has no description"
        assert _documented(option) == _documented(spec[key]), f"{name}: option {key}"


def test_a_broken_documentation_is_reported(tmp_path: Path):
    # the loader must fail on what ansible-doc fails on, or the tests above prove nothing
    collection = tmp_path / "ansible_collections" / "rollback_ops" / "rollback"
    (collection / "plugins" / "modules").mkdir(parents=True)
    (collection / "plugins" / "modules" / "broken.py").write_text(
        'DOCUMENTATION = r"""\nmodule: broken\ndescription: it says (x): y\n"""\n'
    )
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path), "broken"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "error" in json.loads(proc.stdout)["broken"]
