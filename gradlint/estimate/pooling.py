"""Pooling and resampling: a max pool's output is the largest of k values (order statistics of the
normal), an average pool divides the within-unit variance by its window, upsampling copies."""

from __future__ import annotations

import math

import torch

from gradlint.estimate.quadrature import nodes
from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Result,
    as_tuple,
    ref_name,
    transfer,
)
from gradlint.graph import NodeRecord


def max_order_moments(k: int) -> tuple[float, float]:
    """E[M] and E[M²] for the maximum M of k independent standard normals."""
    z, w = nodes(200)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    density = k * cdf ** (k - 1)  # density of the max relative to the normal density
    return float((w * density * z).sum()), float((w * density * z * z).sum())


def _pool_window(node: NodeRecord, ctx: Context) -> int:
    x = node.arg(0)
    n_in, n_out = ctx.numel(x), node.numel
    return max(int(round(n_in / n_out)), 1) if n_out else 1


@transfer("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool1d_with_indices",
          "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
          family=Family.MAX_POOLING)
def max_pool(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    kernel = node.arg(1)
    shape = ctx.shape(x) or ()
    if node.op.startswith("adaptive") or kernel is None:
        k = _pool_window(node, ctx)
    else:
        dims = max(len(shape) - 2, 1)
        k = math.prod(as_tuple(kernel, dims, 1))
    s = ctx.stat(x)
    e1, e2 = max_order_moments(max(k, 1))
    sd = math.sqrt(s.v)
    mean = s.mean + sd * e1
    q = (s.q - s.v) + 2 * s.mean * sd * e1 + s.v * e2
    out = Stat(mean, max(q, mean * mean), s.v * max(e2 - e1 * e1, 0.0))
    n_in = ctx.numel(x)
    if node.op.endswith("with_indices") or node.op.startswith("adaptive_max"):
        ctx.tuple_result(node, [out, ZERO])
    return out, {ref_name(x) or "": node.numel / n_in if n_in else 1.0}


@transfer("avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
          "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", family=Family.AVERAGE_POOLING)
def avg_pool(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    kernel = node.arg(1)
    shape = ctx.shape(x) or ()
    if node.op.startswith(("adaptive", "_adaptive")) or kernel is None:
        k = _pool_window(node, ctx)
    else:
        k = math.prod(as_tuple(kernel, max(len(shape) - 2, 1), 1))
    s = ctx.stat(x)
    n_in = ctx.numel(x)
    uses = node.numel * k / n_in if n_in else 1.0  # windows each input element falls in
    return Stat(s.mean, (s.q - s.v) + s.v / k, s.v / k), {ref_name(x) or "": uses / (k * k)}


@transfer("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_bilinear2d",
          "upsample_linear1d", "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_nearest_exact2d",
          "_upsample_bilinear2d_aa", "interpolate", family=Family.RESAMPLING)
def upsample(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    n_in = ctx.numel(x)
    return ctx.stat(x), {ref_name(x) or "": node.numel / n_in if n_in else 1.0}
