"""Ops without a transfer rule are replaced by PyTorch's own decompositions at capture (issue 13 item 1): a
GLU stack is estimated through split, sigmoid and mul, agrees with the probe, and its vanishing is reported;
the report carries the estimator's coverage."""

from __future__ import annotations

import torch

from gradlint.pipeline import CheckOptions, check_target
from gradlint.registry import all_rules
from gradlint.types import Severity

GLU = "fixtures/cases/failures.py:DeepGLUMLP"


def test_glu_is_decomposed_and_estimated_like_the_probe() -> None:
    torch.manual_seed(0)
    report = check_target(GLU, CheckOptions(rules=all_rules(), probe=True))
    assert report.ok and report.graph is not None and report.estimate is not None and report.probe is not None
    ops = {node.op for node in report.graph.ops()}
    assert "glu" not in ops and "sigmoid" in ops and "mul" in ops
    assert report.estimate.unknown_ops == [] and report.estimate.coverage == 1.0
    assert report.to_dict()["estimate"]["coverage"] == 1.0
    gate = next(node for node in report.graph.ops() if node.op == "sigmoid")
    assert gate.location is not None and gate.location.path.endswith("failures.py")  # still the user's line
    measured = {p.module: p.log10_grad_rms for p in report.probe.profile}
    for entry in report.estimate.profile:
        assert entry.log10_grad_rms is not None and measured[entry.module] is not None
        assert abs(entry.log10_grad_rms - measured[entry.module]) < 0.2, entry.module
    assert measured["layers.0"] < -6  # the 10^-7.1, now predicted too
    codes = {f.rule: f for f in report.findings}
    assert "GL001" not in codes  # nothing left without a rule
    vanishing = [f for f in report.findings if f.rule == "GL103" or any(r.rule == "GL103" for r in f.related)]
    assert vanishing and vanishing[0].severity is Severity.ERROR


class _LogCumSumExp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(self.layer(x), dim=1)


def test_an_op_without_a_rule_or_a_decomposition_lowers_the_coverage() -> None:
    """logcumsumexp has neither a transfer rule nor a decomposition: it stays, passed through, and counts
    against the coverage (one of the graph's two ops)."""
    from gradlint.call import Call
    from gradlint.capture import capture
    from gradlint.estimate import estimate
    from gradlint.estimate.weights import WeightTable

    model, x = _LogCumSumExp(), torch.randn(4, 8)
    graph = capture(model, Call((x,), {}))
    est = estimate(graph, WeightTable(model), (x,))
    assert [node.op for node in graph.ops()] == ["linear", "logcumsumexp"]
    assert est.unknown_ops == ["logcumsumexp"] and est.coverage == 0.5
