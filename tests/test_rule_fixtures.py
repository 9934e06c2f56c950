"""Every rule's INVALID fixtures trigger it (at warning or above, or at the rule's default severity when that
is info, confirmed where a probe can tell) and its VALID look-alikes do not: the fixtures declared on the
rule class are the test cases. A verified fix an INVALID fixture's finding offers (`fix_check`) is applied to
the model itself and measured: the probe must see the first fixed layer where the message predicted it,
within 0.5 decades."""

from __future__ import annotations

import pytest
import torch

from gradlint.inputs import resolve_inputs
from gradlint.load import load_target, restored_interpreter_state
from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.probe import run_probe
from gradlint.remedy import apply_fix
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
    torch.manual_seed(0)  # the same weights as the rebuild that the fix is applied to
    report = check_target(target, CheckOptions(rules=[rule], probe=True))
    assert report.ok, report.error and report.error.message
    floor = min(rule.severity.rank, Severity.WARNING.rank)  # an info-by-default rule (GL402) fires at info
    serious = [f for f in report.findings if f.rule == rule.code and f.severity.rank >= floor]
    if should_fire:
        assert serious, f"{rule.code} did not fire on {target}: {[f.message for f in report.findings]}"
        assert all(f.confirmed is not False for f in serious)
        assert all(f.path and f.line for f in serious), "findings must point at the user's source"
        _fixes_move_the_measured_profile_as_predicted(target, report, [f.fix_check for f in serious if f.fix_check])
    else:
        assert not serious, f"{rule.code} fired on healthy {target}: {[f.message for f in serious]}"


def _fixes_move_the_measured_profile_as_predicted(target: str, report: TargetReport,
                                                  checks: list[dict[str, object]]) -> None:
    if not checks:
        return
    assert report.graph is not None
    torch.manual_seed(0)
    with restored_interpreter_state():
        model = load_target(target).model
    call = resolve_inputs(model).call  # the pipeline's own inputs (seed 0)
    layers = [(layer.module, layer.kind, layer.weight) for layer in report.graph.weighted_layers]
    for check in checks:
        measured = run_probe(apply_fix(model, check), call, layers)
        got = {p.module: p.log10_grad_rms for p in measured.profile}[str(check["module"])]
        predicted = check["log10_ratio_after"]
        assert got is not None and isinstance(predicted, float), (check, got)
        assert abs(got - predicted) <= 0.5, f"{check['fix']} on {target}: predicted 10^{predicted:+.2f}, measured 10^{got:+.2f}"
