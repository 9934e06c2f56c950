"""Reductions: a statistic over some dimensions (mean, sum, var, norm, max over a dim, logsumexp,
cumsum). Whether the reduced dimensions are features or positions decides which variance averages out."""

from __future__ import annotations

import math
from typing import Any

from gradlint.estimate.softmax import softmax_moments
from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import Context, Family, Result, ref_name, transfer
from gradlint.graph import NodeRecord


def _reduced(node: NodeRecord, ctx: Context) -> tuple[Any, int, bool]:
    """The input, how many elements each output averages, and whether feature dims are reduced."""
    x = node.arg(0)
    shape = ctx.shape(x) or ()
    n_in = ctx.numel(x)
    n = max(n_in // max(node.numel, 1), 1)
    dims = node.arg(1, "dim", None)
    if dims is None or dims == [] or len(shape) == 0:
        return x, n, True
    dims_t = {int(d) % len(shape) for d in (dims if isinstance(dims, (list, tuple)) else (dims,))}
    feature = {1} if len(shape) == 2 or len(shape) >= 4 else {len(shape) - 1}
    return x, n, bool(dims_t & feature)


@transfer("mean", family=Family.REDUCTION)
def mean(node: NodeRecord, ctx: Context) -> Result:
    x, n, feature = _reduced(node, ctx)
    s = ctx.stat(x)
    if feature:
        out = Stat(s.mean, s.mean * s.mean + s.var / n, s.v / n)
    else:
        out = Stat(s.mean, (s.q - s.v) + s.v / n, s.v / n)
    return out, {ref_name(x) or "": 1.0 / (n * n)}


@transfer("sum", family=Family.REDUCTION)
def total(node: NodeRecord, ctx: Context) -> Result:
    x, n, feature = _reduced(node, ctx)
    s = ctx.stat(x)
    if feature:
        out = Stat(s.mean * n, n * n * s.mean * s.mean + n * s.var, n * s.v)
    else:
        out = Stat(s.mean * n, n * n * (s.q - s.v) + n * s.v, n * s.v)
    return out, {ref_name(x) or "": 1.0}


@transfer("amax", "amin", "max", "min", family=Family.REDUCTION)
def extreme(node: NodeRecord, ctx: Context) -> Result:
    """max over n elements: one of them receives the gradient."""
    x, n, _ = _reduced(node, ctx)
    s = ctx.stat(x)
    if node.shape is None:
        ctx.tuple_result(node, [s, ZERO])
    return s, {ref_name(x) or "": 1.0 / n}


@transfer("var", "std", "var_mean", "std_mean", family=Family.REDUCTION)
def spread(node: NodeRecord, ctx: Context) -> Result:
    """The (per-group) variance or standard deviation: a statistic, nearly constant across groups."""
    x, n, _ = _reduced(node, ctx)
    var = ctx.stat(x).var
    if node.op.startswith("std"):
        out, gain = Stat(math.sqrt(var), var, 0.0), 1.0 / (n * n)  # d std/dx_i = (x_i - mean) / (n std)
    else:
        out, gain = Stat(var, var * var, 0.0), 4.0 * var / (n * n)  # d var/dx_i = 2 (x_i - mean) / n
    if node.shape is None:
        ctx.tuple_result(node, [out, Stat(ctx.stat(x).mean, ctx.stat(x).mean ** 2, 0.0)])
    return out, {ref_name(x) or "": gain}


@transfer("norm", "linalg_vector_norm", "frobenius_norm", family=Family.REDUCTION)
def l2_norm(node: NodeRecord, ctx: Context) -> Result:
    x, n, _ = _reduced(node, ctx)
    q = n * ctx.stat(x).q
    return Stat(math.sqrt(q), q, 0.0), {ref_name(x) or "": 1.0 / n}  # d|x|/dx_i = x_i / |x|


@transfer("logsumexp", family=Family.REDUCTION)
def logsumexp(node: NodeRecord, ctx: Context) -> Result:
    x, n, _ = _reduced(node, ctx)
    s = ctx.stat(x)
    p2, _ = softmax_moments(s.var, n)
    mean = s.mean + math.log(max(n, 1)) + s.var / 2
    return Stat(mean, mean * mean, 0.0), {ref_name(x) or "": p2}  # d lse/dx_i = softmax_i


@transfer("cumsum", family=Family.REDUCTION)
def cumsum(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1,)
    n = shape[int(node.arg(1, "dim", -1))] if shape else 1
    s = ctx.stat(x)
    reach = (n + 1) / 2  # an element sums, and feeds, (n + 1) / 2 others on average
    return Stat(s.mean * reach, s.var * reach + (s.mean * reach) ** 2, s.v * reach), {ref_name(x) or "": reach}
