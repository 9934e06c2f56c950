"""GL301 dead-relu-risk: ReLU-family activations whose inputs are mostly negative at initialisation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.graph import Ref
from gradlint.rule import Rule, RuleContext
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ActivationMeasure, LayerMeasure, ProbeResult


class DeadReLURisk(Rule):
    code = "GL301"
    name = "dead-relu-risk"
    severity = Severity.ERROR  # bench/trainability.py: a stack of dead ReLUs fails with Adam too
    risk = Risk.DEAD_UNITS
    summary = "A ReLU-family activation whose pre-activation is mostly negative at init: its units start dead."
    why = (
        "ReLU passes no gradient where its input is negative. If a negative bias or a shifted input puts most of the "
        "pre-activation distribution below zero, most units output zero for every example: their incoming weights "
        "get no gradient and never recover (the dying-ReLU problem), and the layers below receive almost no signal."
    )
    example = """
lin = nn.Linear(128, 128)
nn.init.constant_(lin.bias, -3.0)   # pre-activations ~ N(-3, 2): 98% negative
block = nn.Sequential(lin, nn.ReLU())
"""
    fix = (
        "Centre the pre-activations at zero: `nn.init.zeros_(layer.bias)` (or a small positive bias, "
        "`nn.init.constant_(layer.bias, 0.01)`), normalize before the activation (`nn.BatchNorm1d(width)` / "
        "`nn.LayerNorm(width)`), or use an activation with a gradient on the left (`nn.LeakyReLU(0.01)`, `nn.GELU()`)."
    )
    references = (
        "Lu et al. 2020, Dying ReLU and initialization: theory and numerical examples",
        "Maas, Hannun & Ng 2013, Rectifier nonlinearities improve neural network acoustic models (leaky ReLU)",
    )
    probe_criterion = (
        "Confirmed when the probe measures more than half of the activation's units dead (never positive over the "
        "batch), at the nn.ReLU module or at the weighted layer feeding it."
    )
    options = {"min_active": 0.1}
    option_docs = {
        "min_active": "a ReLU-family activation whose inputs are positive less than this fraction of the time is flagged",
    }
    plot_activations = ("relu", "gelu")  # drawn by `gradlint explain GL301 --plot`
    VALID = ("fixtures/cases/healthy.py:ReLUPositiveBias", "fixtures/cases/healthy.py:ReLUHe",
             "fixtures/zoo/resnet.py:ResNet", "fixtures/rules/dead_relu_cases.py:ZeroGainSqueezeExcite")
    INVALID = ("fixtures/cases/failures.py:DeadReLU", "fixtures/rules/dead_relu_cases.py:ZeroSqueezeLayer")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        for name, info in est.pointwise.items():
            if name not in graph.live or not info.shape.rectifies:
                continue
            h = info.input
            std = math.sqrt(h.var)
            active = _normal_cdf(h.mean / std) if std > 0 else float(h.mean > 0)
            if active >= self.opts["min_active"]:
                continue
            node = graph[name]
            feeding = graph.layer_feeding(info.root)
            if h.q == 0.0 and feeding is not None and _reads_nothing(ctx, feeding.output):
                continue  # no signal reaches the layer yet (a zero-initialised gain upstream): nothing is dead
            layer = feeding.module if feeding is not None else None
            source = f"the output of {layer}" if layer else "its input"
            message = (
                f"{node.module or '<root>'} ({node.op}) receives {source} with mean {h.mean:.2f} and std {std:.2f} at "
                f"init, so only {active:.1%} of its inputs are positive (threshold {self.opts['min_active']:.0%}): "
                f"most units output zero, pass no gradient and may never recover. Centre the pre-activation, e.g. "
                f"`nn.init.zeros_({_ref(layer)}.bias)`, or normalize before the activation."
            )
            yield self.finding(
                ctx, node.module, message, node=node, fix=self.fix,
                evidence={"active_fraction": round(active, 4), "input_mean": round(h.mean, 4),
                          "input_std": round(std, 4), "layer": layer},
            )

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterator[Finding]:
        """A training step's activations: inputs positive less than `min_active` of the time, or more than
        half the units dead (never positive over the batch: the probe criterion)."""
        graph, est = ctx.graph, ctx.estimate
        # the activations the estimator finds rectifying (zero derivative on one side), as `check` judges them
        rectifying = {graph[name].module: name for name, info in est.pointwise.items()
                      if name in graph.live and info.shape.rectifies}
        for path, measure in measured.activations.items():
            active = measure.active_fraction
            if path not in rectifying or active is None or not math.isfinite(measure.input_mean or 0.0):
                continue  # NaN/Inf inputs are GL204's
            if active >= self.opts["min_active"] and measure.dead_fraction <= 0.5:
                continue
            node = graph[rectifying[path]]
            feeding = graph.layer_feeding(est.pointwise[rectifying[path]].root)
            layer = feeding.module if feeding is not None else None
            source = f"the output of {layer}" if layer else "its input"
            message = (
                f"{path or '<root>'} ({measure.kind}) receives {source} with mean {measure.input_mean:.2f} and std "
                f"{measure.input_std:.2f} (measured), so only {active:.1%} of its inputs are positive (threshold "
                f"{self.opts['min_active']:.0%}) and {measure.dead_fraction:.0%} of its units are dead (never positive "
                f"over the batch): they pass no gradient and may never recover. Lower the learning rate or centre the "
                f"pre-activation, e.g. `nn.init.zeros_({_ref(layer)}.bias)`, or normalize before the activation."
            )
            yield self.finding(
                ctx, path, message, node=node, fix=self.fix,
                evidence={"active_fraction": round(active, 4), "measured_dead_fraction": round(measure.dead_fraction, 4),
                          "input_mean": round(measure.input_mean or 0.0, 4), "input_std": round(measure.input_std or 0.0, 4),
                          "layer": layer},
            )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        activation = probe.activations.get(finding.module)
        measure: ActivationMeasure | LayerMeasure | None = activation
        if activation is None or activation.kind not in ("ReLU", "ReLU6"):
            layer = finding.evidence.get("layer")
            measure = probe.layers.get(layer) if isinstance(layer, str) else None
        if measure is None:
            return None
        finding.evidence["measured_dead_fraction"] = round(measure.dead_fraction, 4)
        return bool(measure.dead_fraction > 0.5)


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _ref(layer: str | None) -> str:
    """How the user's code would name the layer: `model.net[0]` for `net.0`."""
    if not layer:
        return "layer"
    parts = ["model"]
    for part in layer.split("."):
        parts.append(f"[{part}]" if part.isdigit() else f".{part}")
    return "".join(parts)


def _reads_nothing(ctx: RuleContext, output: str) -> bool:
    """The weighted op producing `output` reads an input that is exactly zero at init (NFNet's squeeze-excite
    behind a zero-initialised conv gain, as `zero_init_last` draws it): the zero pre-activation is not this
    layer's init, and the first step that moves the gain gives it a signal."""
    source = ctx.graph[output].arg(0)
    stat = ctx.estimate.stats.get(source.name) if isinstance(source, Ref) else None
    return stat is not None and stat.q == 0.0
