"""GL402's severity is the training promise of the query and key projections' update, not the pattern:
unscaled attention whose q and k still get as much update as any layer trains (bench/trainability.py
measured it) and is info; the same finding escalates, and the probe confirms it, only when their update
trails the fastest layer's by the fitted vanishing lag."""

from __future__ import annotations

import torch
from torch import nn

from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.registry import all_rules, select_rules
from gradlint.rule import RuleContext
from gradlint.types import Finding, Severity
from gradlint.updates import VANISHING

CASES = "fixtures/rules/attention_cases.py"


def _gl402(target: str, thresholds: dict[str, dict[str, float]] | None = None) -> tuple[TargetReport, Finding]:
    options = CheckOptions(rules=select_rules(all_rules(), ["GL402"], ()), thresholds=thresholds or {}, probe=True)
    torch.manual_seed(0)  # the same init (and token draw) in every call, as a worker seeds it
    report = check_target(target, options)
    assert report.ok, report.error and report.error.message
    found = [f for f in report.findings if f.rule == "GL402"]
    assert len(found) == 1, [f.message for f in report.findings]
    return report, found[0]


def test_unscaled_attention_whose_projections_still_learn_is_info() -> None:
    _, finding = _gl402("fixtures/cases/failures.py:UnscaledAttention(d_model=64, num_blocks=2)")
    assert finding.severity is Severity.INFO
    lag = finding.evidence["qk_update_lag"]
    assert lag is not None and lag < VANISHING["lag_warning"]
    assert finding.evidence["qk_layers"] == ["blocks.0.q", "blocks.0.k"]
    assert "still train (info)" in finding.message
    assert "passes almost no gradient" not in finding.message  # the estimate and the probe both say otherwise
    assert finding.confirmed is None  # nothing crossed a threshold: the probe cannot tell more


def test_the_lag_threshold_escalates_and_the_probe_confirms_with_its_own_measurement() -> None:
    """SaturatedAttention's q and k weights are drawn at std 1: their relative update trails by ~10^1.8.
    With the warning lag set below that (a user's stricter threshold) the same finding is a warning, and the
    probe's measured lag, crossing it too, confirms it."""
    _, default = _gl402(f"{CASES}:SaturatedAttention")
    assert default.severity is Severity.INFO
    lag = default.evidence["qk_update_lag"]
    assert 1.0 < lag < VANISHING["lag_warning"]
    _, strict = _gl402(f"{CASES}:SaturatedAttention", {"GL402": {"lag_warning": 1.0, "lag_error": 5.0}})
    assert strict.severity is Severity.WARNING
    assert strict.confirmed is True
    measured = strict.evidence["measured_qk_update_lag"]
    assert abs(measured - lag) < 0.5
    assert f"by 10^{measured:.1f} (warning)" in strict.message


def test_a_predicted_warning_the_probe_does_not_see_is_refuted_with_the_measurement() -> None:
    """Replay the probe's verdict on a finding predicted at warning (as a model the estimate overrates would
    be): the measured lag, ~10^1.8, is under the warning cut, so the probe refutes it and says what it saw."""
    report, finding = _gl402(f"{CASES}:SaturatedAttention")
    assert report.probe is not None
    assert report.graph is not None and report.estimate is not None
    rule = next(cls for cls in all_rules() if cls.code == "GL402")()
    rule.ctx = RuleContext(report.graph, report.estimate, nn.Module(), None)
    finding.severity, finding.confirmed = Severity.WARNING, None
    assert rule.confirm(finding, report.probe) is False
    measured = finding.evidence["measured_qk_update_lag"]
    assert measured < VANISHING["lag_warning"]
    assert f"by only 10^{measured:.1f}" in finding.message
