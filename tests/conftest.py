"""Shared fixtures: tests run from the repository root, so fixture targets resolve as in the README."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_CANDIDATES = (ROOT.parent / "shared" / "spec" / "report.schema.json", ROOT / "tests" / "data" / "report.schema.json")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def report_schema() -> dict:
    import json

    for path in SCHEMA_CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text())
    pytest.fail("report.schema.json not found")
