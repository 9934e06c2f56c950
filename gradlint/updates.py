"""How far each weighted layer's predicted update trails the others: the measure the vanishing and
exploding verdicts share, and the one meaning of their severity (README "Severity").

Plain SGD moves every layer with one learning rate, so what stops a layer from learning is its relative
update RMS(dL/dW)/RMS(W) falling decades behind the fastest layer's (a rate safe for the fastest leaves it
frozen), not a small gradient per element: a convolution sums its gradient over every position. Two
constructs shrink the gradient of the layers behind them without harming training, and are excused:
- a bounded gate (sigmoid of a squeeze-excite branch, a GLU half) that multiplies another path: the
  layers that reach the loss only through it feed a gate's logit, which trains while the gated path does;
- a deliberately tiny scale whose own update is huge (LayerScale 1e-6, a head initialised x0.001): the
  first steps grow it back, and the layers behind it receive their gradient then.
Both are recognised from the graph and the estimate: a saturating pointwise node feeding a product, and a
node whose own predicted update exceeds every weighted layer's by `HEAL` decades."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref, WeightedLayer
from gradlint.types import Family, Severity

if TYPE_CHECKING:  # rules read the thresholds below without torch (`gradlint rules`)
    from gradlint.estimate import Estimate

# Fitted by bench/trainability.py --fit (README "Severity"): the decades at which plain SGD (lr 0.05,
# momentum 0.9) stops training the model (warning), and at which Adam (1e-3) does too (error).
VANISHING = {"lag_warning": 2.55, "lag_error": 3.9, "signal_warning": 2.55, "signal_error": 8.8}
EXPLODING = {"lead_warning": 1.7, "lead_error": 1.7, "signal_warning": 1.2, "signal_error": 6.2}
HEAL = 2.5  # a node whose own update is this many decades above every layer's grows out of its tininess


@dataclass
class Updates:
    """Predicted (or, given a probe, measured) update of every weighted layer, with the layers whose lag
    is excused. Which layers are excused always comes from the graph and the estimate."""

    graph: ModelGraph
    estimate: Estimate
    probe: Any = None

    @cached_property
    def values(self) -> dict[str, float]:
        """Module -> log10 update ratio, for the layers the estimate (or the probe) could tell."""
        profile = self.probe.profile if self.probe is not None else self.estimate.profile
        return {p.module: p.log10_update_ratio for p in profile
                if p.log10_update_ratio is not None and math.isfinite(p.log10_update_ratio)}

    @cached_property
    def _predicted(self) -> dict[str, float]:
        return self.values if self.probe is None else Updates(self.graph, self.estimate).values

    @cached_property
    def healing(self) -> frozenset[str]:
        """Nodes whose own update outruns every weighted layer's by HEAL decades: tiny heads, LayerScale."""
        predicted = self._predicted
        if not predicted:
            return frozenset()
        found: set[str] = set()
        for layer in self.graph.weighted_layers:
            value = predicted.get(layer.module)
            rest = [v for m, v in predicted.items() if m != layer.module]
            if value is not None and rest and value >= max(rest) + HEAL:
                found.add(layer.output)
        from gradlint.estimate.update import scale_log10_update

        top = max(predicted.values())
        for node in self.graph.ops():
            if node.name in self.graph.live:  # scale_log10_update answers None for anything but a scaling
                value = scale_log10_update(self.estimate, node.name)
                if value is not None and value >= top + HEAL:
                    found.add(node.name)
        return frozenset(found)

    @cached_property
    def gates(self) -> frozenset[str]:
        """Bounded pointwise nodes (sigmoid, hardsigmoid) whose output multiplies another tensor."""
        bounded = [name for name, info in self.estimate.pointwise.items() if info.saturating]
        bounded += [n.name for n in self.graph.ops() if self.graph.family(n) is Family.SOFTMAX]  # they weight values
        return frozenset(name for name in bounded if _feeds_product(self.graph, name))

    @cached_property
    def open(self) -> frozenset[str]:
        """Nodes with a path to the model's output that passes neither a gate nor a healing node."""
        graph, blocked = self.graph, self.gates | self.healing
        seen = {graph.output}
        stack = [graph.output]
        while stack:
            for src in _ungated_inputs(graph, graph[stack.pop()]):
                if src not in seen and src not in blocked:
                    seen.add(src)
                    stack.append(src)
        return frozenset(seen)

    def excused(self, layer: WeightedLayer) -> bool:
        """The layer reaches the loss only through a gate or a healing node (or is a healing layer)."""
        return layer.output not in self.open or layer.output in self.healing

    @cached_property
    def judged(self) -> list[tuple[WeightedLayer, float]]:
        """(layer, predicted update) in execution order; excused layers and embeddings left out (an
        embedding's gradient lands on the rows of the tokens seen, so its RMS over all rows says nothing
        about how fast the rows that are used move)."""
        embeddings = {u.name for u in self.graph.ops() if u.op == "embedding"}
        return [(layer, self.values[layer.module]) for layer in self.graph.weighted_layers
                if layer.module in self.values and not self.excused(layer) and layer.output not in embeddings]

    @cached_property
    def signal_gain(self) -> tuple[float, WeightedLayer] | None:
        """log10 RMS of the last judged layer's output over the model input's RMS (token inputs count as
        RMS 1): a forward signal that vanished on its way to the loss, or exploded. None without one."""
        if not self.judged:
            return None
        last = self.judged[-1][0]
        stats = self.estimate.stats
        qs = [stats[r.name].q for r in self.graph if r.kind is NodeKind.INPUT and r.name in stats]
        q_in = max([q for q in qs if q > 0], default=1.0)
        q_out = stats[last.output].q if last.output in stats else 0.0
        if self.probe is not None:
            measure = getattr(self.probe, "layers", {}).get(last.module)
            q_out = measure.out_mean ** 2 + measure.out_std ** 2 if measure is not None else 0.0
        if q_out <= 0 or not math.isfinite(q_out):
            return None
        return 0.5 * math.log10(q_out / q_in), last

    @cached_property
    def fastest(self) -> tuple[WeightedLayer, float] | None:
        return max(self.judged, key=lambda item: item[1], default=None)

    def lag(self, module: str) -> float | None:
        """Decades by which `module`'s predicted update trails the fastest judged layer (None if excused)."""
        fastest = self.fastest
        value = self.values.get(module)
        layer = self.graph.layer_named(module)
        if fastest is None or value is None or layer is None or self.excused(layer):
            return None
        return fastest[1] - value

    def vanishing(self) -> tuple[float, WeightedLayer | None, WeightedLayer | None]:
        """The largest lag of a layer behind a later one: (decades, slow layer, fast layer)."""
        best: tuple[float, WeightedLayer | None, WeightedLayer | None] = (0.0, None, None)
        low: tuple[WeightedLayer, float] | None = None
        for layer, value in self.judged:
            if low is not None and value - low[1] > best[0]:
                best = (value - low[1], low[0], layer)
            if low is None or value < low[1]:
                low = (layer, value)
        return best

    def exploding(self) -> tuple[float, WeightedLayer | None, WeightedLayer | None]:
        """The largest lead of a layer over a later one: (decades, fast early layer, slow late layer)."""
        best: tuple[float, WeightedLayer | None, WeightedLayer | None] = (0.0, None, None)
        high: tuple[WeightedLayer, float] | None = None
        for layer, value in self.judged:
            if high is not None and high[1] - value > best[0]:
                best = (high[1] - value, high[0], layer)
            if high is None or value > high[1]:
                high = (layer, value)
        return best


