"""GL103 vanishing-gradient: the estimated profile says early layers receive almost none of the output
gradient, and no path around them brings it back."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.rule import Rule, RuleContext, probe_entry
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class VanishingGradient(Rule):
    code = "GL103"
    name = "vanishing-gradient"
    severity = Severity.WARNING
    escalation = ("warning when plain SGD will not train it, error when Adam will not either: set by the update lag "
                  "and forward signal (gradlint.updates, fitted on bench/trainability.py)")
    risk = Risk.VANISHING
    summary = "Weighted layers receive less than 1e-3 of the output gradient at initialisation."
    why = (
        "The update a layer gets is proportional to the gradient that reaches it. When the backward signal "
        "shrinks by a constant factor per layer (a saturating activation, an init that is too small for the "
        "activation, a long stack with no normalization or skip), the first layers receive a vanishing "
        "fraction of it: with plain SGD they do not move while the last layers fit the data, and adaptive "
        "optimizers only partly compensate because their per-parameter scaling is noisy at such magnitudes. "
        "AUTOTRAINER flags a gradient ratio below 1e-3 as vanishing."
    )
    example = """
layers = []
for _ in range(16):
    layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
for m in layers:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.01)   # far below sqrt(2 / fan_in)
"""
    fix = (
        "Match the init to the activation (`nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')` for "
        "ReLU-like, `nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))` for tanh), "
        "replace saturating activations with ReLU/GELU, and add normalization (`nn.BatchNorm2d(c)` / "
        "`nn.LayerNorm(d)` before the activation) or residual connections (`x = x + block(x)`)."
    )
    references = (
        "Bengio, Simard & Frasconi 1994, Learning long-term dependencies with gradient descent is difficult",
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks",
        "He et al. 2015, Delving Deep into Rectifiers",
        "Zhang et al. 2021, AUTOTRAINER: An Automatic DNN Training Problem Detection and Repair System (ICSE)",
    )
    probe_criterion = (
        "Confirmed when the measured log10 gradient RMS at the reported layer is below `min_log10` (the threshold "
        "the rule used) or exactly zero; refuted otherwise, saying what was measured. The measured update lag and "
        "forward signal then set the severity (gradlint.updates)."
    )
    judged = True
    options = {"min_log10": -3.0}  # severity: gradlint.updates.VANISHING (fitted on bench/trainability.py)
    option_docs = {
        "min_log10": "a weighted layer receiving less than 10^min_log10 of the output gradient's RMS is starved",
    }
    VALID = ("fixtures/cases/lookalikes.py:AlexNetTV", "fixtures/cases/lookalikes.py:TinyHeadTransformer",
             "fixtures/cases/lookalikes.py:LayerScaleMLP", "fixtures/cases/mlp.py:MLP(depth=6)",
             "fixtures/zoo/resnet.py:ResNet", "fixtures/cases/healthy.py:ShallowSigmoid", "fixtures/zoo/gpt2.py:GPT2",
             "fixtures/zoo/bert.py:BERT", "fixtures/cases/healthy.py:ReLUHe")
    INVALID = ("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/cases/failures.py:VGGNoBNSmallInit",
               "fixtures/cases/failures.py:DeepGLUMLP", "fixtures/cases/failures.py:HiddenGradientShrink")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        est = ctx.estimate
        yield from self._starved(ctx, [(layer, est.log10_rms(layer.output)) for layer in ctx.graph.weighted_layers])

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterator[Finding]:
        """The same judgement on a training step's measured profile; its measured verdict sets the severity."""
        levels = {p.module: p.log10_grad_rms for p in measured.profile}
        yield from self._starved(ctx, [(layer, levels.get(layer.module)) for layer in ctx.graph.weighted_layers],
                                 measured)

    def _starved(self, ctx: RuleContext, layers: list[tuple[Any, float | None]], measured: Any = None) -> Iterator[Finding]:
        graph = ctx.graph
        threshold = float(self.opts["min_log10"])
        known = [(layer, value) for layer, value in layers if value is not None]
        healthy = {layer.output for layer, value in known if value >= threshold}
        # A layer whose own gradient is small but that sits beside a path carrying the gradient on (attention
        # queries and keys beside the residual stream) is not a vanishing stack: require every weighted layer
        # upstream of it to be below threshold too.
        upstream_ok: dict[str, bool] = {}
        for name in graph.order:
            upstream_ok[name] = name in healthy or any(upstream_ok.get(src, False) for src in graph[name].inputs)
        starved = [(layer, value) for layer, value in known if value < threshold and not upstream_ok[layer.output]]
        if not starved:
            return
        lowest, low = min(starved, key=lambda item: item[1])
        crossing, cross = starved[-1]
        steep, steep_next, fall = _steepest(known, starved)
        message = (
            f"{len(starved)} weighted layer(s) receive less than 10^{threshold:.0f} of the output gradient: from "
            f"{crossing.module} (10^{cross:.1f}) down to {lowest.module}, which receives {_power(low)} of it. "
        )
        if steep is not None and steep_next is not None:
            message += (f"The steepest fall is between {steep_next.module} and {steep.module} "
                        f"(x10^{-fall:.1f}). ")
        message += "Match the init to the activation, or add normalization or residual connections."

        yield self.finding(
            ctx, lowest.module, message, fix=self.fix, measured=measured,
            evidence={"threshold": threshold, ("measured_log10" if measured is not None else "estimated_log10"): round(low, 3),
                      "layers_below": len(starved), "first_below": crossing.module,
                      "steepest_layer": steep.module if steep else None, "steepest_fall": round(fall, 3)},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        entry = probe_entry(probe, finding.module)
        if entry is None:
            return None
        if entry.zero:
            return True
        if entry.log10_grad_rms is None:
            return None
        measured = entry.log10_grad_rms
        finding.evidence["measured_log10"] = round(measured, 3)
        threshold = float(self.opts["min_log10"])
        if measured >= threshold:
            finding.message += f" Measured: {finding.module} receives 10^{measured:.1f}, above the threshold 10^{threshold:.0f}."
            return False
        return self.judge(finding, probe, True)


def _steepest(known: list[tuple[Any, float]], starved: list[tuple[Any, float]]) -> tuple[Any, Any, float]:
    """The layer (among the starved ones) below which the profile falls most from the next weighted layer."""
    names = {layer.module for layer, _ in starved}
    best: tuple[Any, Any, float] = (None, None, 0.0)
    for (layer, value), (after, value_after) in itertools.pairwise(known):
        if layer.module in names and value_after - value > best[2]:
            best = (layer, after, value_after - value)
    return best


def _power(log10: float) -> str:
    """10^-15.2 as '6e-16' for a reader."""
    return f"{10 ** log10:.0e}" if math.isfinite(log10) and log10 > -300 else "none"
