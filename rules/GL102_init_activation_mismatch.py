"""GL102 init-activation-mismatch: a weight scale that does not fit the activation after it, repeated
across a stack until the per-layer gain compounds into a vanishing or exploding gradient."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING
from dataclasses import dataclass

from gradlint.graph import NodeKind, WeightedLayer
from gradlint.rule import Rule, RuleContext, Unmeasurable, measured_drift
from gradlint.types import Family, Finding, Risk, Severity
from gradlint.updates import Updates

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult

# A layer's output op: its weight, or a hand-written product with it, times the signal.
_LAYERS = frozenset({Family.WEIGHTED, Family.MATMUL})
# Elementwise arithmetic inside an activation's composite (swish's `x * sigmoid(x)`): not its name.
_ARITHMETIC = frozenset({Family.SUM, Family.PRODUCT})


@dataclass
class _Link:
    """One weighted layer and the activation right after it."""

    layer: WeightedLayer
    act: str  # last node of the pointwise composite rooted at the layer output
    ops: tuple[str, ...]  # the composite's primitive ops ("relu"; "sigmoid", "mul" for swish)
    named: tuple[str, ...]  # those that name it: not its elementwise arithmetic ("sigmoid" for swish)
    saturating: bool
    backward: float  # fan_out_eff * E[w²] * E[φ'²]: mean-square gradient gain of layer + activation
    forward: float  # fan_in * E[w²] * E[φ²] / q_in: second-moment gain of the pre-activations
    looks_like: str
    matched_gain: float  # std·sqrt(fan_in) that would make `backward` 1, to first order
    current_gain: float  # the weights' std·sqrt(fan_in)
    critical_gain: float | None  # 1/φ'(0) for a saturating φ with φ(0) = 0 (tanh: 1, LeCun); None if none exists


class InitActivationMismatch(Rule):
    code = "GL102"
    name = "init-activation-mismatch"
    severity = Severity.WARNING
    risk = Risk.VANISHING
    summary = "The weight init does not match the activation that follows, and the mismatch compounds over a stack."
    why = (
        "A layer followed by an activation φ multiplies the mean-square gradient by fan_out·E[w²]·E[φ'(h)²] "
        "(and the forward signal by fan_in·E[w²]·E[φ(h)²]/E[h²]). Initialisations are derived to make this 1 "
        "for one activation: He/Kaiming (2/fan_in) for ReLU, LeCun/Xavier (1/fan_in) for tanh. Xavier or "
        "PyTorch's default init (1/(3·fan_in)) under ReLU/GELU/SiLU gives a gain of about 0.5 or 0.17 per "
        "layer; a fixed N(0, 0.01) is far smaller; He before sigmoid or tanh drives the units into "
        "saturation. Over a deep stack these factors compound geometrically."
    )
    example = """
for _ in range(30):
    layer = nn.Linear(128, 128)
    nn.init.xavier_normal_(layer.weight)      # variance 1/fan_in: half of what ReLU needs
    layers += [layer, nn.ReLU()]
