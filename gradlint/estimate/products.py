"""Contracted products (matmul, bmm, addmm, outer, two-operand einsum): a generalised matmul whose
contracted length is its fan. Each notes its two factors, so rules find q and k of q @ k^T by them."""

from __future__ import annotations

import math
from typing import Any

from gradlint.estimate.stat import Stat
from gradlint.estimate.table import (
    Context,
    Family,
    Gains,
    Result,
    add_gain,
    broadcast,
    transfer,
)
from gradlint.graph import NodeRecord, Ref


def _product(node: NodeRecord, ctx: Context, a: Any, b: Any, extra: Any = None) -> Result:
    if isinstance(a, Ref) and isinstance(b, Ref):
        ctx.note(node, "operands", (a.name, b.name))  # the two factors (rules find q and k of q @ k^T by them)
    sa, sb = ctx.stat(a), ctx.stat(b)
    ashape = ctx.shape(a) or (1,)
    k = ashape[-1]
    q = k * sa.q * sb.q
    if sa.mean > 0 and abs(sa.mean * k - 1.0) < 0.05:  # rows of `a` sum to one (attention probabilities)
        q = k * sa.q * sb.v + (sb.q - sb.v)
    mean = k * sa.mean * sb.mean
    v = k * (sa.v * sb.q + sb.v * sa.q) / 2
    gains: Gains = {}
    add_gain(gains, a, sb.q * node.numel * k / max(ctx.numel(a), 1))
    add_gain(gains, b, sa.q * node.numel * k / max(ctx.numel(b), 1))
    if extra is not None:
        se = ctx.stat(extra)
        q, mean, v = q + se.q, mean + se.mean, v + se.v
        add_gain(gains, extra, broadcast(ctx, node, extra))
    return Stat(mean, max(q, mean * mean), min(v, q)), gains


@transfer("matmul", "mm", "bmm", family=Family.MATMUL)
def matmul(node: NodeRecord, ctx: Context) -> Result:
    return _product(node, ctx, node.arg(0), node.arg(1))


@transfer("addmm", "baddbmm", "addbmm", family=Family.MATMUL)
def addmm(node: NodeRecord, ctx: Context) -> Result:
    return _product(node, ctx, node.arg(1), node.arg(2), node.arg(0))


@transfer("outer", "ger", family=Family.MATMUL)
def outer(node: NodeRecord, ctx: Context) -> Result:
    a, b = node.arg(0), node.arg(1)
    sa, sb = ctx.stat(a), ctx.stat(b)
    gains: Gains = {}
    add_gain(gains, a, sb.q * ctx.numel(b))
    add_gain(gains, b, sa.q * ctx.numel(a))
    return Stat(sa.mean * sb.mean, sa.q * sb.q, sa.v * sb.q), gains


@transfer("einsum", family=Family.MATMUL)
def einsum(node: NodeRecord, ctx: Context) -> Result:
    """Two-operand einsum as a generalised matmul: the contracted letters set the fan."""
    equation, operands = str(node.arg(0)).replace(" ", ""), [o for o in node.arg(1) if isinstance(o, Ref)]
    if len(operands) != 2 or "->" not in equation or "." in equation:  # ellipses: pass through
        return ctx.stat(operands[0]) if operands else Stat(0.0, 1.0, 1.0), {o.name: 1.0 for o in operands}
    inputs, output = equation.split("->")
    left, right = inputs.split(",")
    a, b = operands
    ctx.note(node, "operands", (a.name, b.name))
    sizes = dict(zip(left, ctx.shape(a) or ())) | dict(zip(right, ctx.shape(b) or ()))
    contracted = math.prod(sizes.get(c, 1) for c in set(left + right) - set(output))
    sa, sb = ctx.stat(a), ctx.stat(b)
    gains: Gains = {}
    add_gain(gains, a, sb.q * node.numel * contracted / max(ctx.numel(a), 1))
    add_gain(gains, b, sa.q * node.numel * contracted / max(ctx.numel(b), 1))
    q = contracted * sa.q * sb.q
    mean = contracted * sa.mean * sb.mean
    return Stat(mean, max(q, mean * mean), min(contracted * sa.v * sb.q, q)), gains
