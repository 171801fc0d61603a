"""systemctl show's output read per unit (plugins/module_utils/systemd.py)."""

from __future__ import annotations

from tests.conftest import load_module

systemd = load_module("plugins/module_utils/systemd.py")

# systemctl show --property=Id,LoadState,ActiveState -- a.service b.service (as printed)
SHOWN = (
    "Id=a.service\nLoadState=loaded\nActiveState=active\n\n"
    "Id=b.service\nLoadState=not-found\nActiveState=inactive\n"
)


def test_each_unit_gets_its_own_block():
    states = systemd.parse_show(SHOWN, ["a.service", "b.service"])
    assert states == {
        "a.service": {"Id": "a.service", "LoadState": "loaded", "ActiveState": "active"},
        "b.service": {"Id": "b.service", "LoadState": "not-found", "ActiveState": "inactive"},
    }


def test_a_value_keeps_its_equals_signs():
    states = systemd.parse_show("ExecStart=/bin/app --level=3\n", ["a.service"])
    assert states == {"a.service": {"ExecStart": "/bin/app --level=3"}}


def test_a_unit_not_loaded_is_a_problem_naming_it():
    states = systemd.parse_show(SHOWN, ["a.service", "b.service"])
    assert systemd.not_loaded("a.service", states["a.service"]) is None
    assert systemd.not_loaded("b.service", states["b.service"]) == (
        "systemd unit b.service is not-found, not loaded"
    )
    assert systemd.not_loaded("c.service", {}) == "systemd unit c.service is unknown, not loaded"
