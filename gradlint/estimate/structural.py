"""Structural ops move values without arithmetic (views, copies, casts, selections, splits, padding,
concatenation) and dropout masks them: the statistics pass through, the gradient reaches the elements
that were kept, once per copy."""

from __future__ import annotations

import math

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Gains,
    Result,
    add_gain,
    broadcast,
    ref_name,
    rule_of,
    transfer,
)
from gradlint.graph import NodeRecord, Ref


@transfer("view", "reshape", "_unsafe_view", "permute", "transpose", "t", "flatten", "unflatten", "squeeze",
          "unsqueeze", "contiguous", "clone", "_to_copy", "to", "alias", "lift_fresh_copy", "type_as",
          "view_as", "reshape_as", "flip", "roll", "movedim", "swapaxes", "pixel_shuffle", "pixel_unshuffle",
          "channel_shuffle", "masked_fill", "fill_diagonal", family=Family.STRUCTURAL)
def identity(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {ref_name(x) or "": 1.0}


transfer("_assert_tensor_metadata", family=Family.STRUCTURAL, reads_values=False)(identity)


@transfer("detach", family=Family.STRUCTURAL)
def detach(node: NodeRecord, ctx: Context) -> Result:
    return ctx.stat(node.arg(0)), {}


@transfer("expand", "expand_as", "repeat", "repeat_interleave", "broadcast_to", "tile", family=Family.STRUCTURAL)
def expand(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {ref_name(x) or "": broadcast(ctx, node, x)}


@transfer("slice", "select", "narrow", "index", "index_select", "gather", "take_along_dim", "diagonal", "as_strided",
          family=Family.STRUCTURAL)
def select(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    n = ctx.numel(x)
    return ctx.stat(x), {ref_name(x) or "": node.numel / n if n else 1.0}


@transfer("split", "split_with_sizes", "chunk", "unbind", "tensor_split", family=Family.STRUCTURAL)
def split(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    return ctx.stat(x), {ref_name(x) or "": 1.0}


@transfer("getitem", family=Family.STRUCTURAL)
def getitem(node: NodeRecord, ctx: Context) -> Result:
    source, index = node.arg(0), node.arg(1)
    name = ref_name(source)
    stat = ctx.element(name, int(index)) if name is not None and isinstance(index, int) else None
    stat = stat if stat is not None else ctx.stat(source)
    total = ctx.numel(source)
    if not total and name is not None and rule_of(ctx.graph[name].op) is split:  # one piece of a split tensor
        total = ctx.numel(ctx.graph[name].arg(0))
    share = node.numel / total if total and node.numel and total >= node.numel else 1.0
    return stat, {name or "": share}


@transfer("cat", "stack", "concat", "concatenate", "hstack", "vstack", family=Family.CONCATENATION)
def cat(node: NodeRecord, ctx: Context) -> Result:
    parts = [p for p in node.arg(0) if isinstance(p, Ref)]
    sizes = [max(ctx.numel(p), 1) for p in parts]
    total = sum(sizes) or 1
    stats = [ctx.stat(p) for p in parts]
    mean = sum(s.mean * n for s, n in zip(stats, sizes)) / total
    q = sum(s.q * n for s, n in zip(stats, sizes)) / total
    v = sum(s.v * n for s, n in zip(stats, sizes)) / total
    gains: Gains = {}
    for p in parts:
        add_gain(gains, p, 1.0)
    return Stat(mean, q, v), gains


@transfer("pad", "constant_pad_nd", family=Family.STRUCTURAL)
def zero_pad(node: NodeRecord, ctx: Context) -> Result:
    """Zeros around the input: its moments diluted by the padded share."""
    x = node.arg(0)
    frac = ctx.numel(x) / node.numel if node.numel else 1.0
    s = ctx.stat(x)
    return Stat(s.mean * frac, s.q * frac, s.v * frac), {ref_name(x) or "": 1.0}


@transfer("reflection_pad1d", "reflection_pad2d", "replication_pad2d", family=Family.STRUCTURAL)
def copy_pad(node: NodeRecord, ctx: Context) -> Result:
    """Copies of the input's own border values: its moments unchanged."""
    x = node.arg(0)
    return ctx.stat(x), {ref_name(x) or "": 1.0}


@transfer("dropout", "native_dropout", "feature_dropout", family=Family.DROPOUT)
def dropout(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    p = float(node.arg(1, "p", 0.5))
    train = node.arg(2, "train", True)
    s = ctx.stat(x)
    if not train or p <= 0 or p >= 1:
        out = s
        gain = 1.0
    else:
        out = Stat(s.mean, s.q / (1 - p), s.v + s.q * p / (1 - p))
        gain = 1.0 / (1 - p)
    if node.op == "native_dropout":
        ctx.tuple_result(node, [out, ZERO])
    return out, {ref_name(x) or "": gain}


@transfer("alpha_dropout", "feature_alpha_dropout", family=Family.DROPOUT)
def alpha_dropout(node: NodeRecord, ctx: Context) -> Result:
    """SELU's dropout keeps mean and variance by design; the kept units' gradient is rescaled to match."""
    x = node.arg(0)
    return ctx.stat(x), {ref_name(x) or "": 1.0}


@transfer("tril", "triu", family=Family.STRUCTURAL)
def triangle(node: NodeRecord, ctx: Context) -> Result:
    """Half of a square's entries kept, half zeroed."""
    return ctx.stat(node.arg(0)).scaled(math.sqrt(0.5)), {ref_name(node.arg(0)) or "": 0.5}
