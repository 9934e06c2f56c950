"""Estimate stage: `ModelGraph` -> per-node forward statistics and backward gain, and the contract's
predicted gradient profile, without running the model on data (mean-field signal propagation:
Poole et al. 2016, Schoenholz et al. 2017, Hanin 2018, Yang et al. 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

# each family module registers its ops in the table on import
from gradlint.estimate import (  # noqa: F401
    attention,
    elementwise,
    factories,
    linalg,
    normalisation,
    order,
    pooling,
    products,
    recurrent,
    reduction,
    scatter,
    softmax,
    structural,
    weighted,
)
from gradlint.estimate.constant import Evaluator, element_stat, within_unit_variance
from gradlint.estimate.elementwise import is_float, mix
from gradlint.estimate.notes import TransferFailure
from gradlint.estimate.pointwise import (
    PointwiseResolver,
    Shape,
    derivative_shape,
    is_pointwise,
    pointwise_stat,
)
from gradlint.estimate.pooling import window_moments
from gradlint.estimate.quadrature import sum_moments
from gradlint.estimate.readout import Readout
from gradlint.estimate.readout import backward as readout_backward
from gradlint.estimate.readout import find as find_readout
from gradlint.estimate.stat import UNIT, ZERO, Stat
from gradlint.estimate.table import TABLE, Family, family_of
from gradlint.estimate.update import log10_update_ratio
from gradlint.estimate.weights import WeightTable, measured
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref
from gradlint.types import ProfileEntry, profile_dict, profile_ratio


@dataclass
class PointwiseInfo:
    """What a pointwise composite does to the signal: its root and its derivative statistics."""

    root: str
    grad_second: float  # E[φ'(h)²]: the mean-square backward gain
    max_grad: float  # sup |φ'|: the derivative bound
    grad_mean: float
    input: Stat
    shape: Shape  # where φ' is flat: saturating tails, a rectifier's dead half, the saturated share of inputs
    nonfinite: float = 0.0  # share of the input distribution where φ or φ' is NaN/Inf

    @property
    def saturating(self) -> bool:
        return self.shape.saturating


@dataclass
class Estimate:
    graph: ModelGraph
    stats: dict[str, Stat]
    r: dict[str, float]  # mean-square gradient at each node's output, relative to the model output's
    gains: dict[str, dict[str, float]]
    pointwise: dict[str, PointwiseInfo]
    notes: dict[str, dict[str, Any]]
    unknown_ops: list[str]
    profile: list[ProfileEntry] = field(default_factory=list)
    failures: list[TransferFailure] = field(default_factory=list)  # transfer rules that raised, and the fallback used
    ops: int = 0  # op nodes estimated (after capture's decompositions)

    @property
    def coverage(self) -> float:
        """Share of op nodes estimated by a real transfer rule, not passed through for want of one (or for a
        rule that raised): what "the estimate is approximate" amounts to."""
        approximate = len(self.unknown_ops) + len({f.node for f in self.failures})
        return max(0.0, 1.0 - approximate / self.ops) if self.ops else 1.0

    @cached_property
    def normalizers(self) -> frozenset[str]:
        """Nodes that divide a tensor by its own scale: norm ops and hand-written RMSNorm/LayerNorm."""
        return frozenset(name for name, note in self.notes.items() if "normalizes" in note)

    def fewest_batch_statistics(self) -> tuple[str, int] | None:
        """(node, values per channel) of the batch norm whose statistics come from the fewest values."""
        counts = [(int(note["batch_statistics"]), name) for name, note in self.notes.items() if "batch_statistics" in note]
        if not counts:
            return None
        values, name = min(counts)
        return name, values

    @cached_property
    def r_scale_free(self) -> dict[str, float]:
        """The backward pass with every normalization's 1/scale amplification removed: what is left is
        growth that comes from the layers themselves (what an exploding-gradient rule should judge)."""
        gains = {name: dict(g) for name, g in self.gains.items()}
        for name, note in self.notes.items():
            for src, gain in note.get("normalizes", {}).items():
                if name in gains and src in gains[name]:
                    gains[name][src] = gain
        return _backward(self.graph, gains)

    def log10_rms(self, node: str) -> float | None:
        r = self.r.get(node, 0.0)
        return 0.5 * math.log10(r) if r > 0 and math.isfinite(r) else None

    @property
    def log10_grad_ratio(self) -> float | None:
        return profile_ratio(self.profile)

    def to_dict(self) -> dict[str, Any]:
        return {**profile_dict(self.profile), "unknown_ops": sorted(set(self.unknown_ops)),
                "coverage": round(self.coverage, 4)}


class _Context:
    def __init__(self, graph: ModelGraph, weights: WeightTable) -> None:
        self.graph = graph
        self.weights = weights
        self.stats: dict[str, Stat] = {}
        self.tuples: dict[str, list[Stat]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.failures: list[TransferFailure] = []
        self.evaluator = Evaluator(graph, weights)
        self.elements: dict[str, Stat] = {}  # data-independent nodes: statistics over their own elements
        self.in_constant = False  # while a data-independent node's rule runs, its inputs are read per element

    def stat(self, value: Any) -> Stat:
        if isinstance(value, Ref):
            if self.in_constant and value.name in self.evaluator.free:
                return self._elements(value.name)
            return self.stats.get(value.name, UNIT)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Stat(float(value), float(value) ** 2, 0.0)
        return ZERO

    def shape(self, value: Any) -> tuple[int, ...] | None:
        return self.graph[value.name].shape if isinstance(value, Ref) else None

    def numel(self, value: Any) -> int:
        return self.graph[value.name].numel if isinstance(value, Ref) and self.graph[value.name].shape is not None else 0

    def weight(self, value: Any) -> tuple[float, float]:
        if isinstance(value, Ref):
            node = self.graph[value.name]
            if node.param is not None and node.kind in (NodeKind.PARAM, NodeKind.BUFFER):
                ws = self.weights.stats(node.param)
                return ws.mean, ws.second
            if node.value is not None and node.value.is_floating_point() and node.value.device.type != "meta":
                ws = measured(node.value)
                return ws.mean, ws.second
            s = self.stat(value)
            return s.mean, s.q
        return 0.0, 0.0

    def _elements(self, name: str) -> Stat:
        if name not in self.elements:  # a leaf, read lazily: its statistics over its own elements
            real = element_stat(self.evaluator.value(name))
            s = self.stats.get(name, UNIT)
            self.elements[name] = Stat(*real) if real is not None else Stat(s.mean, s.q, s.var)
        return self.elements[name]

    def value(self, ref: Any) -> Any:
        """The real value of a data-independent input (a mask, a constant), or None."""
        return self.evaluator.value(ref.name) if isinstance(ref, Ref) else ref

    def uniform(self, ref: Any) -> float | None:
        return self.evaluator.uniform(ref.name) if isinstance(ref, Ref) else None

    def tuple_result(self, node: NodeRecord, stats: list[Stat]) -> None:
        self.tuples[node.name] = stats

    def element(self, source: str, index: int) -> Stat | None:
        items = self.tuples.get(source)
        return items[index] if items is not None and 0 <= index < len(items) else None

    def note(self, node: NodeRecord, key: str, value: Any) -> None:
        self.notes.setdefault(node.name, {})[key] = value

    def fail(self, node: NodeRecord, stage: str, exc: BaseException, fallback: str) -> None:
        self.failures.append(TransferFailure.of(node.name, node.op, stage, exc, fallback))


def _leaf_stat(node: NodeRecord, ctx: _Context) -> Stat:
    if node.kind is not NodeKind.PARAM and node.dtype is not None and not node.dtype.is_floating_point:
        real = element_stat(ctx.evaluator.value(node.name))  # an integer constant is its value, not zero
        if real is not None:
            return Stat(real[0], real[1], 0.0)
    if node.dtype is not None and not (node.dtype.is_floating_point or node.dtype.is_complex):
        return ZERO
    if node.kind is NodeKind.PARAM and node.param:
        ws = ctx.weights.stats(node.param)
        return Stat(ws.mean, ws.second, 0.0)
    tensor = node.value if node.value is not None else ctx.weights.tensor(node.param) if node.param else None
    if node.kind is NodeKind.CONSTANT and tensor is not None and tensor.device.type != "meta" and tensor.is_floating_point():
        ws = measured(tensor)
        return Stat(ws.mean, ws.second, 0.0)
    if node.kind is NodeKind.BUFFER and tensor is not None and tensor.device.type != "meta" and tensor.is_floating_point():
        t = tensor.detach().double()
        return Stat(float(t.mean()), float((t * t).mean()), 0.0) if t.numel() else ZERO
    return UNIT


def input_stat(tensor: torch.Tensor) -> Stat:
    """Statistics of a real example input (N(0,1) draws give mean 0, q 1, v 1).

    The within-unit variance is the sample variance over the batch with Bessel's correction: the plain
    one of B draws is (B-1)/B of it, and the missing 1/B would be carried forward as a per-unit mean that
    no average over positions removes (a batch of 4 made a quarter of a ViT's residual stream "between"
    units and its pooled features 40x too large)."""
    if tensor.device.type == "meta" or not tensor.is_floating_point():
        return UNIT if tensor.is_floating_point() or tensor.device.type == "meta" else ZERO
    t = tensor.detach().double()
    if t.numel() == 0:
        return ZERO
    q = float((t * t).mean())
    v = float(t.var(dim=0, unbiased=True).mean()) if t.dim() > 0 and t.shape[0] > 1 else q
    return Stat(float(t.mean()), q, min(v, q))


def estimate(graph: ModelGraph, weights: WeightTable, inputs: Sequence[Any] = ()) -> Estimate:
    ctx = _Context(graph, weights)
    resolver = PointwiseResolver(graph, ctx.evaluator.uniform)
    gains: dict[str, dict[str, float]] = {}
    pointwise: dict[str, PointwiseInfo] = {}
    unknown: list[str] = []
    input_tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    input_index = 0
    signatures: dict[str, Any] = {}
    readouts: list[Readout] = []
    for node in graph:
        if node.kind is NodeKind.INPUT:
            ctx.stats[node.name] = input_stat(input_tensors[input_index]) if input_index < len(input_tensors) else UNIT
            input_index += 1
            continue
        if node.kind is not NodeKind.OP:
            ctx.stats[node.name] = _leaf_stat(node, ctx)
            continue
        free = node.name in ctx.evaluator.free
        ctx.in_constant = free
        try:
            stat, node_gains = _op_transfer(node, ctx, resolver, signatures, None if free else pointwise, unknown)
        finally:
            ctx.in_constant = False
        if free:  # computed from weights and constants alone: its real value decides
            stat = _constant(node, ctx, stat)
        else:
            readout = find_readout(graph, node, ctx.evaluator.value, ctx.evaluator.free)
            if readout is not None:
                _at_position(readout, ctx, resolver, signatures)
                readouts.append(readout)
                stat = readout.stats.get(readout.source, stat)  # what is read out is that position
            elif family_of(node.op) is Family.MAX_POOLING:  # before its users read it
                stat = _pool_after_activation(node, graph, ctx, resolver, gains, pointwise) or stat
        ctx.stats[node.name] = stat
        gains[node.name] = node_gains
        if node.name in pointwise:  # before its users read it
            ctx.stats[node.name] = _activation_after_skip(node, graph, ctx, resolver, gains, pointwise) or stat
    r = readout_backward(graph, gains, readouts)
    result = Estimate(graph, ctx.stats, r, gains, pointwise, ctx.notes, unknown, failures=ctx.failures,
                      ops=sum(1 for node in graph if node.kind is NodeKind.OP))
    result.profile = [
        ProfileEntry(layer.module, layer.kind, result.log10_rms(layer.output), zero=r.get(layer.output, 0.0) == 0.0,
                     nonfinite=not math.isfinite(r.get(layer.output, 0.0)))
        for layer in graph.weighted_layers
    ]
    for entry, layer in zip(result.profile, graph.weighted_layers):
        entry.log10_update_ratio = log10_update_ratio(result, layer)
    return result


def _op_transfer(node: NodeRecord, ctx: _Context, resolver: PointwiseResolver, signatures: dict[str, Any],
                 pointwise: dict[str, PointwiseInfo] | None, unknown: list[str]) -> tuple[Stat, dict[str, float]]:
    """One op node's output statistics and backward gains: a pointwise composite, a table entry, or the
    pass-through for an op without one. `pointwise` is None for data-independent nodes (not activations)."""
    if node.dtype is not None and not (node.dtype.is_floating_point or node.dtype.is_complex):
        return ZERO, {}  # masks, indices, comparisons: no gradient flows through them
    if is_pointwise(node):
        root = resolver.root(node.name)
        if root is not None and root != node.name:
            sig = _signature(ctx.graph, node.name, root, signatures, resolver.uniform)
            fn = resolver.composite(node.name, root)
            root_stat = ctx.stat(Ref(root))
            try:
                stat, moments = pointwise_stat(fn, sig, root_stat)
            except Exception as exc:  # an op that cannot run on float64 points: fall through to the generic rule
                if pointwise is not None:  # (a data-independent node's real value decides anyway)
                    ctx.fail(node, "pointwise composite", exc, "the generic rule for its op")
            else:
                if pointwise is not None:
                    try:
                        shape = derivative_shape(fn, sig, root_stat)
                    except Exception as exc:
                        ctx.fail(node, "derivative shape", exc, "a shape with no saturation or rectification")
                        shape = Shape(False, False, 0.0)
                    pointwise[node.name] = PointwiseInfo(root, moments.grad_second, moments.max_grad, moments.grad_mean,
                                                         root_stat, shape, moments.nonfinite)
                return stat, {root: moments.grad_second}
    entry = TABLE.get(node.op)
    rule = entry.rule if entry is not None and entry.rule is not None else (mix if is_pointwise(node) else None)
    if rule is None:
        unknown.append(node.op)
        stat, node_gains = _unknown(node, ctx)
    else:
        try:
            stat, node_gains = rule(node, ctx)
        except Exception as exc:  # one op's broken rule must not end the whole estimate: pass it through, say so
            ctx.fail(node, "transfer rule", exc, "a pass-through (statistics and gradient unchanged)")
            stat, node_gains = _unknown(node, ctx)
    node_gains.pop("", None)
    if not all(math.isfinite(x) for x in (stat.mean, stat.q, stat.v, *node_gains.values())):
        unknown.append(f"{node.op} (non-finite statistics)")  # never let one op poison the whole profile
        stat = stat if all(math.isfinite(x) for x in (stat.mean, stat.q, stat.v)) else UNIT
        node_gains = {k: (g if math.isfinite(g) else 1.0) for k, g in node_gains.items()}
    return stat, node_gains


def _constant(node: NodeRecord, ctx: _Context, modelled: Stat) -> Stat:
    """A data-independent node's statistics: over its real value's elements where it has one, else the
    moment model's (read per element). Downstream it is constant across the batch, like a weight, but may
    vary along positions (a position table), which is its within-unit variance."""
    value = ctx.evaluator.value(node.name)
    real = element_stat(value)
    elements = Stat(*real) if real is not None else Stat(modelled.mean, modelled.q, modelled.var)
    ctx.elements[node.name] = elements
    if real is not None:
        within = within_unit_variance(value)
    else:
        within = modelled.var if node.shape is not None and len(node.shape) >= 2 else 0.0
    return Stat(elements.mean, elements.q, min(within, elements.q))


def _at_position(readout: Readout, ctx: _Context, resolver: PointwiseResolver, signatures: dict[str, Any]) -> None:
    """Run the rules of a readout's chain again at the selected position's statistics (its inputs off the
    chain keep their ordinary ones); notes, tuples and failures of these runs are not the model's."""
    saved = ctx.stats, ctx.tuples, ctx.notes, ctx.failures
    ctx.stats, ctx.tuples, ctx.notes, ctx.failures = {**ctx.stats, **readout.leaves}, dict(ctx.tuples), {}, []
    try:
        for name in ctx.graph.order:
            if name not in readout.position:
                continue
            node = ctx.graph[name]
            if node.op == "cat":
                part = next(iter(readout.edges[name]))
                stat, node_gains = ctx.stats.get(part, UNIT), {part: 1.0}
            else:
                stat, node_gains = _op_transfer(node, ctx, resolver, signatures, None, [])
            ctx.stats[name] = readout.stats[name] = stat
            readout.gains[name] = node_gains
    finally:
        ctx.stats, ctx.tuples, ctx.notes, ctx.failures = saved


