"""Gaussian expectations of any pointwise function: E[φ(h)], E[φ(h)²] and E[φ'(h)²] for h ~ N(m, s²),
by Gauss–Hermite quadrature, with φ evaluated by the very op the model calls (so every activation in
torch, and any composite of pointwise ops, is covered by one mechanism). An input with third and fourth
cumulants (a residual sum with a rectified skip) reweights the nodes by its Gram–Charlier density."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

ORDER = 120


@dataclass(frozen=True)
class Moments:
    mean: float  # E[φ(h)]
    second: float  # E[φ(h)²]
    grad_second: float  # E[φ'(h)²]
    grad_mean: float  # E[φ'(h)]
    max_grad: float  # sup of |φ'| over the quadrature nodes (the derivative bound)
    nonfinite: float = 0.0  # probability mass where φ or φ' is NaN or infinite (log of a negative number)
    third: float = 0.0  # E[φ(h)³]
    fourth: float = 0.0  # E[φ(h)⁴]

    def cumulants(self) -> tuple[float, float]:
        """The third and fourth cumulants of φ(h), from its raw moments."""
        m1, m2, m3, m4 = self.mean, self.second, self.third, self.fourth
        var = m2 - m1 * m1
        k3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
        central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
        return k3, central4 - 3 * var * var


@lru_cache(maxsize=4)
def nodes(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Hermite nodes and weights for the standard normal (Golub–Welsch: the eigen-decomposition of
    the probabilists' Hermite Jacobi matrix), so that E[f(z)] ≈ sum(w * f(z))."""
    off = torch.sqrt(torch.arange(1, order, dtype=torch.float64))
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    return nodes, vectors[0] ** 2


def gram_charlier(z: torch.Tensor, w: torch.Tensor, var: float, k3: float, k4: float) -> torch.Tensor:
    """Weights that make the standard normal's nodes `z` integrate against the Gram–Charlier density with
    the given third and fourth cumulants (clipped at zero and renormalised where the series goes negative)."""
    if var <= 0 or (k3 == 0 and k4 == 0):
        return w
    g1, g2 = k3 / var ** 1.5, k4 / (var * var)
    z2 = z * z
    he3, he4 = z * (z2 - 3), z2 * z2 - 6 * z2 + 3
    he6 = z2 * z2 * z2 - 15 * z2 * z2 + 45 * z2 - 15
    weights = (w * (1 + g1 / 6 * he3 + g2 / 24 * he4 + g1 * g1 / 72 * he6)).clamp(min=0.0)
    total = float(weights.sum())
    return weights / total if total > 0 and math.isfinite(total) else w


def expectations(fn: Callable[[torch.Tensor], torch.Tensor], mean: float, var: float, order: int = ORDER,
                 k3: float = 0.0, k4: float = 0.0) -> Moments:
    """Moments of fn(h) and fn'(h) under h ~ N(mean, var), or under the Gram–Charlier density when h has
    third and fourth cumulants k3 and k4; fn is applied elementwise to float64 points."""
    z, w = nodes(order)
    std = math.sqrt(max(var, 0.0))
    w = gram_charlier(z, w, var, k3, k4)
    h = (mean + std * z).requires_grad_(True)
    with torch.enable_grad():
        y = fn(h.clone())
        if not isinstance(y, torch.Tensor) or y.shape != h.shape:
            raise ValueError("not an elementwise function")
        (grad,) = torch.autograd.grad(y.sum(), h, allow_unused=True)
    y = y.detach()
    grad = torch.zeros_like(h) if grad is None else grad
    bad = ~(torch.isfinite(y) & torch.isfinite(grad))
    y = torch.nan_to_num(y, nan=0.0, posinf=1e30, neginf=-1e30)
    grad = torch.nan_to_num(grad, nan=0.0, posinf=1e30, neginf=-1e30)
    return Moments(
        mean=float((w * y).sum()),
        second=float((w * y * y).sum()),
        grad_second=float((w * grad * grad).sum()),
        grad_mean=float((w * grad).sum()),
        max_grad=float(grad.abs().max()),
        nonfinite=float((w * bad).sum()),
        third=float((w * y ** 3).sum()),
        fourth=float((w * y ** 4).sum()),
    )


