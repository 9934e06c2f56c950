"""Vector and matrix products and the weight reparametrisations built from them (weight_norm's
`_weight_norm`, spectral norm's power iteration): generalised matmuls, one fan each."""

from __future__ import annotations

from gradlint.estimate.products import _product
from gradlint.estimate.stat import Stat
from gradlint.estimate.structural import identity
from gradlint.estimate.table import Context, Family, Gains, Result, transfer
from gradlint.estimate.table import add_gain as _add_gain
from gradlint.graph import NodeRecord

transfer("matrix_H", "adjoint", "conj", "conj_physical", "resolve_conj", "resolve_neg", family=Family.STRUCTURAL)(identity)


@transfer("mv", "dot", "vdot", "inner", family=Family.MATMUL)
def vector_product(node: NodeRecord, ctx: Context) -> Result:
    """A matrix-vector or vector-vector product: a matmul contracting the last dimension of the first."""
    return _product(node, ctx, node.arg(0), node.arg(1))


@transfer("_grouped_mm", "grouped_mm", "grouped_mm_fallback", family=Family.MATMUL)
def grouped_product(node: NodeRecord, ctx: Context) -> Result:
    """grouped_mm(input (S, in), weight (G, in, out), offs): each row times its group's matrix (the experts of
    a mixture of experts, rows sorted by expert). A matmul with fan `in`; each group's matrix sees S / G rows."""
    return _product(node, ctx, node.arg(0), node.arg(1))


@transfer("_weight_norm", family=Family.NORMALISATION)
def weight_norm(node: NodeRecord, ctx: Context) -> Result:
    """w = g * v / |v|, the norm over every dimension but `dim`: each group of n elements has squared sum g²."""
    v, g = node.arg(0), node.arg(1)
    dim = int(node.arg(2, "dim", 0))
    shape = ctx.shape(v) or (1,)
    n = max(ctx.numel(v) // max(shape[dim] if shape else 1, 1), 1)
    sv, sg = ctx.stat(v), ctx.stat(g)
    q = sg.q / n
    gains: Gains = {}
    _add_gain(gains, v, sg.q / (n * max(sv.q, 1e-30)) * (n - 1) / n)
    _add_gain(gains, g, 1.0)
    return Stat(0.0, q, q), gains