def _pool_after_activation(node: NodeRecord, graph: ModelGraph, ctx: _Context, resolver: PointwiseResolver,
                           gains: dict[str, dict[str, float]], pointwise: dict[str, PointwiseInfo]) -> Stat | None:
    """Max pooling picks each window's largest activation, so the gradient only reaches units that are on
    (ReLU: derivative 1, not 1/2 on average). For a monotone activation feeding only max pools,
    max(φ(h)) = φ(max h): judge φ and φ' at the window maximum instead of at a random unit. Returns the
    pool's output statistics (None: not after such an activation), set before any user of the pool reads them."""
    src = node.inputs[0] if node.inputs else None
    info = pointwise.get(src or "")
    if src is None or info is None or info.grad_mean < 0 or any(family_of(u.op) is not Family.MAX_POOLING for u in graph.users(src)):
        return None
    e1, e2 = window_moments(node, ctx)
    root = info.input
    sd = math.sqrt(root.v)
    at_max = Stat(root.mean + sd * e1, (root.q - root.v) + 2 * root.mean * sd * e1 + root.v * e2, root.v * max(e2 - e1 * e1, 0.0))
    try:
        stat, moments = pointwise_stat(resolver.composite(src, info.root), ("max", round(e1, 6), round(e2, 6), _signature(graph, src, info.root, {}, resolver.uniform)), at_max)
    except Exception as exc:
        ctx.fail(node, "max-pool window", exc, "the activation judged at a random unit, not the window maximum")
        return None
    gains[src] = {info.root: moments.grad_second}
    return stat


