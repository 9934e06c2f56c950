"""GL203 unnormalized-residual-growth: residual blocks with neither normalization nor branch scaling, whose
stream's variance compounds with depth."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext, parent_module
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class UnnormalizedResidualGrowth(Rule):
    code = "GL203"
    name = "unnormalized-residual-growth"
    severity = Severity.WARNING
    risk = Risk.EXPLODING
    summary = "Residual blocks without normalization or branch scaling: activations and gradients grow with depth."
    why = (
        "`x = x + f(x)` adds the branch's variance to the stream's. When f has no normalization and a "
        "variance-preserving init, its output is as large as its input, so every block multiplies the stream's "
        "variance by about two: after L blocks activations (and the gradients flowing back through the branches) "
        "are 2^(L/2) times larger. Normalization inside the branch makes the growth additive instead, and scaling "
        "each branch by 1/sqrt(L) or zero-initialising its last layer keeps the sum bounded."
    )
    example = """
class Net(nn.Module):
    def forward(self, x):
        for branch in self.branches:          # 32 x (Linear, ReLU, Linear), kaiming init
            x = x + branch(x)
        return self.head(x)
"""
    fix = (
        "Scale each residual branch so the stream's variance stays bounded: `x = x + branch(x) / math.sqrt(num_blocks)`, "
        "or zero-initialise each branch's last layer (`nn.init.zeros_(branch[-1].weight)`, Fixup/SkipInit), or "
        "normalize the branch input (`x = x + branch(norm(x))` with `norm = nn.LayerNorm(width)`)."
    )
    references = (
        "Zhang, Dauphin & Ma 2019, Fixup initialization: residual learning without normalization",
        "De & Smith 2020, Batch normalization biases residual blocks towards the identity function (SkipInit)",
        "Hanin & Rolnick 2018, How to start training: the effect of initialization and architecture",
    )
    probe_criterion = (
        "Confirmed when the measured output std of the last block's first weighted layer, over that of the first "
        "block's, grows by at least half the estimated factor in decades."
    )
    # Estimated variance growth over the stack: UnnormalizedResNet ~2e15 (3x per block), ResidualMLPScaled
    # (1/sqrt(L) branches) 6.9x; pre-LN stacks (PreNormTransformer 3.4x, GPT2 1.5x) have normalized branches.
    options = {"min_blocks": 4, "max_growth": 100.0}
    option_docs = {
        "min_blocks": "the fewest residual blocks in a row without normalization or branch scaling",
        "max_growth": "the factor the activations' mean square may grow by from the first block to the last",
    }
    VALID = ("fixtures/cases/healthy.py:ResidualMLPScaled", "fixtures/zoo/resnet.py:ResNet", "fixtures/zoo/gpt2.py:GPT2",
             "fixtures/cases/healthy.py:PreNormTransformer")
    INVALID = ("fixtures/cases/failures.py:UnnormalizedResNet",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, stats = ctx.graph, ctx.estimate.stats
        blocks = dict(_unnormalized_residual_adds(ctx))
        if len(blocks) < self.opts["min_blocks"]:
            return
        _, path = graph.longest_path({name: 1.0 for name in blocks})
        stack = [n for n in path if n in blocks]
        if len(stack) < self.opts["min_blocks"]:
            return
        q_start = stats[blocks[stack[0]]].q
        q_end = stats[stack[-1]].q
        if q_start <= 0 or not q_end > self.opts["max_growth"] * q_start:
            return
        growth = q_end / q_start if math.isfinite(q_end) else math.inf
        per_block = growth ** (1.0 / len(stack)) if math.isfinite(growth) else math.inf
        first_layer = _first_layer_in(ctx, blocks[stack[0]], stack[0])
        last_layer = _first_layer_in(ctx, blocks[stack[-1]], stack[-1])
        first, last = graph[stack[0]], graph[stack[-1]]
        module = parent_module(first_layer) or first.module
        decades = 0.5 * math.log10(growth) if math.isfinite(growth) else math.inf
        message = (
            f"{len(stack)} residual blocks from {module or '<root>'} to {parent_module(last_layer) or last.module} "
            f"add an unnormalized, unscaled branch to the stream: its variance grows about {per_block:.2f}x per "
            f"block, so activations end 10^{decades:.1f} times larger than they start and the gradients through "
            f"the branches grow with them. Scale each branch, e.g. `x = x + branch(x) / math.sqrt({len(stack)})`, or "
            f"zero-initialise its last layer (`nn.init.zeros_(branch[-1].weight)`)."
        )
        yield self.finding(
            ctx, module, message, node=first, fix=self.fix,
            evidence={"blocks": len(stack), "variance_growth": growth if math.isfinite(growth) else None,
                      "estimated_std_decades": round(decades, 3) if math.isfinite(decades) else None,
                      "first_layer": first_layer, "last_layer": last_layer,
                      "estimated_layer_decades": _layer_decades(ctx, first_layer, last_layer)},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        layers = probe.layers
        names = (finding.evidence.get("first_layer"), finding.evidence.get("last_layer"))
        first, last = (layers.get(name) if isinstance(name, str) else None for name in names)
        expected = finding.evidence.get("estimated_layer_decades")
        if first is None or last is None or not isinstance(expected, (int, float)):
            return None
        if first.nonfinite or last.nonfinite or not math.isfinite(last.out_std):
            return True
        if first.out_std <= 0 or last.out_std <= 0:
            return None
        measured = math.log10(last.out_std / first.out_std)
        finding.evidence["measured_layer_decades"] = round(measured, 3)
        return measured >= expected / 2


def _unnormalized_residual_adds(ctx: RuleContext) -> Iterator[tuple[str, str]]:
    """(add, skip input) for each `skip + branch(skip)` whose branch has no normalization op."""
    import networkx as nx

    graph = ctx.graph
    for node in graph.ops():
        if node.op != "add" or node.name not in graph.live:
            continue
        refs = [r for r in node.inputs if graph[r].kind in (NodeKind.OP, NodeKind.INPUT)]
        if len(refs) != 2 or refs[0] == refs[1]:
            continue
        for skip, branch in ((refs[0], refs[1]), (refs[1], refs[0])):
            if nx.has_path(graph.nx, skip, branch):
                inside = graph.between(skip, node.name)
                if not any(n in ctx.estimate.normalizers for n in inside):
                    yield node.name, skip
                break


def _first_layer_in(ctx: RuleContext, skip: str, add: str) -> str | None:
    """The first weighted layer inside the branch from `skip` to `add`: its output std follows the stream's."""
    layers = ctx.graph.layers_in(ctx.graph.between(skip, add))
    return layers[0].module if layers else None


def _layer_decades(ctx: RuleContext, first: str | None, last: str | None) -> float | None:
    """Estimated log10 growth of the output std from the `first` layer to the `last`."""
    if first is None or last is None or first == last:
        return None
    stats, first_layer, last_layer = ctx.estimate.stats, ctx.graph.layer_named(first), ctx.graph.layer_named(last)
    if first_layer is None or last_layer is None:
        return None
    q_first, q_last = stats[first_layer.output].q, stats[last_layer.output].q
    if q_first <= 0 or not math.isfinite(q_last) or q_last <= 0:
        return None
    return round(0.5 * math.log10(q_last / q_first), 3)
