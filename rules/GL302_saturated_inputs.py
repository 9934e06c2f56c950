"""GL302 saturated-inputs: saturating activations fed pre-activations far outside their linear range."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.rule import Rule, RuleContext, is_gate
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


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
        "Confirmed when the probe measures a saturated fraction above `max_saturated` (the rule's own threshold) at the "
        "activation module; refuted otherwise, saying what was measured."
    )
    # Fitted on bench/trainability.py: tanh nets with 34% of inputs saturated (std 3/sqrt(fan_in)) train with
    # both optimizers, 77% (std 10/sqrt(fan_in)) fails with Adam; the midpoint.
    options = {"max_saturated": 0.55}
    option_docs = {
        "max_saturated": "a saturating activation with more than this fraction of its inputs where |φ'| is below 1% of its peak is flagged",
    }
    plot_activations = ("tanh", "hardtanh")  # drawn by `gradlint explain GL302 --plot`
    VALID = ("fixtures/cases/healthy.py:TanhLeCun", "fixtures/cases/healthy.py:GLUMLP",
             "fixtures/cases/lookalikes.py:SqrtScaledAttention", "fixtures/cases/mlp.py:MLP(depth=4, act='tanh', init='large')",
             "fixtures/zoo/efficientnet.py:EfficientNet", "fixtures/zoo/lstm_lm.py:LSTMLanguageModel")
    INVALID = ("fixtures/cases/failures.py:SaturatedTanh",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        for name, info in est.pointwise.items():
            if not info.saturating or name not in graph.live or is_gate(ctx, name):
                continue
            h = info.input
            std = math.sqrt(h.var)
            fraction = info.shape.flat_fraction
            if fraction <= self.opts["max_saturated"]:
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

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterator[Finding]:
        """A training step's saturating activations (not gates) with more than `max_saturated` of their
        inputs in the flat tails."""
        saturating = {ctx.graph[name].module: name for name, info in ctx.estimate.pointwise.items()
                      if info.saturating and name in ctx.graph.live}
        for path, measure in measured.activations.items():
            name = saturating.get(path)
            if name is None or measure.saturated_fraction <= self.opts["max_saturated"]:
                continue
            if not math.isfinite(measure.input_mean or 0.0) or is_gate(ctx, name):
                continue
            node = ctx.graph[name]
            message = (
                f"{path or '<root>'} ({measure.kind}) receives pre-activations with mean {measure.input_mean or 0.0:.2f} and "
                f"std {measure.input_std or 0.0:.2f} (measured): {measure.saturated_fraction:.0%} of them fall where its "
                f"derivative is below 1% of its peak (threshold {self.opts['max_saturated']:.0%}), so those units pass "
                f"almost no gradient and act as a sign function. Normalize the inputs, initialise the layer before it "
                f"for unit variance, e.g. `nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))`, "
                f"or add `nn.LayerNorm(width)` before the activation."
            )
            yield self.finding(
                ctx, path, message, node=node, fix=self.fix,
                evidence={"measured_saturated_fraction": round(measure.saturated_fraction, 4),
                          "input_mean": round(measure.input_mean or 0.0, 4), "input_std": round(measure.input_std or 0.0, 4)},
            )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        measure = probe.activations.get(finding.module)
        if measure is None:
            return None
        finding.evidence["measured_saturated_fraction"] = round(measure.saturated_fraction, 4)
        if measure.saturated_fraction <= self.opts["max_saturated"]:
            finding.message += (f" Measured: {measure.saturated_fraction:.0%} saturated, within the threshold "
                                f"{self.opts['max_saturated']:.0%}.")
            return False
        return True
