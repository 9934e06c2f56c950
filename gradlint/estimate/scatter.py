"""Writes into a tensor as data flow (what a functionalised in-place write or slice assignment becomes):
`out[:, t] = y` is `select_scatter(out, y, 1, t)`, whose result holds y where it wrote and the old
values elsewhere. The gradient reaches the written values in full and the old tensor where it survives."""

from __future__ import annotations

from typing import Any

import torch

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import Context, Family, Gains, Result, rule_of, transfer
from gradlint.estimate.table import add_gain as _add_gain
from gradlint.estimate.table import broadcast as _bcast
from gradlint.graph import NodeRecord


def _blend(ctx: Context, node: NodeRecord, base: Any, src: Any, share: float, accumulate: bool) -> Result:
    """`share` of the output's elements come from `src` (added to `base` if accumulating), the rest from `base`."""
    share = min(max(share, 0.0), 1.0)
    sb, ss = ctx.stat(base), ctx.stat(src)
    if accumulate:
        kept = 1.0
        mean = sb.mean + share * ss.mean
        q = sb.q + share * (ss.q + 2 * sb.mean * ss.mean)
        v = sb.v + share * ss.v
    else:
        kept = 1.0 - share
        mean = kept * sb.mean + share * ss.mean
        q = kept * sb.q + share * ss.q
        v = kept * sb.v + share * ss.v
    gains: Gains = {}
    _add_gain(gains, base, kept)
    n_src = ctx.numel(src)
    _add_gain(gains, src, share * node.numel / n_src if n_src else 1.0)  # a broadcast value collects its copies
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


def _share(ctx: Context, node: NodeRecord, src: Any) -> float:
    n = ctx.numel(src)
    return n / node.numel if node.numel and n else 0.0


def _later_kept(ctx: Context, node: NodeRecord) -> float:
    """The share of this write that later writes into the same tensor keep, as the mean-square gradient
    sees it: a chain `out[:, 0] = a; out[:, 1] = b; ...` writes disjoint parts, so each written value
    receives the final gradient in full although every later write keeps only (1 - share) on average."""
    kept = 1.0
    for _ in range(4096):
        writes = [u for u in ctx.graph.users(node.name) if rule_of(u.op) is view_scatter and getattr(u.arg(0), "name", None) == node.name]
        if len(writes) != 1:
            break
        node = writes[0]
        kept *= 1.0 - _share(ctx, node, node.arg(1))
    return max(kept, 1e-12)


@transfer("select_scatter", "slice_scatter", "diagonal_scatter", "as_strided_scatter", family=Family.WRITE)
def view_scatter(node: NodeRecord, ctx: Context) -> Result:
    """The view's elements replaced by `src` (same shape as the view)."""
    stat, gains = _blend(ctx, node, node.arg(0), node.arg(1), _share(ctx, node, node.arg(1)), False)
    src = getattr(node.arg(1), "name", None)
    if src in gains:
        gains[src] /= _later_kept(ctx, node)
    return stat, gains


@transfer("index_put", family=Family.WRITE)
def index_put(node: NodeRecord, ctx: Context) -> Result:
    return _indexed(node, ctx, node.arg(2), bool(node.arg(3, "accumulate", False)))


@transfer("masked_scatter", family=Family.WRITE)
def masked_scatter(node: NodeRecord, ctx: Context) -> Result:
    mask = ctx.value(node.arg(1))
    if isinstance(mask, torch.Tensor):
        share = float(mask.broadcast_to(node.shape or mask.shape).double().mean()) if node.shape else 0.5
        return _blend(ctx, node, node.arg(0), node.arg(2), share, False)
    return _indexed(node, ctx, node.arg(2), False)


@transfer("index_copy", "scatter", family=Family.WRITE)
def indexed_write(node: NodeRecord, ctx: Context) -> Result:
    return _indexed(node, ctx, node.arg(3, "src", node.arg(3, "source")), False)


@transfer("index_add", "scatter_add", family=Family.WRITE)
def indexed_add(node: NodeRecord, ctx: Context) -> Result:
    return _indexed(node, ctx, node.arg(3, "src", node.arg(3, "source")), True)


@transfer("scatter_reduce", family=Family.WRITE)
def scatter_reduce(node: NodeRecord, ctx: Context) -> Result:
    return _indexed(node, ctx, node.arg(3, "src", node.arg(3, "source")), node.arg(4, "reduce") == "sum")


def _indexed(node: NodeRecord, ctx: Context, src: Any, accumulate: bool) -> Result:
    """Values written (or added) at indexed positions; one written value per source element."""
    if not hasattr(src, "name"):  # scatter of a number: a constant written over part of the tensor
        value = float(src) if isinstance(src, (int, float)) else 0.0
        share = _share(ctx, node, node.arg(2))
        sb = ctx.stat(node.arg(0))
        return Stat((1 - share) * sb.mean + share * value, (1 - share) * sb.q + share * value * value, (1 - share) * sb.v), \
            {node.arg(0).name: 1 - share} if hasattr(node.arg(0), "name") else {}
    return _blend(ctx, node, node.arg(0), src, _share(ctx, node, src), accumulate)


@transfer("copy", family=Family.WRITE)
def copy(node: NodeRecord, ctx: Context) -> Result:
    """copy(dst, src): src's values in dst's shape; nothing of dst survives."""
    src = node.arg(1)
    stat = ctx.stat(src)
    return stat, ({src.name: _bcast(ctx, node, src)} if hasattr(src, "name") else {})


@transfer("fill", "zero", family=Family.CONSTANT)
def fill(node: NodeRecord, ctx: Context) -> Result:
    if node.op == "zero":
        return ZERO, {}
    value = node.arg(1, "value", 0.0)
    value = float(value) if isinstance(value, (int, float)) else ctx.stat(value).mean
    return Stat(value, value * value, 0.0), {}
