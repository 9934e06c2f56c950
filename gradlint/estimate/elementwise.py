"""Transfer rules for pointwise ops whose inputs are independent tensors (a residual add, a gate, a
positional parameter, x / std(x)): what is left when `pointwise.py` cannot fold them into one φ(root)."""

from __future__ import annotations

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Gains,
    Result,
    declare,
    family_of,
    transfer,
)
from gradlint.estimate.table import add_gain as _add_gain
from gradlint.estimate.table import broadcast as _bcast
from gradlint.graph import ModelGraph, NodeRecord, Ref


def is_statistic_of(graph: ModelGraph, scale: str, x: str, hops: int = 6) -> bool:
    """Whether `scale` is computed from a reduction of `x` within a few ops: x * rsqrt(mean(x^2) + eps)."""
    frontier, seen = [(scale, False)], set()
    for _ in range(hops):
        following = []
        for name, through_reduction in frontier:
            node = graph[name]
            for src in node.inputs:
                through = through_reduction or family_of(node.op) is Family.REDUCTION
                if src == x and through:
                    return True
                if (src, through) not in seen:
                    seen.add((src, through))
                    following.append((src, through))
        frontier = following
    return False


def is_float(ctx: Context, ref: Ref) -> bool:
    dtype = ctx.graph[ref.name].dtype
    return dtype is None or dtype.is_floating_point or dtype.is_complex


def mix(node: NodeRecord, ctx: Context) -> Result:
    """Any other pointwise combination (where, maximum, pow of two tensors): the inputs' average."""
    floats = [v for v in (*node.args, *node.kwargs.values()) if isinstance(v, Ref) and is_float(ctx, v)]
    if not floats:
        return ZERO, {}
    stats = [ctx.stat(t) for t in floats]
    n = len(stats)
    out = Stat(sum(s.mean for s in stats) / n, sum(s.q for s in stats) / n, sum(s.v for s in stats) / n)
    gains: Gains = {}
    for t in floats:
        _add_gain(gains, t, _bcast(ctx, node, t) / n)
    return out, gains


@transfer("add", "sub", family=Family.SUM)
def add(node: NodeRecord, ctx: Context) -> Result:
    """Second moments add (a skip and its branch are uncorrelated at init); the gradient goes to both."""
    if len(node.args) < 2:
        return mix(node, ctx)
    a, b = node.arg(0), node.arg(1)
    alpha = float(node.kwargs.get("alpha", 1.0))
    sa, sb = ctx.stat(a), ctx.stat(b).scaled(alpha)
    sign = -1.0 if node.op == "sub" else 1.0
    mean = sa.mean + sign * sb.mean
    q = sa.q + sb.q + 2 * sign * sa.mean * sb.mean
    gains: Gains = {}
    _add_gain(gains, a, _bcast(ctx, node, a))
    _add_gain(gains, b, alpha * alpha * _bcast(ctx, node, b))
    # cumulants of independent summands add: a normalised branch plus a rectified skip is skewed
    k3, k4 = _sum_cumulants(ctx, node, (a, sa, 1.0), (b, sb, sign))
    return Stat(mean, max(q, mean * mean), sa.v + sb.v, k3, k4), gains


def _sum_cumulants(ctx: Context, node: NodeRecord, *terms: tuple[object, Stat, float]) -> tuple[float, float]:
    """Third and fourth cumulants of a sum of independent full-size tensors (a number shifts, leaving them);
    a broadcast operand (a bias, a per-channel scale) mixes units, so the sum is taken as Gaussian."""
    k3 = k4 = 0.0
    for x, s, sign in terms:
        if not isinstance(x, Ref):
            continue
        if ctx.numel(x) != node.numel:
            return 0.0, 0.0
        k3, k4 = k3 + sign * s.k3, k4 + s.k4
    return k3, k4


@transfer("mul", family=Family.PRODUCT)
def mul(node: NodeRecord, ctx: Context) -> Result:
    if len(node.args) < 2:
        return mix(node, ctx)
    a, b = node.arg(0), node.arg(1)
    sa, sb = ctx.stat(a), ctx.stat(b)
    for x, scale, sx in ((a, b, sa), (b, a, sb)):
        if isinstance(x, Ref) and isinstance(scale, Ref) and is_statistic_of(ctx.graph, scale.name, x.name):
            ctx.note(node, "normalizes", {x.name: ctx.stat(scale).q * sx.q})  # hand-written RMSNorm/LayerNorm
    gains: Gains = {}
    _add_gain(gains, a, sb.q * _bcast(ctx, node, a))
    _add_gain(gains, b, sa.q * _bcast(ctx, node, b))
    return Stat(sa.mean * sb.mean, sa.q * sb.q, sa.v * sb.q + sb.v * (sa.q - sa.v)), gains


@transfer("div", "true_divide", family=Family.PRODUCT)
def div(node: NodeRecord, ctx: Context) -> Result:
    if len(node.args) < 2:
        return mix(node, ctx)
    a, b = node.arg(0), node.arg(1)
    sa, sb = ctx.stat(a), ctx.stat(b)
    inv = 1.0 / max(sb.q, 1e-30)
    if isinstance(a, Ref) and isinstance(b, Ref) and is_statistic_of(ctx.graph, b.name, a.name):
        ctx.note(node, "normalizes", {a.name: inv * sa.q})  # hand-written (x - mean) / std
    gains: Gains = {}
    _add_gain(gains, a, inv * _bcast(ctx, node, a))
    _add_gain(gains, b, sa.q * inv * inv * _bcast(ctx, node, b))
    return Stat(sa.mean * (sb.mean * inv if sb.q else 0.0), sa.q * inv, sa.v * inv), gains


# Elementwise ops with no rule of their own: the pointwise mechanism judges each as φ(root), or as `mix`
# when its inputs are independent tensors.
declare("rsub", family=Family.SUM)
declare("where", "maximum", "minimum", family=Family.SELECT)
# Activations ATen does not tag as pointwise (composite implicit ones), and `pow`.
declare("hardswish", "log_sigmoid", "rrelu", "rrelu_with_noise", "softsign", "tanhshrink", "square", "relu6", "silu",
        "mish", "selu", "celu", "gelu", "hardsigmoid", "hardtanh", "leaky_relu", "elu", "softplus", "positive",
        "special_expit", "nan_to_num", "pow", family=Family.POINTWISE)