def _activation_after_skip(node: NodeRecord, graph: ModelGraph, ctx: _Context, resolver: PointwiseResolver,
                           gains: dict[str, dict[str, float]], pointwise: dict[str, PointwiseInfo]) -> Stat | None:
    """An activation φ2 of a sum (its only user) of an activation φ1 and an independent tensor o — a
    residual block's skip between two ReLUs. Its statistics are taken over φ1's root and o separately
    (`sum_moments`), not over a density fitted to the sum; and the gradient reaching φ1's root through
    the sum is φ1'·φ2'·g at the same unit, with φ2' largest where φ1 was on: the sum's gain to φ1 is set
    so that the gains along the skip multiply to the joint E[φ1'² φ2'²] rather than the independent
    product mean field assumes. Returns φ2's statistics (None: not this pattern)."""
    info = pointwise[node.name]
    total = graph[info.root]
    if family_of(total.op) is not Family.SUM or len(total.args) < 2 or float(total.kwargs.get("alpha", 1.0)) != 1.0:
        return None
    if [u.name for u in graph.users(total.name)] != [node.name] or total.name not in gains.get(node.name, {}):
        return None
    operands = [total.arg(0), total.arg(1)]
    if not all(isinstance(x, Ref) and ctx.numel(x) == total.numel for x in operands) or ctx.stat(Ref(total.name)).between > 1e-6 * max(ctx.stat(Ref(total.name)).q, 1e-30):
        return None
    for i, x in enumerate(operands):
        inner = pointwise.get(x.name)
        inner_gain = gains.get(x.name, {}).get(inner.root, 0.0) if inner is not None else 0.0
        if inner is None or inner_gain <= 0 or x.name not in gains.get(total.name, {}) or (total.op == "sub" and i == 1):
            continue  # (a - b seen from b is not φ1(h) ± o)
        other, root = ctx.stat(operands[1 - i]), inner.input
        try:
            result = sum_moments(resolver.composite(x.name, inner.root), (root.mean, root.var, root.k3, root.k4),
                                 (other.mean, other.var, other.k3, other.k4), resolver.composite(node.name, total.name),
                                 -1.0 if total.op == "sub" else 1.0)
        except Exception as exc:
            ctx.fail(node, "activation after a skip", exc, "the sum's fitted density and independent gains")
            return None
        m = result.outer
        if not (m.grad_second > 0 and all(math.isfinite(v) for v in (m.mean, m.second, result.joint))):
            return None
        factor = result.joint / (inner_gain * m.grad_second)
        gains[node.name][total.name] = m.grad_second
        gains[total.name][x.name] *= factor
        ctx.note(total, "skip_correlation", {x.name: factor})
        k3, k4 = m.cumulants()
        if not (math.isfinite(k3) and math.isfinite(k4)):
            k3 = k4 = 0.0
        return Stat(m.mean, m.second, max(m.second - m.mean * m.mean, 0.0), k3, k4)
    return None


