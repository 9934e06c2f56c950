"""The cache answers an unchanged target from its last entry and is never stale."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gradlint.cache import Cache, user_sources


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("WIDTH = 8\n")
    (tmp_path / "net.py").write_text("from helpers import WIDTH\n")
    return tmp_path


def _sources(project: Path) -> list[str]:
    return [str(project / "net.py"), str(project / "helpers.py")]


def test_hit_when_nothing_changed(project: Path) -> None:
    cache = Cache(project / ".gradlint_cache")
    options = {"select": ["ALL"], "probe": True}
    assert cache.lookup("net.py:Net", options) is None
    assert cache.store("net.py:Net", options, {"target": "net.py:Net", "status": "ok"}, _sources(project))
    assert cache.lookup("net.py:Net", options) == {"target": "net.py:Net", "status": "ok"}
    assert (project / ".gradlint_cache" / ".gitignore").read_text() == "*\n"


def test_a_changed_imported_helper_means_a_recheck(project: Path) -> None:
    cache = Cache(project / ".gradlint_cache")
    cache.store("net.py:Net", {}, {"status": "ok"}, _sources(project))
    (project / "helpers.py").write_text("WIDTH = 16\n")
    assert cache.lookup("net.py:Net", {}) is None


def test_options_and_target_are_part_of_the_key(project: Path) -> None:
    cache = Cache(project / ".gradlint_cache")
    cache.store("net.py:Net", {"probe": True}, {"status": "ok"}, _sources(project))
    assert cache.lookup("net.py:Net", {"probe": False}) is None
    assert cache.lookup("net.py:Other", {"probe": True}) is None


def test_unknown_or_missing_sources_are_not_stored(project: Path) -> None:
    cache = Cache(project / ".gradlint_cache")
    assert not cache.store("net.py:Net", {}, {"status": "ok"}, [])
    assert not cache.store("net.py:Net", {}, {"status": "ok"}, [str(project / "gone.py")])


def test_a_corrupt_entry_is_a_miss_and_clear_removes_everything(project: Path) -> None:
    cache = Cache(project / ".gradlint_cache")
    cache.store("net.py:Net", {}, {"status": "ok"}, _sources(project))
    (entry,) = (project / ".gradlint_cache" / "v1").glob("*.json")
    entry.write_text("{not json")
    assert cache.lookup("net.py:Net", {}) is None
    assert cache.clear() and not (project / ".gradlint_cache").exists()
    assert not cache.clear()


def test_user_sources_lists_local_imports_not_libraries(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(project))
    import net  # noqa: F401  (imports helpers)

    try:
        found = set(user_sources())
        assert {str(project / "net.py"), str(project / "helpers.py")} <= found
        assert not any(os.sep + "json" + os.sep in p for p in found)
        assert json.__file__ not in found
    finally:
        sys.modules.pop("net", None)
        sys.modules.pop("helpers", None)
