"""Order statistics: `sort` permutes its input, `topk` keeps the k largest of n along a dimension (a
mixture-of-experts router's gate weights). Both pass the kept values' gradient back to where they came
from; only the indices (the tuple's second output) are constant."""

from __future__ import annotations

import math

from gradlint.estimate.stat import ZERO, Stat
from gradlint.estimate.table import Context, Family, Result, ref_name, transfer
from gradlint.graph import NodeRecord


def upper_tail(s: Stat, share: float) -> Stat:
    """The statistics of the values above the (1 - share) quantile of a normal with `s`'s mean and variance:
    what the k = share * n largest of n values hold."""
    if share >= 1.0 or s.var <= 0.0:
        return s
    share = max(share, 1e-12)
    z = _normal_quantile(1.0 - share)
    lam = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) / share  # E[Z | Z > z]
    sd = math.sqrt(s.var)
    mean = s.mean + sd * lam
    var = s.var * max(1.0 + z * lam - lam * lam, 0.0)
    within = var * (s.v / s.var if s.var > 0 else 0.0)
    return Stat(mean, mean * mean + var, min(within, var))


def _normal_quantile(p: float) -> float:
    """Φ⁻¹(p) by bisection on erf (no scipy)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@transfer("topk", family=Family.REDUCTION)
def topk(node: NodeRecord, ctx: Context) -> Result:
    """values, indices = topk(x, k, dim): each kept value's gradient goes back to one of n inputs."""
    x = node.arg(0)
    k = int(node.arg(1, "k", 1))
    shape = ctx.shape(x) or ()
    dim = int(node.arg(2, "dim", -1))
    n = shape[dim % len(shape)] if shape else 1
    share = min(k / n, 1.0) if n else 1.0
    largest = bool(node.arg(3, "largest", True))
    s = ctx.stat(x)
    values = upper_tail(s, share) if largest else upper_tail(s.scaled(-1.0), share).scaled(-1.0)
    ctx.tuple_result(node, [values, ZERO])
    return values, {ref_name(x) or "": share}


@transfer("sort", family=Family.REDUCTION)
def sort(node: NodeRecord, ctx: Context) -> Result:
    """A permutation: the values keep their statistics and each one's gradient."""
    x = node.arg(0)
    s = ctx.stat(x)
    ctx.tuple_result(node, [s, ZERO])
    return s, {ref_name(x) or "": 1.0}
