"""Factories, random draws, comparisons and sizes: values no gradient flows back through. A fill's
statistics are its value; a draw's are its distribution's."""

from __future__ import annotations

import math

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import Context, Family, Result, declare, transfer
from gradlint.graph import NodeRecord


@transfer("zeros", "scalar_tensor", "arange", "eye", "randint", "linspace", "_local_scalar_dense", "item", "lt", "le",
          "gt", "ge", "eq", "ne", "logical_not", "logical_and", "logical_or", "argmax", "argmin", "isnan", "isinf",
          "any", "all", family=Family.CONSTANT)
@transfer("zeros_like", "new_zeros", family=Family.CONSTANT, reads_values=False)
def constant(node: NodeRecord, ctx: Context) -> Result:
    """No gradient flows back through it (its value is zero, an index, a count or a comparison)."""
    return ZERO, {}


@transfer("sym_size", "size", family=Family.CONSTANT, reads_values=False)
def size(node: NodeRecord, ctx: Context) -> Result:
    """A dimension's length: a number, no gradient."""
    return ZERO, {}


@transfer("ones", family=Family.CONSTANT)
@transfer("ones_like", "new_ones", family=Family.CONSTANT, reads_values=False)
def ones(node: NodeRecord, ctx: Context) -> Result:
    return Stat(1.0, 1.0, 0.0), {}


def _filled(node: NodeRecord, ctx: Context) -> Result:
    value = node.arg(1, "fill_value", 0.0)
    value = float(value) if isinstance(value, (int, float)) else 0.0
    if not math.isfinite(value):  # an additive attention mask: -inf where masked, 0 elsewhere
        return ZERO, {}
    return Stat(value, value * value, 0.0), {}


transfer("full", family=Family.CONSTANT)(_filled)
transfer("full_like", "new_full", family=Family.CONSTANT, reads_values=False)(_filled)


@transfer("randn", "randn_like", family=Family.CONSTANT)
def normal_draw(node: NodeRecord, ctx: Context) -> Result:
    return Stat(0.0, 1.0, 1.0), {}


@transfer("rand", "rand_like", family=Family.CONSTANT)
def uniform_draw(node: NodeRecord, ctx: Context) -> Result:
    """U(0, 1): stochastic depth's keep mask is floor(keep + rand)."""
    return Stat(0.5, 1.0 / 3.0, 1.0 / 12.0), {}


@transfer("bernoulli", family=Family.CONSTANT)
def bernoulli(node: NodeRecord, ctx: Context) -> Result:
    """bernoulli(probs) or x.bernoulli_(p): a 0/1 draw with P(1) = p."""
    p = node.arg(1, "p", None)
    mean = float(p) if isinstance(p, (int, float)) else ctx.stat(node.arg(0)).mean
    mean = min(max(mean, 0.0), 1.0)
    return Stat(mean, mean, mean * (1.0 - mean)), {}


transfer("empty", "empty_like", "new_empty", family=Family.CONSTANT, defined=False)(constant)
declare("empty_strided", "empty_permuted", family=Family.CONSTANT, defined=False)  # no rule: passed through
declare("sym_numel", "numel", family=Family.CONSTANT, reads_values=False)
