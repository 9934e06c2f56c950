"""GL302 saturated-inputs: saturating activations fed pre-activations far outside their linear range."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from gradlint.estimate.pointwise import PointwiseResolver
from gradlint.rule import Rule, RuleContext, is_gate
from gradlint.types import Finding, Risk, Severity

GRID = 4001  # points over mean ± 8 std, and again over ± 20 for the derivative's peak
FLAT = 0.01  # |φ'| below this fraction of its maximum counts as saturated (as the probe measures it)


class SaturatedInputs(Rule):
    code = "GL302"
    name = "saturated-inputs"
    severity = Severity.WARNING
    risk = Risk.VANISHING
    summary = "A saturating activation (tanh, sigmoid, hardtanh...) whose inputs mostly fall in its flat tails."
    why = (
        "Where a saturating activation is flat its derivative is nearly zero: a unit whose pre-activation sits "
        "there passes no gradient back and its incoming weights stop learning, and the layer behaves like a sign "
        "function. Pre-activations that large come from weights initialised too large for the activation or from "
        "unnormalized inputs (LeCun et al. 1998)."
    )
    example = """
lin = nn.Linear(128, 128)
nn.init.normal_(lin.weight, std=10 / 128 ** 0.5)   # pre-activations ~ N(0, 100)
block = nn.Sequential(lin, nn.Tanh())              # ~80% of units saturated
"""
    fix = (
        "Initialise the layer feeding the activation for unit-variance outputs: "
        "`nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))` (or LeCun normal, "
        "std `1 / math.sqrt(fan_in)`), and normalize the inputs or the pre-activations (`nn.LayerNorm(width)` before the "
        "activation)."
    )
    references = (
        "LeCun, Bottou, Orr & Müller 1998, Efficient BackProp",
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks",
    )
    probe_criterion = (
        "Confirmed when the probe measures a saturated fraction above `max_saturated / 2` at the activation module."
    )
    options = {"max_saturated": 0.3}
    plot_activations = ("tanh", "hardtanh")  # drawn by `gradlint explain GL302 --plot`
    VALID = ("fixtures/cases/healthy.py:TanhLeCun", "fixtures/cases/healthy.py:GLUMLP",
             "fixtures/zoo/efficientnet.py:EfficientNet", "fixtures/zoo/lstm_lm.py:LSTMLanguageModel")
    INVALID = ("fixtures/cases/failures.py:SaturatedTanh",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        resolver = PointwiseResolver(graph)
        for name, info in est.pointwise.items():
            if not info.saturating or name not in graph.live or is_gate(ctx, name):
                continue
            h = info.input
            std = math.sqrt(h.var)
            fraction = _saturated_fraction(resolver, name, info.root, h.mean, std)
            if fraction is None or fraction <= self.opts["max_saturated"]:
                continue
            node = graph[name]
            message = (
                f"{node.module or '<root>'} ({node.op}) receives pre-activations with mean {h.mean:.2f} and std "
                f"{std:.2f} at init: {fraction:.0%} of them fall where its derivative is below 1% of its peak "
                f"(threshold {self.opts['max_saturated']:.0%}), so those units pass almost no gradient and act as a "
                f"sign function. Initialise the layer before it for unit variance, e.g. "
                f"`nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))`, or add "
                f"`nn.LayerNorm(width)` before the activation."
            )
            yield self.finding(
                ctx, node.module, message, node=node, fix=self.fix,
                evidence={"saturated_fraction": round(fraction, 4), "input_mean": round(h.mean, 4),
                          "input_std": round(std, 4)},
            )

    def confirm(self, finding: Finding, probe: object) -> bool | None:
        measure = getattr(probe, "activations", {}).get(finding.module)
        if measure is None:
            return None
        finding.evidence["measured_saturated_fraction"] = round(measure.saturated_fraction, 4)
        return measure.saturated_fraction > self.opts["max_saturated"] / 2


def _saturated_fraction(resolver: PointwiseResolver, name: str, root: str, mean: float, std: float) -> float | None:
    """P(|φ'(h)| < 1% of max |φ'|) for h ~ N(mean, std²), φ replayed from the graph on a dense grid over the
    distribution; the peak of |φ'| is also sought on a fixed grid around zero, where activations bend. A
    rectifier's zero-gradient left half is not counted: that is a dead unit (GL301), not a saturated one."""
    spread = torch.linspace(mean - 8.0 * std, mean + 8.0 * std, GRID, dtype=torch.float64)
    points = torch.cat([spread, torch.linspace(-20.0, 20.0, GRID, dtype=torch.float64)]).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = resolver.composite(name, root)(points.clone())
            (grad,) = torch.autograd.grad(out.sum(), points, allow_unused=True)
    except Exception:  # not evaluable on float64 points: not judged
        return None
    if grad is None:
        return None
    slope = torch.nan_to_num(grad.detach().abs())
    peak = float(slope.max())
    if peak <= 0:
        return None
    flat = slope[:GRID] < FLAT * peak
    around, fixed = points.detach()[GRID:], slope[GRID:]
    if bool((fixed[around < 0] == 0).all()):  # a rectifier (relu6): its flat left half is GL301's dead region
        flat &= spread > 0
    flat = flat.double()
    if std <= 0:
        return float(flat[GRID // 2])
    density = torch.exp(-0.5 * ((spread - mean) / std) ** 2)
    return float((density * flat).sum() / density.sum())
