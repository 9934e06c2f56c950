"""GL201 exploding-gradient: the estimated gradient at some layer is far larger than at the output."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gradlint.rule import Rule, RuleContext, Unmeasurable, measured_level, training_verdict
from gradlint.types import Finding, ProfileEntry, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class ExplodingGradient(Rule):
    code = "GL201"
    name = "exploding-gradient"
    severity = Severity.WARNING
    escalation = ("warning when plain SGD will not train it, error when Adam will not either: set by the update lag "
                  "and forward signal (gradlint.updates, fitted on bench/trainability.py)")
    risk = Risk.EXPLODING
    summary = "The predicted gradient at some layer is many times larger than the gradient at the model's output."
    why = (
        "When each layer multiplies the backward signal by more than one (weights initialised too large, a chaotic "
        "tanh network, batch norm without skips), the gradient grows geometrically towards the input. The early "
        "layers then take steps orders of magnitude larger than the late ones: a learning rate small enough for them "
        "leaves the rest of the network frozen, and a larger one makes the loss spike or turn NaN."
    )
    example = """
layers = []
for _ in range(20):
    lin = nn.Linear(128, 128)
    nn.init.normal_(lin.weight, std=3.0 / 128 ** 0.5)   # 3x too large for ReLU
    layers += [lin, nn.ReLU()]
