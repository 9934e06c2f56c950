"""GL205 forward-explosion: at init the model's output is orders of magnitude larger than its input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext
from gradlint.types import Finding, Risk, Severity
from gradlint.updates import EXPLODING

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class ForwardExplosion(Rule):
    code = "GL205"
    name = "forward-explosion"
    severity = Severity.ERROR
    risk = Risk.EXPLODING
    summary = "The model's output at init is orders of magnitude larger than its input."
    why = (
        "Weights far larger than 1/sqrt(fan_in) (an init like `uniform_(-100, 100)`, a missing scale) multiply "
        "the signal at every layer, so the logits start at 10^3-10^5. A softmax over such logits is one-hot: the "
        "cross-entropy loss starts in the thousands, its gradient is the same for every wrong class, and the "
        "first steps of any optimizer are spent shrinking weights instead of learning; with a plain SGD step "
        "the loss overflows. This needs no depth: two layers are enough, so a rule that waits for gradients to "
        "grow layer by layer misses it."
    )
    example = """
net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
for m in net:
    if isinstance(m, nn.Linear):
        nn.init.uniform_(m.weight, -100, 100)   # std 58 instead of ~0.1
"""
    fix = (
        "Initialise weights with a std of about 1/sqrt(fan_in) (PyTorch's default, "
        "`nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')`, or `nn.init.xavier_uniform_`), or "
        "normalise before the output (`nn.LayerNorm(width)`)."
    )
    references = (
        "LeCun, Bottou, Orr & Müller 1998, Efficient BackProp (inputs and weights scaled for unit variance)",
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks",
    )
    probe_criterion = (
        "Confirmed when the measured RMS of the model's output is at least `min_log10` decades above the input's "
        "RMS, or is NaN/Inf; the measured magnitude sets the severity."
    )
    # Fitted by bench/trainability.py --fit (feature output_gain, shared with gradlint.updates.EXPLODING):
    # models whose output exceeds the input by min_log10 decades fail with SGD; by error_log10, with Adam too.
    options = {"min_log10": EXPLODING["signal_warning"], "error_log10": EXPLODING["signal_error"]}
    option_docs = {
        "min_log10": "an output RMS at least 10^min_log10 times the input's is flagged",
        "error_log10": "at 10^error_log10 times the input's RMS or more the finding is an error, not a warning",
    }
    VALID = ("fixtures/cases/explosion.py:DefaultTwoLayer", "fixtures/cases/explosion.py:LargeThenNorm",
             "fixtures/cases/healthy.py:ReLUHe", "fixtures/zoo/resnet.py:ResNet", "fixtures/zoo/gpt2.py:GPT2")
    INVALID = ("fixtures/cases/explosion.py:UniformHundred", "fixtures/cases/failures.py:LargeInitReLU")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        gain = output_gain(ctx)
        if gain is None:
            return
        decades, input_rms, output_rms = gain
        if decades < float(self.opts["min_log10"]):
            return
        graph = ctx.graph
        layer = graph.layer_before(graph.output) or (graph.weighted_layers[-1] if graph.weighted_layers else None)
        grown = max(((w, ctx.estimate.stats[w.output].q) for w in graph.weighted_layers if w.output in ctx.estimate.stats),
                    key=lambda item: item[1], default=(None, 0.0))[0]
        first = _first_growth(ctx, input_rms)
        where = first.module if first is not None else (layer.module if layer else "")
        severity = Severity.ERROR if decades >= float(self.opts["error_log10"]) else Severity.WARNING
        message = (
            f"At init the model's output has an estimated RMS of {output_rms:.3g}, 10^{decades:.1f} times its "
            f"input's ({input_rms:.3g}); the signal first grows past 10x the input at {where or '<root>'}. Logits "
            "this large make the softmax one-hot and the first loss enormous: SGD steps overflow"
        )
        message += " and even Adam spends its first steps shrinking the weights." if severity is Severity.ERROR else "."
        message += " Initialise the weights near 1/sqrt(fan_in) (PyTorch's default or kaiming_normal_)."
        yield self.finding(
            ctx, where, message, fix=self.fix, severity=severity,
            evidence={"estimated_log10": round(decades, 3), "input_rms": input_rms, "output_rms": output_rms,
                      "first_growth": where, "largest_layer": grown.module if grown else None},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        if probe.nonfinite:
            return True
        out, inp = probe.output_rms, finding.evidence.get("input_rms")
        if not out or not inp or not math.isfinite(out):
            return None if out is None or math.isfinite(out or 0.0) else True
        measured = math.log10(out / inp)
        finding.evidence["measured_log10"] = round(measured, 3)
        if measured < float(self.opts["min_log10"]):
            finding.message += f" Measured: 10^{measured:.1f}, below the threshold 10^{self.opts['min_log10']:.1f}."
            return False
        finding.severity = Severity.ERROR if measured >= float(self.opts["error_log10"]) else Severity.WARNING
        return True


def output_gain(ctx: RuleContext) -> tuple[float, float, float] | None:
    """log10(RMS(output) / RMS(input)) predicted at init, with both RMS values; None without a float input.
    Token inputs count as unit RMS (an embedding row is the input a transformer scales)."""
    graph, stats = ctx.graph, ctx.estimate.stats
    inputs = [stats[r.name].q for r in graph if r.kind is NodeKind.INPUT and r.name in stats]
    floats = [q for q in inputs if q > 0]
    q_in = max(floats) if floats else (1.0 if inputs else 0.0)
    out = stats.get(graph.output)
    if q_in <= 0 or out is None or out.q <= 0 or not math.isfinite(out.q):
        return None
    return 0.5 * math.log10(out.q / q_in), math.sqrt(q_in), math.sqrt(out.q)


def _first_growth(ctx: RuleContext, input_rms: float) -> Any:
    """The first weighted layer whose output RMS is more than ten times the input's."""
    for layer in ctx.graph.weighted_layers:
        stat = ctx.estimate.stats.get(layer.output)
        if stat is not None and stat.q > 0 and math.sqrt(stat.q) > 10 * input_rms:
            return layer
    return None