def expectations_2level(fn: Callable[[torch.Tensor], torch.Tensor], mean: float, between: float, within: float,
                        order: int = 32) -> float:
    """E_unit[(E_batch φ)²] when each unit's mean is N(mean, between) and its batch spread N(0, within):
    the part of φ's second moment that is per-unit mean, which batch norm removes."""
    z, w = nodes(order)
    unit_means = mean + math.sqrt(max(between, 0.0)) * z
    points = unit_means[:, None] + math.sqrt(max(within, 0.0)) * z[None, :]
    with torch.no_grad():
        y = torch.nan_to_num(fn(points.clone()), nan=0.0, posinf=1e30, neginf=-1e30)
    per_unit = (y * w[None, :]).sum(dim=1)
    return float((w * per_unit * per_unit).sum())


@dataclass(frozen=True)
class SumMoments:
    """φ2(φ1(h) ± o) over the product of the two quadratures: φ2's moments as `Moments`, and the joint slope."""

    outer: Moments
    joint: float  # E[φ1'(h)² φ2'(s)²]


def sum_moments(inner: Callable[[torch.Tensor], torch.Tensor], root: tuple[float, float, float, float],
                other: tuple[float, float, float, float], outer: Callable[[torch.Tensor], torch.Tensor],
                sign: float = 1.0, order: int = 48) -> SumMoments:
    """Moments of φ2(s) for s = φ1(h) + sign * o, with h and o independent (mean, var, k3, k4 each, read as
    Gram–Charlier densities), evaluated on the two variables rather than on a density fitted to s: a sum
    of a normalised branch and a rectified skip has an atom or a kink that no four moments describe.

    `joint` is E[φ1'(h)² φ2'(s)²]: a skip carries the same unit into the next sum unchanged, so φ2 passes
    gradient mostly where φ1 was on, more than the product of the two mean-square gains says."""
    z, w = nodes(order)
    w1 = gram_charlier(z, w, root[1], root[2], root[3])
    w2 = gram_charlier(z, w, other[1], other[2], other[3])
    h = (root[0] + math.sqrt(max(root[1], 0.0)) * z).requires_grad_(True)
    with torch.enable_grad():
        y = inner(h.clone())
        (d1,) = torch.autograd.grad(y.sum(), h, allow_unused=True)
    o = other[0] + math.sqrt(max(other[1], 0.0)) * z
    s = (y.detach()[:, None] + sign * o[None, :]).reshape(-1).requires_grad_(True)
    with torch.enable_grad():
        out = outer(s.clone())
        (d2,) = torch.autograd.grad(out.sum(), s, allow_unused=True)
    d1 = torch.zeros_like(h) if d1 is None else d1.detach()
    d2 = torch.zeros_like(s) if d2 is None else d2.detach()
    out = out.detach()
    bad = ~(torch.isfinite(out) & torch.isfinite(d2))
    out = torch.nan_to_num(out, nan=0.0, posinf=1e30, neginf=-1e30)
    d2 = torch.nan_to_num(d2, nan=0.0, posinf=1e30, neginf=-1e30)
    joint_w = (w1[:, None] * w2[None, :]).reshape(-1)
    a = torch.nan_to_num(d1 ** 2, nan=0.0, posinf=1e30)[:, None].expand(order, order).reshape(-1)
    moments = Moments(
        mean=float((joint_w * out).sum()),
        second=float((joint_w * out * out).sum()),
        grad_second=float((joint_w * d2 * d2).sum()),
        grad_mean=float((joint_w * d2).sum()),
        max_grad=float(d2.abs().max()),
        nonfinite=float((joint_w * bad).sum()),
        third=float((joint_w * out ** 3).sum()),
        fourth=float((joint_w * out ** 4).sum()),
    )
    return SumMoments(moments, float((joint_w * a * d2 * d2).sum()))
