"""Gaussian expectations of any pointwise function: E[φ(h)], E[φ(h)²] and E[φ'(h)²] for h ~ N(m, s²),
by Gauss–Hermite quadrature, with φ evaluated by the very op the model calls (so every activation in
torch, and any composite of pointwise ops, is covered by one mechanism)."""

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


@lru_cache(maxsize=4)
def nodes(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Hermite nodes and weights for the standard normal (Golub–Welsch: the eigen-decomposition of
    the probabilists' Hermite Jacobi matrix), so that E[f(z)] ≈ sum(w * f(z))."""
    off = torch.sqrt(torch.arange(1, order, dtype=torch.float64))
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    return nodes, vectors[0] ** 2


def expectations(fn: Callable[[torch.Tensor], torch.Tensor], mean: float, var: float, order: int = ORDER) -> Moments:
    """Moments of fn(h) and fn'(h) under h ~ N(mean, var); fn is applied elementwise to float64 points."""
    z, w = nodes(order)
    std = math.sqrt(max(var, 0.0))
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
