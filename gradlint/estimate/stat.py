"""The per-node state the estimator carries forward."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Second-order statistics of one tensor at initialisation, per element.

    `q` is E[x²] over everything; `mean` the pooled mean; `v` the variance *within* a unit across the
    batch (and spatial positions). `q - mean² - v` is the spread of per-unit means, which batch
    normalisation removes and which makes BN-ReLU stacks explode (Yang et al. 2019)."""

    mean: float
    q: float
    v: float

    @property
    def var(self) -> float:
        return max(self.q - self.mean * self.mean, 0.0)

    @property
    def between(self) -> float:
        return max(self.q - self.mean * self.mean - self.v, 0.0)

    def scaled(self, factor: float) -> Stat:
        """Statistics of `factor * x`."""
        return Stat(self.mean * factor, self.q * factor * factor, self.v * factor * factor)


ZERO = Stat(0.0, 0.0, 0.0)
UNIT = Stat(0.0, 1.0, 1.0)