def severity_for(value: float | None, warning: float, error: float) -> Severity:
    """The one meaning of severity for a number that grows with the damage: error = Adam fails too,
    warning = plain SGD fails, info = measurable but harmless."""
    if value is None or not math.isfinite(value) or value < warning:
        return Severity.INFO
    return Severity.ERROR if value >= error else Severity.WARNING


@dataclass
class Verdict:
    """A vanishing or exploding verdict: its severity and the numbers behind it, for the message."""

    severity: Severity
    lag: float  # decades (lag behind a later layer for vanishing, lead over one for exploding)
    slow: str | None
    fast: str | None
    signal: float | None  # log10 output/input RMS of the last judged layer

    def describe(self, risk: str) -> str:
        parts = []
        if self.slow and self.fast:
            word = "trails" if risk == "vanishing" else "outruns"
            first, second = (self.slow, self.fast) if risk == "vanishing" else (self.fast, self.slow)
            parts.append(f"{first}'s relative update {word} {second}'s by 10^{self.lag:.1f}")
        if self.signal is not None:
            parts.append(f"the forward signal reaching the loss is 10^{self.signal:+.1f} of the input")
        return "; ".join(parts)

    def evidence(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}update_lag": round(self.lag, 3), f"{prefix}slow_layer": self.slow,
                f"{prefix}fast_layer": self.fast,
                f"{prefix}signal_log10": None if self.signal is None else round(self.signal, 3)}