"""
    fix = "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu'); nn.init.zeros_(layer.bias)"
    references = (
        "Glorot & Bengio 2010, Understanding the difficulty of training deep feedforward neural networks",
        "He et al. 2015, Delving Deep into Rectifiers",
        "Poole et al. 2016, Exponential expressivity in deep neural networks through transient chaos",
        "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (N(0, 0.01) init needed bootstrapping)",
    )
    probe_criterion = (
        "Confirmed when the measured profile changes between the first and the last layer of the mismatched "
        "stack by at least `min_decades` (the rule's own threshold), in the estimated direction; refuted otherwise."
        " The measured update lag and forward signal then set the severity (gradlint.updates); a refuted finding says what was measured."
    )
    judged = True
    options = {"min_decades": 1.5, "layer_tolerance": 0.1, "min_layers": 3}
    option_docs = {
        "min_decades": "how many decades the gradient must drift over a run of mismatched layers, estimated and then measured",
        "layer_tolerance": "a layer whose init changes the gradient by at most this many decades counts as matched and is skipped",
        "min_layers": "the fewest mismatched layers drifting the same way that make a run",
    }
    plot_activations = ("relu", "tanh")  # drawn by `gradlint explain GL102 --plot`
    VALID = ("fixtures/cases/healthy.py:ReLUHe", "fixtures/cases/healthy.py:TanhLeCun",
             "fixtures/cases/lookalikes.py:AlexNetTV", "fixtures/cases/lookalikes.py:SEResidualNet",
             "fixtures/cases/mlp.py:MLP(depth=4)", "fixtures/cases/mlp.py:MLP(depth=6)",
             "fixtures/cases/mlp.py:MLP(depth=4, act='relu', init='xavier')", "fixtures/zoo/resnet.py:ResNet",
             "fixtures/cases/healthy.py:SwishMLP")
    INVALID = ("fixtures/cases/failures.py:DeepReLUXavier", "fixtures/cases/failures.py:VGGNoBNSmallInit",
               "fixtures/cases/mlp.py:MLP(depth=20, act='relu', init='default')")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        import networkx as nx

        est = ctx.estimate
        tolerance = float(self.opts["layer_tolerance"])
        links = [link for layer in ctx.graph.weighted_layers if (link := _link(ctx, layer)) is not None]
        runs: list[list[_Link]] = []
        gates = Updates(ctx.graph, est).gates
        for link in links:
            if link.act in gates:  # a gate's logit (squeeze-excite, GLU): its own branch, not part of a stack
                runs.append([])
                continue
            per_layer = 0.5 * math.log10(link.backward)
            if abs(per_layer) <= tolerance:
                continue
            prev = runs[-1][-1] if runs and runs[-1] else None
            if (prev is not None and (prev.backward < 1) == (link.backward < 1)
                    and ctx.graph.next_layer(prev.layer) is link.layer
                    and nx.has_path(ctx.graph.nx, prev.act, link.layer.output)):
                runs[-1].append(link)
            else:
                runs.append([link])
        for run in runs:
            if not run:
                continue
            first, last = run[0], run[-1]
            start, end = est.log10_rms(first.layer.output), est.log10_rms(last.act)
            if start is None or end is None or len(run) < int(self.opts["min_layers"]):
                continue
            decades = start - end
            vanishing = first.backward < 1
            if abs(decades) < float(self.opts["min_decades"]) or (decades < 0) != vanishing:
                continue  # a single mismatch, or one that normalization or a skip absorbs, does not matter
            if all(link.critical_gain is not None and abs(math.log(link.current_gain / link.critical_gain)) < 0.1
                   for link in run):
                continue  # already the activation's critical init: the drift is depth's doing (GL104), not the init's
            yield self._finding(ctx, run, decades, start, vanishing)

    def _finding(self, ctx: RuleContext, run: list[_Link], decades: float, start: float, vanishing: bool) -> Finding:
        first, last = run[0], run[-1]
        looks = Counter(link.looks_like for link in run).most_common(1)[0][0]
        acts = "/".join(sorted({_act_name(link) for link in run}))
        kinds = "/".join(sorted({link.layer.kind for link in run}))
        gain = math.exp(sum(math.log(link.backward) for link in run) / len(run))
        forward = math.exp(sum(math.log(link.forward) for link in run if link.forward > 0) / len(run))
        matched = math.exp(sum(math.log(link.matched_gain) for link in run) / len(run))
        fix, advice = _fix(first, matched)
        message = (
            f"{len(run)} {kinds} layers from {first.layer.module} to {last.layer.module} are initialised like {looks} "
            f"in front of {acts}: each layer passes back x{gain:.2f} of the mean-square gradient (forward gain "
            f"x{forward:.2f}), which compounds to 10^{decades:+.1f} across the stack. "
        )
        if vanishing:
            message += f"{first.layer.module} receives 10^{start:.1f} of the output gradient. "
        else:
            message += f"{first.layer.module} receives 10^{start:+.1f} of the output gradient: expect unstable first steps. "
        message += advice
        layers_est = ctx.estimate.log10_rms(last.layer.output)
        return self.finding(
            ctx, first.layer.module, message, fix=fix, risk=Risk.VANISHING if vanishing else Risk.EXPLODING,
            evidence={"first_layer": first.layer.module, "last_layer": last.layer.module, "layers": len(run),
                      "looks_like": looks, "matched_gain": round(matched, 3), "per_layer_gain": round(gain, 4), "forward_gain": round(forward, 4),
                      "estimated_decades": round(decades, 3),
                      "estimated_layer_decades": round(start - layers_est, 3) if layers_est is not None else None},
        )

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        first, last = finding.evidence["first_layer"], finding.evidence["last_layer"]
        expected = finding.evidence.get("estimated_layer_decades")
        if expected is None or first == last:
            return None
        measured = measured_drift(probe, first, last)
        if measured is Unmeasurable.ZERO:
            return self.judge(finding, probe, expected < 0)
        if not isinstance(measured, float):
            return None
        finding.evidence["measured_layer_decades"] = round(measured, 3)
        if (measured < 0) != (expected < 0) or abs(measured) < float(self.opts["min_decades"]):
            finding.message += (f" Measured: 10^{measured:+.1f} between {first} and {last}, not the "
                                f"{self.opts['min_decades']:.1f} decades the rule requires.")
            return False
        return self.judge(finding, probe, True)


def _link(ctx: RuleContext, layer: WeightedLayer) -> _Link | None:
    """The layer with the activation its output feeds, or None when no activation follows directly."""
    graph, est = ctx.graph, ctx.estimate
    out = graph[layer.output]
    if graph.family(out) not in _LAYERS:
        return None
    composite = [n for n, info in est.pointwise.items() if info.root == layer.output]
    if not composite:
        return None
    act = max(composite, key=graph.position.__getitem__)
    info = est.pointwise[act]
    weight = next((r for r in graph.producers(layer.output) if r.kind is NodeKind.PARAM and r.param == layer.weight), None)
    data = next((r for r in graph.producers(layer.output) if r.kind not in (NodeKind.PARAM, NodeKind.BUFFER, NodeKind.CONSTANT)), None)
    if weight is None or data is None or weight.shape is None or len(weight.shape) < 2:
        return None
    linear_gain = est.gains.get(layer.output, {}).get(data.name)
    q_in = est.stats.get(layer.output)
    w2 = est.stats[weight.name].q
    if not linear_gain or q_in is None or q_in.q <= 0 or w2 <= 0 or info.grad_second <= 0:
        return None
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    fan_out = weight.shape[0] * math.prod(weight.shape[2:])
    members = [graph[n] for n, i in est.pointwise.items() if i.root == layer.output]
    ops = tuple(sorted({node.op for node in members}))
    named = tuple(sorted({node.op for node in members if graph.family(node) not in _ARITHMETIC}))
    shape = info.shape
    odd = shape.saturating and abs(shape.at_zero) < 1e-6 and shape.slope_at_zero > 0
    return _Link(layer, act, ops, named, info.saturating, linear_gain * info.grad_second,
                 fan_in * w2 * est.stats[act].q / q_in.q, _looks_like(w2, fan_in, fan_out),
                 math.sqrt(w2 * fan_in / (linear_gain * info.grad_second)), math.sqrt(w2 * fan_in),
                 1.0 / shape.slope_at_zero if odd else None)


def _looks_like(w2: float, fan_in: int, fan_out: int) -> str:
    """The common init whose E[w²] is nearest to the measured one (within 25%), else the std itself."""
    candidates = {
        "kaiming/He (2/fan_in)": 2.0 / fan_in,
        "LeCun (1/fan_in)": 1.0 / fan_in,
        "xavier/Glorot (2/(fan_in+fan_out))": 2.0 / (fan_in + fan_out),
        "PyTorch's default (1/(3·fan_in))": 1.0 / (3.0 * fan_in),
        "N(0, 0.01)": 1e-4,
    }
    close = [name for name, value in candidates.items() if abs(math.log10(w2 / value)) < 0.1]
    return " = ".join(close) if close else f"std {math.sqrt(w2):.3g} (= {math.sqrt(w2 * fan_in):.2f}/sqrt(fan_in))"


def _act_name(link: _Link) -> str:
    return "·".join(link.named) or "·".join(link.ops)


def _fix(link: _Link, gain: float) -> tuple[str, str]:
    """The init call that brings the per-layer gradient gain back to 1 (`gain` is the std·sqrt(fan_in) that
    does so to first order), and how to say it."""
    kaiming = "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu'); nn.init.zeros_(layer.bias)"
    if link.saturating and link.critical_gain is None:  # φ(0) != 0 (sigmoid): no fixed point keeps the slope
        return kaiming, (f"No init makes a {_act_name(link)} stack keep its gradient without saturating: replace it "
                         f"with nn.ReLU() and use `{kaiming}`, or put nn.LayerNorm before each activation.")
    if link.critical_gain is not None:  # an odd saturating φ: std 1/φ'(0)/sqrt(fan_in) is its order-to-chaos edge
        code = (f"nn.init.normal_(layer.weight, 0.0, {link.critical_gain:.3g} / math.sqrt(layer.weight[0].numel())); "
                "nn.init.zeros_(layer.bias)")
        return code, (f"Use `{code}` for these layers (std {link.critical_gain:.3g}/sqrt(fan_in), the inverse of "
                      f"{_act_name(link)}'s slope at 0: the order-to-chaos boundary without bias; LeCun for tanh).")
    if abs(math.log10(gain * gain / 2.0)) < 0.05:
        code = kaiming
    else:
        code = (f"nn.init.normal_(layer.weight, 0.0, {gain:.2f} / math.sqrt(layer.weight[0].numel())); "
                "nn.init.zeros_(layer.bias)")
    return code, f"Use `{code}` for these layers (std {gain:.2f}/sqrt(fan_in) makes the per-layer gain about 1)."
