"""GL104 deep-plain-stack: a long run of weighted layers with no normalization and no skip path, whose
estimated gradient has already drifted far from 1 at its bottom."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext, Unmeasurable, measured_drift, probe_entry
from gradlint.types import Family, Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult

# Op families where two computed tensors can meet: a residual sum, a gate, a concatenation.
_MERGES = frozenset({Family.SUM, Family.PRODUCT, Family.SELECT, Family.CONCATENATION})


class DeepPlainStack(Rule):
    code = "GL104"
    name = "deep-plain-stack"
    severity = Severity.WARNING
    risk = Risk.VANISHING
    summary = "Many weighted layers in a row with neither normalization nor skip connections, and the gradient drifts."
    why = (
        "In a plain stack every layer multiplies the backward signal by its own gain, so any per-layer gain "
        "off 1 (an init a little too small for the activation, a slope below 1) compounds geometrically with "
        "depth: 30 layers at gain 0.7 lose 4.6 decades. Normalization re-centres the signal at every layer and "
        "residual connections give the gradient an identity path around the stack; without either, depth "
        "alone turns a small mismatch into a vanishing (or exploding) gradient. A deep plain stack with an "
        "exactly matched init is fine, so this rule also requires the estimate to have drifted."
    )
    example = """
layers = []
for _ in range(30):
    layers += [nn.Linear(128, 128), nn.ReLU()]    # xavier or default init: gain 0.5 per layer
model = nn.Sequential(*layers)
"""
    fix = (
        "Add normalization before each activation (`nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU()` or "
        "`nn.BatchNorm1d(d)`), or make blocks residual (`x = x + block(x)`), or initialise for the "
        "activation (`nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')`)."
    )
    references = (
        "He et al. 2016, Deep Residual Learning for Image Recognition",
        "Ioffe & Szegedy 2015, Batch Normalization",
        "Schoenholz et al. 2017, Deep Information Propagation",
    )
    probe_criterion = (
        "Confirmed when the measured log10 gradient RMS changes from the top to the bottom of the stack by more "
        "than `min_decades` (the rule's own threshold) in the estimated direction; refuted otherwise."
        " The measured update lag and forward signal then set the severity (gradlint.updates); a refuted finding says what was measured."
    )
    judged = True
    options = {"min_depth": 20, "min_decades": 1.5}
    option_docs = {
        "min_depth": "the fewest weighted layers in a stack with neither normalization nor skip connections",
        "min_decades": "how many decades the gradient must drift across the stack, estimated and then measured",
    }
    VALID = ("fixtures/cases/healthy.py:ReLUHe", "fixtures/zoo/resnet.py:ResNet", "fixtures/cases/healthy.py:PlainBNCNN56",
             "fixtures/zoo/vgg.py:VGG")
    INVALID = ("fixtures/cases/failures.py:DeepReLUXavier", "fixtures/cases/mlp.py:MLP(depth=30, act='tanh')")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        _, path = graph.longest_path({layer.output: 1.0 for layer in graph.weighted_layers})
        segments: list[list[Any]] = [[]]
        for name in path:
            node = graph[name]
            if node.kind is NodeKind.OP and (name in est.normalizers or _merges(ctx, name)):
                segments.append([])
            elif (layer := graph.layer_at(name)) is not None:
                segments[-1].append(layer)
        stack = max(segments, key=len)
        if len(stack) < int(self.opts["min_depth"]):
            return
        bottom, top = stack[0], stack[-1]
        low, high = est.log10_rms(bottom.output), est.log10_rms(top.output)
        if low is None or high is None or abs(low - high) <= float(self.opts["min_decades"]):
            return  # deep but matched: the gradient arrives at the bottom as it left the top
        vanishing = low < high
        direction = "vanishes" if vanishing else "explodes"
        kinds = sorted({layer.kind for layer in stack})
        message = (
            f"{len(stack)} weighted layers ({', '.join(kinds)}) from {bottom.module} to {top.module} form one plain stack "
            f"with no normalization and no skip path, and the gradient {direction} along it: {bottom.module} receives "
            f"10^{low:.1f} of the output gradient (10^{low - high:+.1f} across the stack). "
        )
        message += "" if vanishing else "Early layers get huge, unstable updates. "
        message += "Add normalization or residual connections, or an init matched to the activation."
        yield self.finding(
            ctx, bottom.module, message, fix=self.fix, risk=Risk.VANISHING if vanishing else Risk.EXPLODING,
            evidence={"depth": len(stack), "bottom": bottom.module, "top": top.module,
                      "estimated_log10": round(low, 3), "estimated_drift": round(low - high, 3)},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        bottom = finding.evidence.get("bottom")
        drift = measured_drift(probe, bottom, finding.evidence.get("top"))
        if drift is Unmeasurable.ZERO:
            return self.judge(finding, probe, finding.evidence["estimated_drift"] < 0)
        if drift is Unmeasurable.NONFINITE:
            return self.judge(finding, probe, finding.evidence["estimated_drift"] > 0)
        if not isinstance(drift, float):
            return None
        entry = probe_entry(probe, bottom)
        if entry is None or entry.log10_grad_rms is None:
            return None
        finding.evidence["measured_log10"] = round(entry.log10_grad_rms, 3)
        threshold = float(self.opts["min_decades"])
        if (drift < -threshold) if finding.evidence["estimated_drift"] < 0 else (drift > threshold):
            return self.judge(finding, probe, True)
        finding.message += f" Measured: 10^{drift:+.1f} across the stack, within the threshold of {threshold:.1f} decades."
        return False


def _merges(ctx: RuleContext, name: str) -> bool:
    """Two or more computed tensors meet here (a residual add, a concat, a gate): a skip or a branch."""
    node = ctx.graph[name]
    if ctx.graph.family(node) not in _MERGES or name in ctx.estimate.pointwise:
        return False  # a pointwise function of one tensor (x * sigmoid(x)) is not a merge
    computed = {src for src in node.inputs
                if ctx.graph[src].kind in (NodeKind.OP, NodeKind.INPUT) and ctx.graph[src].shape not in (None, ())}
    return len(computed) >= 2
