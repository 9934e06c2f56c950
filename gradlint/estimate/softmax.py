"""The moments of a softmax row, sampled: a fixed-seed draw of Gaussian logits per (variance, keys),
cached, so the estimate is deterministic and exact up to sampling noise at any number of keys."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from gradlint.estimate.stat import Stat
from gradlint.estimate.table import Context, Family, Result, ref_name, transfer
from gradlint.graph import NodeRecord

_BUDGET = 1 << 17  # logits drawn per (variance, keys): a few ms, noise well under 0.01 decades


@lru_cache(maxsize=16384)
def sampled_softmax(logit_var: float, n: int) -> tuple[float, float]:
    """(E[p²] per entry, mean-square gain per logit) for n iid N(0, logit_var) logits."""
    rows = min(4096, max(32, _BUDGET // n))
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(rows, n, generator=generator, dtype=torch.float64) * math.sqrt(logit_var)
    p = torch.softmax(z, dim=-1)
    s2 = (p * p).sum(-1)
    s3 = (p * p * p).sum(-1)
    return float(s2.mean()) / n, float((s2 - 2 * s3 + s2 * s2).mean()) / n


def softmax_moments(logit_var: float, n: float) -> tuple[float, float]:
    """E[p²] per entry of a softmax over n logits of variance `logit_var`, and the mean-square gain from
    its output to each logit, E[sum p² - 2 sum p³ + (sum p²)²] / n (the Jacobian diag(p) - p pᵀ's squared
    Frobenius norm per logit). Sampled once per (variance, n) with a fixed seed: closed forms (lognormal
    weights) miss by a factor 2-6 over the few keys an early causal row sees."""
    n = max(int(round(n)), 1)
    if n == 1:
        return 1.0, 0.0
    return sampled_softmax(float(f"{max(logit_var, 0.0):.3g}"), n)


@transfer("log_softmax", "_log_softmax", family=Family.SOFTMAX)
def log_softmax(node: NodeRecord, ctx: Context) -> Result:
    x = node.arg(0)
    shape = ctx.shape(x) or (1,)
    n = shape[int(node.arg(1, "dim", -1))] if shape else 1
    s = ctx.stat(x)
    mean = -math.log(max(n, 1)) - s.var / 2
    return Stat(mean, mean * mean + s.var, s.v), {ref_name(x) or "": 1.0}