def vanishing_verdict(updates: Updates, opts: dict[str, Any] | None = None) -> Verdict:
    """Vanishing: a layer's update lags a later one's (plain SGD leaves it frozen), or the forward signal
    dies before the loss (every update is tiny). Thresholds fitted on bench/trainability.py."""
    o = {**VANISHING, **(opts or {})}
    lag, slow, fast = updates.vanishing()
    gain = updates.signal_gain
    signal = gain[0] if gain else None
    worst = max(severity_for(lag, o["lag_warning"], o["lag_error"]),
                severity_for(-signal if signal is not None else None, o["signal_warning"], o["signal_error"]),
                key=lambda s: s.rank)
    return Verdict(worst, lag, slow.module if slow else None, fast.module if fast else None, signal)


def exploding_verdict(updates: Updates, opts: dict[str, Any] | None = None) -> Verdict:
    """Exploding: an early layer's update outruns a later one's (a rate safe for it freezes the rest, one
    that trains the rest blows it up), or the forward signal grows by orders of magnitude."""
    o = {**EXPLODING, **(opts or {})}
    lead, fast, slow = updates.exploding()
    gain = updates.signal_gain
    signal = gain[0] if gain else None
    worst = max(severity_for(lead, o["lead_warning"], o["lead_error"]),
                severity_for(signal, o["signal_warning"], o["signal_error"]), key=lambda s: s.rank)
    return Verdict(worst, lead, slow.module if slow else None, fast.module if fast else None, signal)


# Families that multiply one tensor by another (a gate's product), and those that only move or repeat
# elements on the way (a gate broadcast with `gate[:, :, None, None]` is still a gate).
_PRODUCTS = frozenset({Family.PRODUCT, Family.MATMUL, Family.ATTENTION})


def _ungated_inputs(graph: ModelGraph, node: NodeRecord) -> list[str]:
    """The inputs of `node` whose gradient does not pass a gate inside it: fused attention's softmax gates its
    query and key (arguments 0 and 1) as a written-out softmax would; its values and mask pass ungated."""
    if graph.family(node) is not Family.ATTENTION:
        return list(node.inputs)
    gated = {a.name for a in node.args[:2] if isinstance(a, Ref)}
    return [src for src in node.inputs if src not in gated]


def _feeds_product(graph: ModelGraph, name: str) -> bool:
    """`name` multiplies another tensor, directly or after moving ops only."""
    stack, seen = [name], {name}
    while stack:
        for user in graph.users(stack.pop()):
            family = graph.family(user)
            if family in _PRODUCTS:
                return True
            if family is Family.STRUCTURAL and user.name not in seen:
                seen.add(user.name)
                stack.append(user.name)
    return False
