"""BUILTIN_CHECKS names and classes, and loading custom checks from the gateway.checks entry point group."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.checks.base import Check
from gateway.checks.registry import BUILTIN_CHECKS, load_entry_point_check

PARAMS = {
    "regex": {"patterns": [r"\bEMP-\d{6}\b"]},
    "keywords": {"words": ["bluebird"]},
    "topics": {"topics": {"gambling": ["casino", "odds"]}},
}


def test_registry_maps_yaml_names_to_checks_named_alike() -> None:
    assert sorted(BUILTIN_CHECKS) == ["injection", "keywords", "pii", "regex", "secrets", "topics"]
    for name, cls in BUILTIN_CHECKS.items():
        check = cls(**PARAMS.get(name, {}))
        assert isinstance(check, Check)
        assert check.name == name
        assert check.scan("") == []


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution, as pip would leave it, registering two entry points."""
    (tmp_path / "acme_checks_plugin.py").write_text(
        "from gateway.checks.base import Finding\n"
        "class ShoutCheck:\n"
        "    name = 'shout'\n"
        "    def __init__(self, *, min_length=3):\n"
        "        self.min_length = min_length\n"
        "    def scan(self, text):\n"
        "        loud = text.isupper() and len(text) >= self.min_length\n"
        "        return [Finding('shout', 'shout', 0, len(text))] if loud else []\n"
        "NOT_A_CHECK = 42\n"
    )
    dist = tmp_path / "acme_checks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-checks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gateway.checks]\nshout = acme_checks_plugin:ShoutCheck\nbroken = acme_checks_plugin:NOT_A_CHECK\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_checks_plugin", None)


def test_entry_point_check_loads_and_scans_like_a_builtin(plugin_path: Path) -> None:
    cls = load_entry_point_check("shout")
    check = cls(min_length=2)
    assert isinstance(check, Check)
    assert [(f.kind, f.start, f.end) for f in check.scan("STOP")] == [("shout", 0, 4)]


def test_entry_point_unknown_name_lists_what_is_registered(plugin_path: Path) -> None:
    with pytest.raises(LookupError, match=r"no check named 'profanity'.*registered: broken, shout"):
        load_entry_point_check("profanity")


def test_entry_point_that_is_not_a_check_class_is_refused(plugin_path: Path) -> None:
    with pytest.raises(TypeError, match="must name a class with a scan"):
        load_entry_point_check("broken")
