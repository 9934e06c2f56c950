"""Every pointwise op, through one mechanism: the maximal pointwise subgraph hanging off one
non-pointwise tensor (its root) is replayed on Gauss–Hermite nodes as a scalar function φ of the root,
so `x * torch.sigmoid(x)`, a hand-written GELU or `relu(x + 1)` are judged as the functions they are."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gradlint.estimate.quadrature import Moments, expectations, expectations_2level
from gradlint.estimate.stat import Stat
from gradlint.estimate.table import Family, family_of
from gradlint.graph import ModelGraph, NodeKind, NodeRecord, Ref

MAX_DEPTH = 24
ELEMENTWISE = frozenset({Family.POINTWISE, Family.SUM, Family.PRODUCT, Family.SELECT})


def is_pointwise(node: NodeRecord) -> bool:
    """An elementwise op: tagged pointwise by ATen, or an elementwise family in the table."""
    tags = getattr(node.target, "tags", ())
    return node.kind is NodeKind.OP and (torch.Tag.pointwise in tags or family_of(node.op) in ELEMENTWISE)


class PointwiseResolver:
    """Finds each pointwise node's root and builds the composite φ(root) it computes."""

    def __init__(self, graph: ModelGraph, uniform: Callable[[str], float | None] = lambda name: None) -> None:
        self.graph = graph
        self.uniform = uniform  # the value of a node that holds one number everywhere (a computed constant)
        self._roots: dict[str, str | None] = {}

    def root(self, name: str, depth: int = 0) -> str | None:
        """The single non-pointwise tensor this node is a pointwise function of, if there is one."""
        if name in self._roots:
            return self._roots[name]
        node = self.graph[name]
        result: str | None
        if not is_pointwise(node) or depth > MAX_DEPTH:
            result = name
        else:
            roots: set[str | None] = set()
            for ref in node.inputs:
                src = self.graph[ref]
                if self.uniform(ref) is not None:
                    continue  # a constant such as `zeros(...) - 1e38`: part of the function, not an input
                if src.shape is None:
                    roots.add(None)
                elif src.shape == () and src.kind is not NodeKind.OP:
                    roots.add(None)  # a lifted 0-d constant: its value is unknown on meta
                else:  # a pointwise node that is not a function of one root is itself a root
                    roots.add(self.root(ref, depth + 1) or ref)
            result = roots.pop() if len(roots) == 1 else None
        self._roots[name] = result
        return result

    def composite(self, name: str, root: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """φ such that node `name` = φ(root), elementwise, replaying the graph's own ops."""
        graph = self.graph

        def evaluate(points: torch.Tensor) -> torch.Tensor:
            memo: dict[str, torch.Tensor] = {root: points}

            def value(ref: str) -> torch.Tensor:
                if ref not in memo and ref != root and self.uniform(ref) is not None:
                    memo[ref] = torch.tensor(self.uniform(ref), dtype=points.dtype)
                if ref not in memo:
                    node = graph[ref]
                    args = _substitute(node.args, value)
                    kwargs = {k: _substitute(v, value) for k, v in node.kwargs.items() if k not in ("device", "dtype", "layout", "pin_memory")}
                    target = node.target
                    if node.inplace:  # evaluate the out-of-place form on fresh values
                        target = getattr(torch.ops.aten, node.op, None) or target
                        target = getattr(target, getattr(node.target, "_overloadname", "default"), target)
                    memo[ref] = target(*args, **kwargs)
                return memo[ref]

            out = value(name)
            return out.expand_as(points) if out.shape != points.shape else out

        return evaluate


def _substitute(value: Any, resolve: Callable[[str], torch.Tensor]) -> Any:
    if isinstance(value, Ref):
        return resolve(value.name)
    if isinstance(value, list):
        return [_substitute(v, resolve) for v in value]
    if isinstance(value, tuple):
        return tuple(_substitute(v, resolve) for v in value)
    return value


def _key(x: float) -> float:
    return float(f"{x:.4g}")


_CACHE_SIZE = 16384
_MOMENTS: dict[tuple[Any, ...], Moments] = {}
_SHAPES: dict[tuple[Any, ...], Shape] = {}


def _cached(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """A bounded memo keyed by the composite's structural signature and its input moments only: the
    function itself (a closure over one model's graph) is never kept, so a many-target run does not hold
    every graph it has seen, and the same activation in the next model is a hit."""
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = compute()
    return cache[key]


def _moments_cached(fn_key: Any, fn: Callable[[torch.Tensor], torch.Tensor], mean: float, var: float,
                    k3: float = 0.0, k4: float = 0.0) -> Moments:
    result: Moments = _cached(_MOMENTS, (fn_key, mean, var, k3, k4), lambda: expectations(fn, mean, var, k3=k3, k4=k4))
    return result


def _shape_cumulants(root: Stat) -> tuple[float, float]:
    """The root's third and fourth cumulants as the quadrature may use them: only where they describe one
    distribution of every unit (no spread of per-unit means) and are finite."""
    if root.between > 1e-6 * max(root.q, 1e-30) or not (math.isfinite(root.k3) and math.isfinite(root.k4)):
        return 0.0, 0.0
    return _key(root.k3), _key(root.k4)


def pointwise_stat(fn: Callable[[torch.Tensor], torch.Tensor], fn_key: Any, root: Stat) -> tuple[Stat, Moments]:
    """Output statistics of φ(root) and the moments of φ' (the backward gain is `grad_second`)."""
    k3, k4 = _shape_cumulants(root)
    moments = _moments_cached(fn_key, fn, _key(root.mean), _key(root.var), k3, k4)
    between = root.between
    if between > 1e-6 * max(root.q, 1e-30):
        per_unit_mean_sq = expectations_2level(fn, root.mean, between, root.v)
        v = max(moments.second - per_unit_mean_sq, 0.0)
        out_k3, out_k4 = 0.0, 0.0
    else:
        v = max(moments.second - moments.mean * moments.mean, 0.0)
        out_k3, out_k4 = moments.cumulants()
    second = moments.second if math.isfinite(moments.second) else 1e30
    if not (math.isfinite(out_k3) and math.isfinite(out_k4)) or second >= 1e30:
        out_k3, out_k4 = 0.0, 0.0
    return Stat(moments.mean, second, v, out_k3, out_k4), moments


@dataclass(frozen=True)
class Shape:
    """How φ's derivative is laid out over its input distribution, judged from φ itself."""

    saturating: bool  # |φ'| is below 1% of its peak in both tails (sigmoid, tanh, hardtanh), unlike ReLU or swish
    rectifies: bool  # φ' is exactly 0 left of 0 and positive right of it (relu, relu6, clamp(min=0))
    flat_fraction: float  # share of h ~ N(mean, var) where |φ'| < 1% of its peak (a rectifier's dead half excluded)
    at_zero: float = 0.0  # φ(0)
    slope_at_zero: float = 0.0  # φ'(0): with φ(0) = 0, a weight std of 1/|φ'(0)|/sqrt(fan_in) is critical


GRID = 2001  # points over mean ± 8 std, and again over ± 20 where activations bend
FLAT = 0.01  # |φ'| below this fraction of its maximum counts as saturated (as the probe measures it)
_RECTIFIER_POINTS = (-2.0, -0.5, 0.5, 0.0)


def _shape_cached(fn_key: Any, fn: Callable[[torch.Tensor], torch.Tensor], mean: float, var: float) -> Shape:
    result: Shape = _cached(_SHAPES, (fn_key, mean, var), lambda: _shape(fn, mean, var))
    return result


def _shape(fn: Callable[[torch.Tensor], torch.Tensor], mean: float, var: float) -> Shape:
    std = math.sqrt(max(var, 0.0))
    reach = 6.0 + 6.0 * std
    spread = torch.linspace(mean - 8.0 * std, mean + 8.0 * std, GRID, dtype=torch.float64)
    fixed = torch.linspace(-20.0, 20.0, GRID, dtype=torch.float64)
    extra = torch.tensor([mean - reach, mean + reach, *_RECTIFIER_POINTS], dtype=torch.float64)
    points = torch.cat([spread, fixed, extra]).requires_grad_(True)
    with torch.enable_grad():  # an op not evaluable on float64 points raises: the estimator records it
        values = fn(points.clone())
        (grad,) = torch.autograd.grad(values.sum(), points, allow_unused=True)
    if grad is None:
        return Shape(False, False, 0.0)
    # Only a bounded function saturates: where φ or φ' is NaN/Inf (sqrt, log below zero; sqrt's slope at
    # 0) there is no flat tail, so those points neither count as flat nor set the peak.
    raw = grad.detach().abs()
    finite = torch.isfinite(raw) & torch.isfinite(values.detach())
    slope = torch.where(finite, raw, torch.zeros_like(raw))
    peak = float(slope.max())
    if peak <= 0:
        return Shape(False, False, 0.0)
    # Flat at both ends of the input distribution and of [-20, 20] (so exp-like ops, steep at +20, are not)
    ends = [2 * GRID, 2 * GRID + 1, GRID, 2 * GRID - 1]
    tails = slope[ends]
    rect = grad.detach()[2 * GRID + 2:]
    saturating = bool((tails <= FLAT * peak).all()) and bool(finite[ends].all())
    rectifies = bool((rect[:2] == 0).all()) and bool(rect[2] > 0)
    zero = (float(values.detach()[-1]), float(rect[3]))
    flat = (slope[:GRID] < FLAT * peak) & finite[:GRID]
    if bool((slope[GRID:2 * GRID][fixed < 0] == 0).all()):  # a rectifier's flat left half is a dead region
        flat &= spread > 0
    if std <= 0:
        return Shape(saturating, rectifies, float(flat[GRID // 2]), *zero)
    density = torch.exp(-0.5 * ((spread - mean) / std) ** 2)
    return Shape(saturating, rectifies, float((density * flat.double()).sum() / density.sum()), *zero)


def derivative_shape(fn: Callable[[torch.Tensor], torch.Tensor], fn_key: Any, root: Stat) -> Shape:
    return _shape_cached(fn_key, fn, _key(root.mean), _key(root.var))