def _backward(graph: ModelGraph, gains: dict[str, dict[str, float]]) -> dict[str, float]:
    r: dict[str, float] = {name: 0.0 for name in graph.order}
    r[graph.output] = 1.0
    for name in reversed(graph.order):
        value = r[name]
        if value == 0.0:
            continue
        for src, gain in gains.get(name, {}).items():
            if src in r:
                r[src] += gain * value
    return r


def _signature(graph: ModelGraph, name: str, root: str, memo: dict[str, Any],
               uniform: Callable[[str], float | None] = lambda name: None) -> Any:
    if name == root:
        return "x"
    if name not in memo and uniform(name) is not None:
        memo[name] = ("constant", uniform(name))  # a folded constant: its value, not how it was made
    if name not in memo:
        node = graph[name]

        def conv(v: Any) -> Any:
            if isinstance(v, Ref):
                return _signature(graph, v.name, root, memo, uniform)
            if isinstance(v, (list, tuple)):
                return tuple(conv(i) for i in v)
            return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)

        memo[name] = (str(node.target), conv(node.args), tuple(sorted((k, conv(v)) for k, v in node.kwargs.items())))
    return memo[name]


def _unknown(node: NodeRecord, ctx: _Context) -> tuple[Stat, dict[str, float]]:
    """An op with no rule: pass the first tensor's statistics through, gradient unchanged."""
    tensors = [v for v in node.args if isinstance(v, Ref)]
    stat = ctx.stat(tensors[0]) if tensors else UNIT
    if node.shape is None:
        ctx.tuples[node.name] = [stat] * 4
    return stat, {t.name: 1.0 for t in tensors if is_float(ctx, t)}
