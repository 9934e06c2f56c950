"""GL101 saturating-chain: consecutive saturating activations with nothing to rescue the gradient."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext, Unmeasurable, is_gate, measured_drift
from gradlint.types import Family, Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult

# Op families that carry the signal from one activation to the next without normalising it or adding a skip.
PLAIN = frozenset({Family.WEIGHTED, Family.MATMUL, Family.STRUCTURAL, Family.DROPOUT, Family.MAX_POOLING,
                   Family.AVERAGE_POOLING})


class SaturatingChain(Rule):
    code = "GL101"
    name = "saturating-chain"
    severity = Severity.WARNING
    escalation = ("warning when plain SGD will not train it, error when Adam will not either: set by the update lag "
                  "and forward signal (gradlint.updates, fitted on bench/trainability.py)")
    risk = Risk.VANISHING
    summary = "A run of saturating activations (sigmoid, tanh, hardtanh...) with no normalization or skip between them."
    why = (
        "Each saturating activation multiplies the backward signal by its derivative, at most 0.25 for sigmoid and "
        "1 for tanh, and far less once its inputs drift into the flat tails. A chain of them with only weight "
        "layers in between compounds these factors: the early layers receive a vanishing fraction of the output "
        "gradient and barely move under SGD."
    )
    example = """
layers = []
for _ in range(20):
    layers += [nn.Linear(64, 64), nn.Sigmoid()]   # 20 sigmoids in a row
model = nn.Sequential(*layers)
"""
    fix = (
        "Use a non-saturating activation with matched init (`nn.ReLU()` / `nn.GELU()` and "
        "`nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')`), or break the chain with normalization "
        "(`nn.LayerNorm(width)` before each activation) or residual connections (`x = x + block(x)`)."
    )
    references = (
        "Hochreiter 1991; Bengio, Simard & Frasconi 1994, Learning long-term dependencies with gradient descent is difficult",
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks",
    )
    probe_criterion = (
        "Confirmed when the measured gradient RMS at the chain's first weighted layer is at least "
        "`min_decades` (the rule's own threshold) decades below that at its last weighted layer."
        " The measured update lag and forward signal then set the severity (gradlint.updates); a refuted finding says what was measured."
    )
    judged = True
    options = {"min_length": 3, "min_decades": 2.0}
    option_docs = {
        "min_length": "the fewest saturating activations in a row that make a chain",
        "min_decades": "how many decades (powers of 10) the gradient must shrink across the chain, estimated and then measured",
    }
    plot_activations = ("sigmoid", "tanh")  # drawn by `gradlint explain GL101 --plot`
    VALID = ("fixtures/cases/healthy.py:ShallowSigmoid", "fixtures/cases/healthy.py:SwishMLP",
             "fixtures/cases/lookalikes.py:SqrtScaledAttention",
             "fixtures/cases/healthy.py:SigmoidInResidual", "fixtures/cases/healthy.py:GLUMLP")
    INVALID = ("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/cases/failures.py:HeInitSigmoid")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        saturating = [n for n, info in est.pointwise.items() if info.saturating and n in graph.live
                      and not is_gate(ctx, n)]
        chain: dict[str, list[str]] = {}
        for name in graph.order:
            if name not in saturating:
                continue
            best: list[str] = []
            for prev in _previous_saturating(ctx, est.pointwise[name].root, set(saturating)):
                if len(chain.get(prev, [])) > len(best):
                    best = chain[prev]
            chain[name] = [*best, name]
        reported: set[str] = set()
        for name in reversed(graph.order):
            links = chain.get(name)
            if not links or len(links) < self.opts["min_length"] or links[0] in reported:
                continue
            reported.update(links)
            first, last = links[0], links[-1]
            start_root = est.pointwise[first].root
            r_start, r_end = est.r.get(start_root, 0.0), est.r.get(last, 0.0)
            if r_start <= 0 or r_end <= 0:
                continue
            decades = 0.5 * math.log10(r_start / r_end)
            bound = math.prod(min(est.pointwise[n].max_grad, 1.0) for n in links)
            if decades > -self.opts["min_decades"]:
                continue
            node = graph[first]
            kinds = sorted({graph[n].op for n in links})
            first_layer, last_layer = _layers_around(ctx, links)
            overall = est.log10_rms(start_root)
            severity = Severity.ERROR if overall is not None and overall < -3 else Severity.WARNING
            message = (
                f"{len(links)} saturating activations ({', '.join(kinds)}) in a row from {node.module or '<root>'} "
                f"to {graph[last].module or '<root>'} with no normalization or skip between them: the estimated "
                f"gradient shrinks by 10^{decades:.1f} across the chain (derivative bound {bound:.1e})"
            )
            if overall is not None:
                message += f"; layers before it receive 10^{overall:.1f} of the output gradient"
            yield self.finding(
                ctx, node.module, message + ".", node=node, fix=self.fix, severity=severity,
                evidence={"length": len(links), "estimated_decades": round(decades, 3), "derivative_bound": bound,
                          "first_layer": first_layer, "last_layer": last_layer,
                          "activations": [graph[n].module for n in links]},
            )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        measured = measured_drift(probe, finding.evidence.get("first_layer"), finding.evidence.get("last_layer"))
        if measured is None:
            return None
        if isinstance(measured, Unmeasurable):  # no gradient, or NaN/Inf, at the chain's first layer
            return self.judge(finding, probe, True)
        finding.evidence["measured_decades"] = round(measured, 3)
        if measured > -self.opts["min_decades"]:
            finding.message += f" Measured: 10^{measured:.1f} across the chain, less than the threshold of 10^-{self.opts['min_decades']:.0f}."
            return False
        return self.judge(finding, probe, True)


def _previous_saturating(ctx: RuleContext, start: str, saturating: set[str]) -> Iterator[str]:
    """Saturating nodes reachable backwards from `start` through plain ops only."""
    graph = ctx.graph
    stack, seen = [start], {start}
    while stack:
        name = stack.pop()
        if name in saturating:
            yield name
            continue
        node = graph[name]
        if node.kind is not NodeKind.OP or graph.family(node) not in PLAIN:
            continue  # a normalization, a skip (add), a concat or another activation ends the chain
        for src in node.inputs:
            if src not in seen and graph[src].kind is NodeKind.OP:
                seen.add(src)
                stack.append(src)


def _layers_around(ctx: RuleContext, links: list[str]) -> tuple[str | None, str | None]:
    """The first weighted layer feeding the chain and the last one inside it."""
    graph = ctx.graph
    before, inside = graph.layer_before(links[0]), graph.layer_before(links[-1])
    if inside is not None and graph.position[inside.output] < graph.position[links[0]]:
        inside = None  # the last layer before the chain's end comes before its start
    return (before.module if before else None), (inside.module if inside else None)
