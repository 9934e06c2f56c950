"""Weighted layers: a layer's own weight times the signal. Linear and convolutions carry
q_out = fan_in * E[w²] * q_in + E[b²] forward and r_in = fan_out_eff * E[w²] * r_out back, with the
effective fans a convolution's stride, padding, dilation and groups leave; an embedding is a lookup.

The input's mean reaches the output through each filter's sum, not its squares: `fan_in * E[w²]` is that
sum's expected square only for independently drawn weights. Where the weight's real value is known its
filter sums are used (a standardised filter sums to zero, so a ReLU's mean contributes nothing)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

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
    sums = _filter_sums(ctx, w, sx, lambda t: t.reshape(t.shape[0], -1).sum(dim=1, dtype=torch.float64))
    if sums is not None:  # the mean's path through the real filter sums (see the module docstring)
        m1, m2, _ = sums
        q = fan_in * w2 * (sx.q - sx.mean * sx.mean) + sx.mean * sx.mean * m2 + bias.q
        mean = sx.mean * m1 + bias.mean
    gains: Gains = {}
    add_gain(gains, x, fan_out * w2)
    return Stat(mean, max(q, mean * mean), v), gains


def _filter_sums(ctx: Context, w: Any, sx: Stat, sum_of: Any) -> tuple[float, float, float] | None:
    """(mean, mean square, mean within-channel variance over positions) of the weight's filter sums
    `sum_of(w)` (a tensor with the output channels first), or None where the weight's value is not known
    or the input has no mean for them to carry."""
    if sx.mean == 0.0:
        return None
    value = ctx.value(w)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.device.type == "meta" or value.dim() < 2:
        return None
    try:
        with torch.no_grad():
            s = sum_of(value.detach())
    except Exception:  # a geometry the sums cannot be taken for: the independent-weights model stands
        return None
    flat = s.reshape(s.shape[0], -1)
    spread = float(flat.var(dim=1, unbiased=False).mean()) if flat.shape[1] > 1 else 0.0
    return float(flat.mean()), float((flat * flat).mean()), spread


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
        border = c_in_per_group * w2 * max(sums - squares, 0.0)
        v += border * (sx.q - sx.v)

        def at_positions(t: torch.Tensor) -> torch.Tensor:  # each output position's sum over its valid taps
            kernel_sums = t.sum(dim=1, keepdim=True, dtype=torch.float64)
            ones = torch.ones((1, 1, *in_sp), dtype=torch.float64)
            return _CONV[dims](ones, kernel_sums, None, stride_t, padding if isinstance(padding, str) else pad_t, dil_t)[0]

        real = _filter_sums(ctx, w, sx, at_positions) if 1 <= dims <= 3 else None
        if real is not None:  # the mean's path through the real filter sums, position by position
            m1, m2, spread = real
            mu2 = sx.mean * sx.mean
            q = fan_in_eff * w2 * (sx.q - mu2) + mu2 * m2 + bias.q
            mean = sx.mean * m1 + bias.mean
            v = fan_in_eff * w2 * sx.v + border * max(sx.q - sx.v - mu2, 0.0) + mu2 * spread
    gains: Gains = {}
    add_gain(gains, x, fan_out_eff * w2)
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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
