"""GL204 nonfinite-values: NaN or Inf at initialisation, before any training step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.graph import NodeKind, NodeRecord, Ref
from gradlint.rule import Rule, RuleContext
from gradlint.types import Family, Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class NonfiniteValues(Rule):
    code = "GL204"
    name = "nonfinite-values"
    severity = Severity.ERROR
    risk = Risk.EXPLODING
    summary = "An op produces NaN or Inf at initialisation (log or sqrt of negatives, division by zero)."
    why = (
        "A single NaN or Inf in the forward pass turns every gradient behind it into NaN: the first optimizer "
        "step writes NaN into the weights and training is over before it starts. At initialisation this is "
        "never a matter of bad luck with the data: an op's input range does not fit the op."
    )
    example = """
class Net(nn.Module):
    def forward(self, x):
        return self.fc2(torch.log(self.fc1(x)))   # fc1 is negative for half its outputs
"""
    fix = (
        "Keep the op's input in its domain: `torch.log(x.clamp_min(1e-6))` or `F.softplus(x)`, "
        "`torch.sqrt(x.clamp_min(0) + 1e-12)`, `x / (d + 1e-6)`; initialise buffers you divide by to non-zero values."
    )
    references = ("PyTorch docs, torch.autograd.detect_anomaly (finding the op that produced NaN)",)
    probe_criterion = "Confirmed when the probe's forward or backward pass contains NaN or Inf values."
    options = {"min_share": 0.01}
    option_docs = {
        "min_share": "the estimated share of an op's input distribution giving NaN or Inf at which the op is flagged",
    }
    VALID = ("fixtures/cases/healthy.py:ReLUHe", "fixtures/zoo/resnet.py:ResNet", "fixtures/cases/failures.py:LargeInitReLU")
    INVALID = ("fixtures/bad/models.py:LogOfNegative", "fixtures/bad/models.py:DividesByZero")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        for name, info in est.pointwise.items():
            if name in graph.live and info.nonfinite >= self.opts["min_share"] and _carries_data(ctx, info.root):
                node = graph[name]
                yield self.finding(
                    ctx, node.module, f"`{node.op}` in {node.module or '<root>'} gives NaN or Inf for "
                    f"{info.nonfinite:.0%} of its inputs at initialisation; every gradient behind it becomes NaN "
                    "after the first backward pass.", node=node, fix=self.fix, evidence={"nonfinite_share": info.nonfinite},
                )
        for node in graph.ops():
            if graph.family(node) is Family.PRODUCT and node.name in graph.live and len(node.args) > 1:
                divisor = node.args[1]
                if (isinstance(divisor, Ref) and graph[divisor.name].kind is not NodeKind.INPUT
                        and est.stats[divisor.name].q == 0.0 and _nonfinite_at_zero(node)):
                    yield self.finding(
                        ctx, node.module, f"{node.module or '<root>'} divides by `{graph[divisor.name].param or divisor.name}`, "
                        "which is exactly zero at initialisation: the forward pass is Inf/NaN from the first step.",
                        node=node, fix=self.fix,
                    )

    def check_probe(self, ctx: RuleContext, probe: ProbeResult) -> Iterator[Finding]:
        if not probe.nonfinite:
            return
        first = next((p for p in probe.profile if p.nonfinite), None)
        module = first.module if first is not None else ""
        finding = self.finding(
            ctx, module, "The probe's forward/backward pass produced NaN or Inf"
            + (f", first seen at {module}" if module else "") + ": training would write NaN into the weights at the "
            "first step. Run one batch under `torch.autograd.detect_anomaly()` to find the op.", fix=self.fix,
            evidence={"measured": True},
        )
        finding.confirmed = True
        yield finding

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterator[Finding]:
        """A training step whose forward or backward pass held NaN or Inf."""
        if not getattr(measured, "nonfinite", False):
            return
        first = next((p for p in measured.profile if p.nonfinite), None)
        module = first.module if first is not None else ""
        yield self.finding(
            ctx, module, f"Training step {measured.step}'s forward/backward pass produced NaN or Inf"
            + (f", first seen at {module}" if module else "") + ": the optimizer step writes NaN into the weights. "
            "Lower the learning rate or clip gradients, and run that batch under `torch.autograd.detect_anomaly()` "
            "to find the op.", evidence={"measured": True},
            fix="Lower the learning rate (or add a warm-up), clip gradients with "
                "`torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`, and keep ops in their domain "
                "(`torch.log(x.clamp_min(1e-6))`, `x / (d + 1e-6)`).",
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        return bool(probe.nonfinite)


def _carries_data(ctx: RuleContext, root: str) -> bool:
    """Whether the op's input depends on the model's input or weights. Index arithmetic on constants (T5's
    `log` of relative positions, whose -inf at distance 0 a `where` discards) carries no gradient."""
    import networkx as nx

    graph = ctx.graph
    sources = {graph[n].kind for n in nx.ancestors(graph.nx, root)} | {graph[root].kind}
    return bool(sources & {NodeKind.INPUT, NodeKind.PARAM})


def _nonfinite_at_zero(node: NodeRecord) -> bool:
    """Whether the op gives Inf/NaN when its second operand is 0 and its first is 1: a quotient, not a product
    (decided by evaluating the op itself on two numbers, not by its name)."""
    import torch

    op = getattr(torch.ops.aten, node.op, None)
    target = getattr(op, "default", None) if node.inplace else node.target
    if target is None:
        return False
    args = [torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)]
    try:
        with torch.no_grad():
            out = target(*args, *node.args[2:], **{k: v for k, v in node.kwargs.items() if not isinstance(v, Ref)})
    except Exception:  # an overload that takes other arguments: nothing to say
        return False
    return isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all())
