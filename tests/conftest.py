"""Shared fixtures: tests run from the repository root, so fixture targets resolve as in the README."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every test sees a fresh check (its own and its subprocesses'); tests/test_cache_cli.py turns the cache on.
os.environ["GRADLINT_NO_CACHE"] = "1"
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


USER_RULE = '''
from gradlint.rule import Rule
from gradlint.types import Risk, Severity


class AlwaysFlag(Rule):
    code = "{code}"
    name = "always-flag-{suffix}"
    severity = Severity.{severity}
    risk = Risk.OTHER
    summary = "Flags the root of every model (a test rule)."
    why = "Tests need a finding they control."
    fix = "Nothing to fix."

    def check(self, ctx):
        yield self.finding(ctx, "", f"{{len(ctx.graph.weighted_layers)}} weighted layers seen by a user rule")
'''


@pytest.fixture
def user_rule_dir(tmp_path: Path):
    """Factory: a rule directory holding one rule that reports one finding on the model's root."""

    def make(code: str = "GL901", severity: str = "WARNING", folder: str = "user_rules") -> Path:
        path = tmp_path / folder
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{code}_always.py").write_text(USER_RULE.format(code=code, suffix=code[2:].lower(), severity=severity))
        (path / "_helper.py").write_text("raise RuntimeError('files starting with _ are skipped')\n")
        return path

    return make
