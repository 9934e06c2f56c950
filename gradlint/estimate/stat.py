"""The per-node state the estimator carries forward."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Second-order statistics of one tensor at initialisation, per element.

    `q` is E[x²] over everything; `mean` the pooled mean; `v` the variance *within* a unit across the
    batch (and spatial positions). `q - mean² - v` is the spread of per-unit means, which batch
    normalisation removes and which makes BN-ReLU stacks explode (Yang et al. 2019).

    `k3` and `k4` are the third and fourth cumulants of the element distribution: zero for the Gaussian
    that mean field assumes. A residual sum of a normalised branch and a rectified skip is skewed (a ReLU
    after it keeps more variance than after a Gaussian of the same moments), so sums and pointwise ops
    carry them; every other rule leaves them at zero (after a weighted layer the CLT makes the sum Gaussian)."""

    mean: float
    q: float
    v: float
    k3: float = 0.0
    k4: float = 0.0

    @property
    def var(self) -> float:
        return max(self.q - self.mean * self.mean, 0.0)

    @property
    def between(self) -> float:
        return max(self.q - self.mean * self.mean - self.v, 0.0)

    def scaled(self, factor: float) -> Stat:
        """Statistics of `factor * x`."""
        f2 = factor * factor
        return Stat(self.mean * factor, self.q * f2, self.v * f2, self.k3 * f2 * factor, self.k4 * f2 * f2)


ZERO = Stat(0.0, 0.0, 0.0)
UNIT = Stat(0.0, 1.0, 1.0)
