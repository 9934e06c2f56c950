"""Weighted layers: a layer's own weight times the signal. Linear and convolutions carry
q_out = fan_in * E[w²] * q_in + E[b²] forward and r_in = fan_out_eff * E[w²] * r_out back, with the
effective fans a convolution's stride, padding, dilation and groups leave; an embedding is a lookup."""

from __future__ import annotations

import math
from typing import Any

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Gains,
    Result,
    add_gain,
    as_tuple,
    ref_name,
    transfer,
)
from gradlint.graph import NodeRecord


@transfer("linear", family=Family.WEIGHTED)
def linear(node: NodeRecord, ctx: Context) -> Result:
    x, w, b = node.arg(0), node.arg(1), node.arg(2)
    shape = ctx.shape(w) or (1, 1)
    fan_out, fan_in = shape[0], shape[1]
    wm, w2 = ctx.weight(w)
    sx = ctx.stat(x)
    bias = ctx.stat(b) if b is not None else ZERO
    q = fan_in * w2 * sx.q + bias.q
    mean = fan_in * wm * sx.mean + bias.mean
    v = fan_in * w2 * sx.v
    gains: Gains = {}
    add_gain(gains, x, fan_out * w2)
    return Stat(mean, max(q, mean * mean), v), gains


def _tap_fractions(length_in: int, length_out: int, kernel: int, stride: int, padding: int, dilation: int) -> list[float]:
    """For each kernel tap, the fraction of output positions where it lands inside the input (not padding)."""
    fractions = []
    for t in range(kernel):
        valid = sum(1 for o in range(length_out) if 0 <= o * stride - padding + t * dilation < length_in)
        fractions.append(valid / max(length_out, 1))
    return fractions


def _valid_taps(length_in: int, length_out: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Number of (output position, kernel tap) pairs that land inside the input (not on padding)."""
    return round(sum(_tap_fractions(length_in, length_out, kernel, stride, padding, dilation)) * length_out)


def _conv(node: NodeRecord, ctx: Context, transposed: bool, stride: Any, padding: Any, dilation: Any, groups: int) -> Result:
    x, w, b = node.arg(0), node.arg(1), node.arg(2)
    wshape = ctx.shape(w)
    xshape = ctx.shape(x)
    if not wshape or not xshape or node.shape is None:
        return ctx.stat(x), {ref_name(x) or "": 1.0}
    dims = len(wshape) - 2
    kernel = wshape[2:]
    stride_t, dil_t = as_tuple(stride, dims, 1), as_tuple(dilation, dims, 1)
    in_sp, out_sp = xshape[-dims:], node.shape[-dims:]
    if isinstance(padding, str):
        pad_t = tuple((d * (k - 1)) // 2 if padding == "same" else 0 for k, d in zip(kernel, dil_t))
    else:
        pad_t = as_tuple(padding, dims, 0)
    wm, w2 = ctx.weight(w)
    sx = ctx.stat(x)
    bias = ctx.stat(b) if b is not None else ZERO
    pairs_per_dim = []
    for i in range(dims):
        if transposed:  # a transposed conv is the backward of a conv from its output to its input
            pairs_per_dim.append(_valid_taps(out_sp[i], in_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i]))
        else:
            pairs_per_dim.append(_valid_taps(in_sp[i], out_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i]))
    pairs = math.prod(pairs_per_dim)
    n_in, n_out = math.prod(in_sp), math.prod(out_sp)
    if transposed:
        c_in_per_group, c_out_per_group = wshape[0] // groups, wshape[1]
        fan_in_eff = c_in_per_group * pairs / n_out  # average taps reaching one output element
        fan_out_eff = c_out_per_group * pairs / n_in
    else:
        c_in_per_group, c_out_per_group = wshape[1], wshape[0] // groups
        fan_in_eff = c_in_per_group * pairs / n_out
        fan_out_eff = c_out_per_group * pairs / n_in
    q = fan_in_eff * w2 * sx.q + bias.q
    mean = fan_in_eff * wm * sx.mean + bias.mean
    v = fan_in_eff * w2 * sx.v
    if not transposed:
        # Near the border fewer taps see the input, so a channel's mean shift (from its inputs' means) varies
        # with position: batch norm sees that as within-channel variance (why plain BN CNNs explode slowly).
        sums, squares = 1.0, 1.0
        for i in range(dims):
            f = _tap_fractions(in_sp[i], out_sp[i], kernel[i], stride_t[i], pad_t[i], dil_t[i])
            sums *= sum(f)
            squares *= sum(x * x for x in f)
        v += c_in_per_group * w2 * (sx.q - sx.v) * max(sums - squares, 0.0)
    gains: Gains = {}
    add_gain(gains, x, fan_out_eff * w2)
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


@transfer("conv1d", "conv2d", "conv3d", family=Family.WEIGHTED)
def conv(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, False, node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(5, "dilation", 1), int(node.arg(6, "groups", 1)))


@transfer("conv_transpose1d", "conv_transpose2d", "conv_transpose3d", family=Family.WEIGHTED)
def conv_transpose(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, True, node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(7, "dilation", 1), int(node.arg(6, "groups", 1)))


@transfer("convolution", "_convolution", family=Family.WEIGHTED)
def convolution(node: NodeRecord, ctx: Context) -> Result:
    return _conv(node, ctx, bool(node.arg(6, "transposed", False)), node.arg(3, "stride", 1), node.arg(4, "padding", 0), node.arg(5, "dilation", 1), int(node.arg(8, "groups", 1)))


@transfer("embedding", family=Family.WEIGHTED)
def embedding(node: NodeRecord, ctx: Context) -> Result:
    wm, w2 = ctx.weight(node.arg(0))
    indices = node.arg(1)
    if ctx.uniform(indices) is not None:  # one row for every token: constant across the batch
        return Stat(wm, w2, 0.0), {}
    return Stat(wm, w2, max(w2 - wm * wm, 0.0)), {}
