"""GL202 batchnorm-without-skips: a deep stack of batch norms that every path must cross, whose gradient grows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext, Unmeasurable, measured_level
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class BatchNormWithoutSkips(Rule):
    code = "GL202"
    name = "batchnorm-without-skips"
    severity = Severity.WARNING
    risk = Risk.EXPLODING
    summary = "A deep stack of BatchNorm layers with no skip connection around them: gradients explode at init."
    why = (
        "Batch normalization removes each unit's batch mean; in a plain stack this makes the backward signal grow by "
        "about pi/(pi-1) in mean square per BN-ReLU layer at initialisation, whatever the weight init (Yang et al. "
        "2019). Forty such layers multiply the gradient at the first layer by more than a thousand, so its updates "
        "dwarf the others' and training is unstable unless the learning rate is tiny. Skip connections give the "
        "gradient a path that does not cross every normalization, which is why ResNets train at that depth."
    )
    example = """
layers = []
for _ in range(40):
    layers += [nn.Linear(128, 128), nn.BatchNorm1d(128), nn.ReLU()]
model = nn.Sequential(*layers)
"""
    fix = """class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
                                  nn.Linear(width, width), nn.BatchNorm1d(width))
        nn.init.zeros_(self.body[-1].weight)   # each block starts as the identity

    def forward(self, x):
        return torch.relu(x + self.body(x))     # the skip path bypasses the norms"""
    references = (
        "Yang et al. 2019, A mean field theory of batch normalization",
        "He et al. 2016, Deep residual learning for image recognition",
        "Goyal et al. 2017, Accurate, large minibatch SGD (zero-init of the last BN gamma in each block)",
    )
    probe_criterion = (
        "Confirmed when the measured gradient RMS at the first weighted layer of the stack is at least "
        "`min_decades` (the rule's own threshold) decades above the output gradient, or is NaN/Inf."
        " The measured update lag and forward signal then set the severity (gradlint.updates); a refuted finding says what was measured."
    )
    # Both stacks grow at the same rate per BN layer; what separates them is how far the gradient at the
    # stack's bottom rises above the output's: 10^3.2 for the 40-layer BN MLP, 10^1.88 for the 56-layer CNN
    # (its global pooling divides the per-element gradient by 64 before the stack starts).
    judged = True
    options = {"min_depth": 10, "min_decades": 2.0}
    option_docs = {
        "min_depth": "the fewest BatchNorm layers in a stack with no skip connection around them",
        "min_decades": "how many decades the gradient must grow down the stack, estimated and then measured",
    }
    VALID = ("fixtures/cases/healthy.py:PlainBNCNN56", "fixtures/zoo/resnet.py:ResNet", "fixtures/zoo/vgg.py:VGG",
             "fixtures/zoo/densenet.py:DenseNet")
    INVALID = ("fixtures/cases/failures.py:DeepBNReLUMLP",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        stack = _unbypassed_batch_norms(ctx)
        if len(stack) < self.opts["min_depth"]:
            return
        first, last = graph[stack[0]], graph[stack[-1]]
        source = next((s for s in first.inputs if graph[s].kind is NodeKind.OP), None)
        decades = est.log10_rms(source) if source is not None else None
        if decades is None or decades < self.opts["min_decades"]:
            return
        before = graph.layer_before(stack[0])
        layer = before.module if before is not None else None
        message = (
            f"{len(stack)} BatchNorm layers from {first.module or '<root>'} to {last.module or '<root>'} lie on every "
            f"path from input to output, with no skip connection around them: batch norm makes the gradient grow "
            f"with depth at init, and the gradient reaching the bottom of the stack is estimated at 10^{decades:.1f} "
            f"times the output gradient. Add residual connections around pairs of layers (`x = x + block(x)`, with "
            f"the last BN of each block zero-initialised), or remove most of the BatchNorm layers."
        )
        yield self.finding(
            ctx, first.module, message, node=first, fix=self.fix,
            evidence={"depth": len(stack), "estimated_decades": round(decades, 3), "first_layer": layer,
                      "first_norm": first.module, "last_norm": last.module},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        level = measured_level(probe, finding.evidence.get("first_layer"))
        if not isinstance(level, float):
            return True if level is Unmeasurable.NONFINITE else None
        finding.evidence["measured_decades"] = round(level, 3)
        if level < self.opts["min_decades"]:
            finding.message += f" Measured: 10^{level:.1f} at the bottom of the stack, below the threshold 10^{self.opts['min_decades']:.0f}."
            return False
        return self.judge(finding, probe, True)


def _unbypassed_batch_norms(ctx: RuleContext) -> list[str]:
    """Batch-norm nodes that dominate the output from the model's input: no skip or concat path avoids them."""
    import networkx as nx

    from gradlint.rule import BATCH_NORM_OPS  # the estimator's op table: loaded with torch, on first use

    graph = ctx.graph
    start = next((r.name for r in graph if r.kind is NodeKind.INPUT and r.name in graph.live), None)
    if start is None:
        return []
    dominators = nx.immediate_dominators(graph.nx, start)
    if graph.output not in dominators:
        return []
    chain, node = [], graph.output
    while node != start:
        if graph[node].op in BATCH_NORM_OPS:
            chain.append(node)
        node = dominators[node]
    return chain[::-1]
