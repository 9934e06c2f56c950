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


def window_moments(node: NodeRecord, ctx: Context) -> tuple[float, float]:
    """E[M] and E[M²] of a max pool's window maximum of standard normals, averaged over its output
    positions: a window has as many values as its kernel taps that land inside the input (padding is -inf,
    so border windows are smaller); an adaptive pool's window is the size ratio."""
    kernel = node.arg(1)
    shape = ctx.shape(node.arg(0)) or ()
    dims = max(len(shape) - 2, 1)
    if node.op.startswith("adaptive") or kernel is None or node.shape is None or len(shape) < dims + 1:
        return max_order_moments(_pool_window(node, ctx))
    kernel_t = as_tuple(kernel, dims, 1)
    stride_t = as_tuple(node.arg(2, "stride") or kernel_t, dims, 1)
    pad_t, dil_t = as_tuple(node.arg(3, "padding", 0), dims, 0), as_tuple(node.arg(4, "dilation", 1), dims, 1)
    counts: dict[int, int] = {1: 1}  # window size -> number of output positions with it
    for i in range(dims):
        length_in, length_out = shape[len(shape) - dims + i], node.shape[len(node.shape) - dims + i]
        per_dim: dict[int, int] = {}
        for o in range(length_out):
            start = o * stride_t[i] - pad_t[i]
            valid = sum(1 for t in range(kernel_t[i]) if 0 <= start + t * dil_t[i] < length_in)
            per_dim[valid] = per_dim.get(valid, 0) + 1
        joint: dict[int, int] = {}
        for a, n in counts.items():
            for b, m in per_dim.items():
                joint[a * b] = joint.get(a * b, 0) + n * m
        counts = joint or counts
    total = sum(counts.values())
    e1 = sum(n * max_order_moments(max(k, 1))[0] for k, n in counts.items()) / total
    e2 = sum(n * max_order_moments(max(k, 1))[1] for k, n in counts.items()) / total
    return e1, e2


def _pool_window(node: NodeRecord, ctx: Context) -> int:
    x = node.arg(0)
    n_in, n_out = ctx.numel(x), node.numel
    return max(int(round(n_in / n_out)), 1) if n_out else 1


@transfer("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool1d_with_indices",
          "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
          family=Family.MAX_POOLING)
def max_pool(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    s = ctx.stat(x)
    e1, e2 = window_moments(node, ctx)
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
