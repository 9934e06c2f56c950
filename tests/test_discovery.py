"""The probe discovers (issue 13 item 2): where the estimate is unsure, the measured profile is judged too,
and such a finding says it came from the measurement; where the estimate stands, nothing is added."""

from __future__ import annotations

import torch

from gradlint.discovery import unsure
from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.registry import all_rules
from gradlint.types import Severity

CASES = "fixtures/cases/failures.py"


def _check(target: str, probe: bool = True) -> TargetReport:
    torch.manual_seed(0)
    report = check_target(target, CheckOptions(rules=all_rules(), probe=probe))
    assert report.ok, report.error and report.error.message
    return report


def _members(report: TargetReport) -> list:  # type: ignore[type-arg]
    return [m for f in report.findings for m in (f, *f.related)]


def test_a_gradient_only_the_backward_shrinks_is_found_in_the_measurement() -> None:
    static = _check(f"{CASES}:HiddenGradientShrink", probe=False)
    assert not [f for f in static.findings if f.severity.rank >= Severity.WARNING.rank]  # the estimate is flat
    report = _check(f"{CASES}:HiddenGradientShrink")
    found = [f for f in _members(report) if f.rule == "GL103"]
    assert found and found[0].confirmed is True and found[0].severity is Severity.ERROR
    assert "decades away from the estimate" in found[0].evidence["from_measurement"]
    assert "Found in the probe's measurement" in found[0].message


def test_where_the_estimate_agrees_nothing_is_discovered() -> None:
    report = _check(f"{CASES}:DeepGLUMLP")
    assert report.estimate is not None and report.probe is not None
    assert unsure(report.estimate, report.probe) is None
    assert not [f for f in _members(report) if "from_measurement" in f.evidence]
    assert [f for f in _members(report) if f.rule == "GL103"]  # found statically, as before
