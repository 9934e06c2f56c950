"""Every rule's INVALID fixtures trigger it (at warning or above, or at the rule's default severity when that
is info, confirmed where a probe can tell) and its VALID look-alikes do not: the fixtures declared on the
rule class are the test cases."""

from __future__ import annotations

import pytest

from gradlint.pipeline import CheckOptions, check_target
from gradlint.registry import all_rules
from gradlint.types import Severity

RULES = all_rules()
CASES = [(r, t, True) for r in RULES for t in r.INVALID] + [(r, t, False) for r in RULES for t in r.VALID]


def test_every_rule_has_both_kinds_of_fixture() -> None:
    for rule in RULES:
        assert rule.INVALID, f"{rule.code} has no fixture that triggers it"
        assert rule.VALID, f"{rule.code} has no look-alike fixture that must not trigger it"


@pytest.mark.parametrize(("rule", "target", "should_fire"), CASES, ids=[f"{r.code}-{'invalid' if s else 'valid'}-{t.split(':')[-1]}" for r, t, s in CASES])
def test_rule_fixture(rule: type, target: str, should_fire: bool) -> None:
    report = check_target(target, CheckOptions(rules=[rule], probe=True))
    assert report.ok, report.error and report.error.message
    floor = min(rule.severity.rank, Severity.WARNING.rank)  # an info-by-default rule (GL402) fires at info
    serious = [f for f in report.findings if f.rule == rule.code and f.severity.rank >= floor]
    if should_fire:
        assert serious, f"{rule.code} did not fire on {target}: {[f.message for f in report.findings]}"
        assert all(f.confirmed is not False for f in serious)
        assert all(f.path and f.line for f in serious), "findings must point at the user's source"
    else:
        assert not serious, f"{rule.code} fired on healthy {target}: {[f.message for f in serious]}"