model = nn.Sequential(*layers)
"""
    fix = (
        "Initialise each weight layer for its activation so the gain per layer is one: "
        "`nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')` before ReLU, "
        "`nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))` before tanh; add "
        "`nn.LayerNorm(width)` or residual connections (`x = x + block(x)`) to deep stacks; and clip during "
        "training with `torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`."
    )
    references = (
        "Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural networks",
        "He et al. 2015, Delving deep into rectifiers (the init that keeps the gain per layer at one)",
        "Poole et al. 2016; Schoenholz et al. 2017, Deep information propagation (the chaotic phase)",
    )
    probe_criterion = (
        "Confirmed when the measured gradient RMS at the peak layer is above `max_log10` (the rule's own "
        "threshold) relative to the output gradient, or is NaN/Inf."
        " The measured update lag and forward signal then set the severity (gradlint.updates); a refuted finding says what was measured."
    )
    # Judged on the estimator's scale-free profile (normalizations' 1/scale amplification removed): a norm
    # that rescales a small residual stream (pre-LN transformers at std 0.02, LLaMA-7B: 10^4 at the
    # embedding) or a BN stack (GL202's business) raises the raw profile without any layer exploding.
    judged = True
    options = {"max_log10": math.log10(70), "error_log10": 4.0}
    option_docs = {
        "max_log10": "a layer receiving more than 10^max_log10 times the output gradient's RMS is flagged (log10 70 by default)",
        "error_log10": "above 10^error_log10 times the output gradient the finding is an error, not a warning",
    }
    VALID = ("fixtures/cases/healthy.py:PlainBNCNN56", "fixtures/zoo/resnet.py:ResNet", "fixtures/zoo/vgg.py:VGG",
             "fixtures/zoo/gpt2.py:GPT2", "fixtures/zoo/llama.py:Llama(n_layers=8)")
    INVALID = ("fixtures/cases/failures.py:ChaoticTanh", "fixtures/cases/failures.py:LargeInitReLU")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        profile = [p for p in ctx.estimate.profile if p.log10_grad_rms is not None and math.isfinite(p.log10_grad_rms)]
        if len(profile) < 2:
            return
        peak = max(profile, key=lambda p: p.log10_grad_rms or 0.0)
        top = peak.log10_grad_rms or 0.0
        if top <= self.opts["max_log10"] or not self._layers_explode(ctx, profile, top):
            return
        steep, rise = _steepest(profile, peak)
        severity = Severity.ERROR if top > self.opts["error_log10"] else Severity.WARNING
        message = (
            f"The estimated gradient at {peak.module} ({peak.kind}) is 10^{top:.1f} times the gradient at the "
            f"model's output, growing layer by layer (not a normalization rescaling a small signal) (threshold 10^{self.opts['max_log10']:.1f}); it rises most at {steep.module} "
            f"(x10^{rise:.2f} over the next layer). Early layers will take steps far larger than late ones"
        )
        if severity is Severity.ERROR:
            message += ", and the loss is likely to spike or become NaN in the first steps"
        yield self.finding(
            ctx, steep.module, message + ".", fix=self.fix, severity=severity,
            evidence={"peak_layer": peak.module, "estimated_log10": round(top, 3), "steepest_layer": steep.module,
                      "steepest_rise": round(rise, 3)},
        )

    def _layers_explode(self, ctx: RuleContext, profile: list[ProfileEntry], top: float) -> bool:
        """Growth that the layers themselves compound, not a normalization rescaling a small signal: the
        scale-free profile (normalizations' amplification removed) must also pass the threshold, and the
        growth must be geometric in depth (the output-side half of the layers grows at least half as much as the input-side half), unlike a
        pre-LN transformer whose small residual stream makes the first few blocks' gradients large."""
        r = ctx.estimate.r_scale_free
        outputs = [layer.output for p in profile if (layer := ctx.graph.layer_named(p.module)) is not None]
        scale_free = [0.5 * math.log10(r[out]) for out in outputs if r.get(out, 0.0) > 0 and math.isfinite(r[out])]
        if not scale_free or max(scale_free) <= self.opts["max_log10"]:
            return False
        return _geometric([p.log10_grad_rms or 0.0 for p in profile])

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterator[Finding]:
        """A training step's measured profile: above `max_log10`, growing geometrically in depth, and an
        early layer's measured update outrunning a later one's (the measured verdict at warning or above:
        a normalization rescaling a small signal raises the raw profile but not the update lead)."""
        profile = [p for p in measured.profile if p.log10_grad_rms is not None and math.isfinite(p.log10_grad_rms)]
        if len(profile) < 2:
            return
        peak = max(profile, key=lambda p: p.log10_grad_rms or 0.0)
        top = peak.log10_grad_rms or 0.0
        if top <= self.opts["max_log10"] or not _geometric([p.log10_grad_rms or 0.0 for p in profile]):
            return
        if training_verdict(ctx, self.risk, measured).severity is Severity.INFO:
            return
        steep, rise = _steepest(profile, peak)
        message = (
            f"The measured gradient at {peak.module} ({peak.kind}) is 10^{top:.1f} times the gradient at the model's "
            f"output, growing layer by layer (threshold 10^{self.opts['max_log10']:.1f}); it rises most at "
            f"{steep.module} (x10^{rise:.2f} over the next layer). Early layers take steps far larger than late ones."
        )
        yield self.finding(ctx, steep.module, message, fix=self.fix, measured=measured,
                           evidence={"peak_layer": peak.module, "measured_log10": round(top, 3),
                                     "steepest_layer": steep.module, "steepest_rise": round(rise, 3)})

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        level = measured_level(probe, finding.evidence.get("peak_layer"))
        if not isinstance(level, float):
            return True if level is Unmeasurable.NONFINITE else None
        finding.evidence["measured_log10"] = round(level, 3)
        if level <= self.opts["max_log10"]:
            finding.message += (f" Measured: 10^{level:.2f} at {finding.evidence.get('peak_layer')}, below the threshold "
                                f"10^{self.opts['max_log10']:.2f}.")
            return False
        return self.judge(finding, probe, True)


def _steepest(profile: list[ProfileEntry], peak: ProfileEntry) -> tuple[ProfileEntry, float]:
    """The step where the gradient rises most going backwards: layer i receives more than layer i + 1."""
    steep, rise = peak, 0.0
    for earlier, later in itertools.pairwise(profile):
        step = (earlier.log10_grad_rms or 0.0) - (later.log10_grad_rms or 0.0)
        if step > rise:
            steep, rise = earlier, step
    return steep, rise


def _geometric(values: list[float]) -> bool:
    """Growth compounded in depth: the output-side half of the layers grows at least half as much as the
    input-side half (unlike a pre-LN transformer whose small residual stream inflates the first blocks)."""
    middle = values[len(values) // 2]
    early_growth = values[0] - middle  # input-side half
    late_growth = middle - min(values[len(values) // 2:])  # output-side half
    return early_growth + late_growth > 0 and late_growth >= 0.5 * early_growth
