"""One cause, one finding: the deep tanh MLP's four rule hits become one primary finding with a fix the
estimator shows to work, and every member keeps its code for select, ignore and baseline."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import torch
from torch import nn

import gradlint
from gradlint import baseline
from gradlint.grouping import flatten, group
from gradlint.probe import run_probe
from gradlint.remedy import apply_fix
from gradlint.types import Finding, Risk, Severity


class DeepTanh(nn.Module):
    """24 tanh layers at PyTorch's default init: saturating chain, init mismatch, vanishing, plain stack."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(24):
            layers += [nn.Linear(32 if i == 0 else 128, 128), nn.Tanh()]
        self.net = nn.Sequential(*layers, nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NarrowingReLU(nn.Module):
    """A ReLU MLP whose widths halve, drawn N(0, 0.01): the fix is He init in fan_out mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        widths = [512, 256, 128, 64, 32, 16, 8]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
        self.net = nn.Sequential(*layers, nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def tanh_report() -> Any:
    return gradlint.check(DeepTanh())


def test_one_primary_finding_with_the_rest_related(tanh_report: Any) -> None:
    vanishing = [f for f in tanh_report.findings if f.risk is Risk.VANISHING]
    assert len(vanishing) == 1, [f.rule for f in tanh_report.findings]
    primary = vanishing[0]
    assert len(primary.related) >= 2
    assert primary.severity.rank >= max(r.severity.rank for r in primary.related)
    entry = tanh_report.to_dict()["findings"][0]
    assert [r["rule"] for r in entry["related"]] == [r.rule for r in primary.related]


def test_the_primary_fix_is_the_standard_call_and_verified(tanh_report: Any) -> None:
    primary = next(f for f in tanh_report.findings if f.risk is Risk.VANISHING)
    check = primary.fix_check
    assert check is not None
    assert check["fix"] == "nn.init.xavier_normal_(w, gain=nn.init.calculate_gain('tanh'))"
    assert check["log10_ratio_after"] > -1.5 > check["log10_ratio_before"]
    assert check["fix"] in primary.fix and f"10^{check['log10_ratio_after']:+.1f}" in primary.message


@pytest.mark.parametrize("model, scheme", [(DeepTanh, "calculate_gain('tanh')"), (NarrowingReLU, "mode='fan_out'")])
def test_applying_the_fix_moves_the_measured_profile_as_predicted(model: type[nn.Module], scheme: str) -> None:
    original = model()
    report = gradlint.check(original, probe=False)
    primary = next(f for f in report.findings if f.fix_check)
    assert scheme in primary.fix_check["fix"]
    fixed = apply_fix(original, primary.fix_check)
    layers = [(l.module, l.kind, l.weight) for l in report.graph.weighted_layers]
    measured = run_probe(fixed, (torch.randn(16, next(fixed.parameters()).shape[1]),), layers)
    first = {p.module: p.log10_grad_rms for p in measured.profile}[primary.fix_check["module"]]
    assert abs(first - primary.fix_check["log10_ratio_after"]) <= 0.5


def test_ignoring_the_primary_code_promotes_another(tanh_report: Any) -> None:
    primary = next(f for f in tanh_report.findings if f.risk is Risk.VANISHING)
    rest = gradlint.check(DeepTanh(), ignore=[primary.rule], probe=False)
    codes = {m.rule for f in rest.findings for m in f.members()}
    assert primary.rule not in codes and {r.rule for r in primary.related} <= codes
    alone = gradlint.check(DeepTanh(), select=[primary.related[-1].rule], probe=False)
    assert [f.rule for f in alone.findings] == [primary.related[-1].rule] and not alone.findings[0].related


def test_baseline_counts_members_and_keeps_new_ones(tanh_report: Any) -> None:
    report = copy.deepcopy(tanh_report)
    members = [m for f in report.findings for m in f.members()]
    document = baseline.build([report])
    recorded = sum(n for rules in document["targets"].values() for mods in rules.values() for n in mods.values())
    assert recorded == len(members)
    primary = next(f for f in report.findings if f.risk is Risk.VANISHING)
    related = {r.rule for r in primary.related}
    only_primary = baseline.load_document(
        {"targets": {report.target: {primary.rule: {primary.module: 1}}}})
    baseline.apply([report], only_primary)
    assert primary.rule not in {f.rule for f in report.findings}
    assert related == {m.rule for f in report.findings for m in f.members()} - {"GL003"}


def _finding(rule: str, risk: Risk, module: str, severity: Severity = Severity.WARNING, **evidence: Any) -> Finding:
    return Finding(rule, rule.lower(), severity, risk, "m", module, evidence=evidence)


def test_grouping_is_by_risk_and_shared_modules() -> None:
    a = _finding("GL101", Risk.VANISHING, "enc.1", first_layer="enc.0")
    b = _finding("GL103", Risk.VANISHING, "enc.0", Severity.ERROR)
    c = _finding("GL201", Risk.EXPLODING, "enc.0")  # same layers, other mechanism
    d = _finding("GL103", Risk.VANISHING, "dec.0")  # other layers
    e = _finding("GL001", Risk.OTHER, "enc.0")
    primaries = group([a, b, c, d, e])
    assert [(p.rule, [r.rule for r in p.related]) for p in primaries] == [
        ("GL103", ["GL101"]), ("GL201", []), ("GL103", []), ("GL001", [])]
    assert len(flatten(primaries)) == 5 and group(flatten(primaries))[0].rule == "GL103"
