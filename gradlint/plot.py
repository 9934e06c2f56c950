"""Pictures of activation functions for `gradlint explain --plot`: φ and its derivative φ', the factor
every backward pass multiplies by. Derivatives come from torch autograd, so the picture shows exactly
what training would see (including the subgradient torch picks at a kink)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.text import Text

from gradlint.types import ErrorKind, GradlintError

LOW, HIGH = -6.0, 6.0
FINE = 1201  # grid step 0.01 over [LOW, HIGH], so x = 0 is a sample
WIDTH, HEIGHT = 60, 15  # terminal plot size in characters; each braille character holds 2 x 4 dots
PHI_STYLE, GRAD_STYLE = "cyan", "magenta"
# Braille dot bits by (row within the cell, column within the cell).
_BRAILLE = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
INSTALL_HINT = (
    'Writing a plot image needs matplotlib, an optional extra: pip install "gradlint[plot]" '
    "(or run `gradlint explain RULE --plot` without a file to draw in the terminal)."
)


@dataclass(frozen=True)
class Curve:
    """φ and φ' sampled on an even grid of x."""

    name: str
    x: list[float]
    phi: list[float]
    grad: list[float]

    @property
    def peak(self) -> tuple[float, float]:
        """(x, φ'(x)) where |φ'| is largest (first such x): the best gain this activation can pass back."""
        i = max(range(len(self.grad)), key=lambda k: abs(self.grad[k]))
        return self.x[i], self.grad[i]

    def describe_peak(self) -> str:
        """E.g. "max 0.25 at x = 0.00", or the range of x where a flat maximum holds (ReLU, hardtanh)."""
        at, peak = self.peak
        top = [x for x, g in zip(self.x, self.grad) if abs(g) >= abs(peak) * (1 - 1e-9)]
        where = f"at x = {_num(at)}" if len(top) == 1 else f"for x in [{_num(top[0])}, {_num(top[-1])}]"
        return f"max {peak:.3g} {where}"


def _num(x: float) -> str:
    """Two decimals, without the "-0.00" a grid point at 0 - 1e-17 would print."""
    return f"{round(x, 2) + 0.0:.2f}"


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch function called `name` (torch.sigmoid, torch.nn.functional.gelu, ...)."""
    fn = getattr(torch, name, None) or getattr(F, name, None)
    if not callable(fn):
        raise GradlintError(ErrorKind.INTERNAL, f"No torch activation named {name!r} to plot.")
    return fn  # type: ignore[no-any-return]


def sample(name: str, points: int, low: float = LOW, high: float = HIGH) -> Curve:
    """φ on `points` evenly spaced x in [low, high] and φ' by one backward pass."""
    x = torch.linspace(low, high, points, dtype=torch.float64, requires_grad=True)
    y = activation(name)(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return Curve(name, x.detach().tolist(), y.detach().tolist(), grad.tolist())


def _labels(fine: Curve) -> tuple[str, str]:
    """Legend entries; the peak is read off a fine grid, which contains x = 0."""
    return f"φ = {fine.name}(x)", f"φ' = {fine.name}'(x), {fine.describe_peak()}"


def terminal(names: Sequence[str], width: int = WIDTH, height: int = HEIGHT) -> Text:
    """One braille panel per activation: `height` rows of `width` characters, y range on the left,
    x range below, then the two curves' labels in their colours."""
    out = Text()
    for name in names:
        curve = sample(name, 2 * width)
        lo = min(*curve.phi, *curve.grad)
        hi = max(*curve.phi, *curve.grad)
        hi = hi if hi > lo else lo + 1.0
        rows = 4 * height
        cells: dict[tuple[int, int], int] = {}
        owner: dict[tuple[int, int], str] = {}
        for values, style in ((curve.phi, PHI_STYLE), (curve.grad, GRAD_STYLE)):
            dots = [round((hi - v) / (hi - lo) * (rows - 1)) for v in values]
            for col, dot in enumerate(dots):
                prev = dots[col - 1] if col else dot
                for row in range(min(dot, prev), max(dot, prev) + 1):  # join steep segments vertically
                    cell = (row // 4, col // 2)
                    cells[cell] = cells.get(cell, 0) | _BRAILLE[row % 4][col % 2]
                    owner[cell] = style
        out.append(f"{name} over [{LOW:g}, {HIGH:g}]\n", style="bold")
        for r in range(height):
            tick = f"{hi:.2f}" if r == 0 else f"{lo:.2f}" if r == height - 1 else ""
            out.append(f"{tick:>7} │")
            for c in range(width):
                bits = cells.get((r, c), 0)
                out.append(chr(0x2800 + bits), style=owner.get((r, c)) if bits else None)
            out.append("\n")
        out.append(" " * 8 + "└" + "─" * width + "\n")
        out.append(" " * 8 + f"{LOW:<{width // 2}g}{HIGH:>{width - width // 2}g}\n")
        phi_label, grad_label = _labels(sample(name, FINE))
        out.append(" " * 8 + "━ " + phi_label + "\n", style=PHI_STYLE)
        out.append(" " * 8 + "━ " + grad_label + "\n", style=GRAD_STYLE)
    return out


def write_png(names: Sequence[str], path: str | Path, title: str) -> None:
    """One matplotlib panel per activation: φ solid, φ' dashed, the peak of φ' marked and labelled."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GradlintError(ErrorKind.LOAD, INSTALL_HINT) from None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        curve = sample(name, FINE)
        phi_label, grad_label = _labels(curve)
        at, peak = curve.peak
        ax.plot(curve.x, curve.phi, color="tab:blue", label=phi_label)
        ax.plot(curve.x, curve.grad, color="tab:red", linestyle="--", label=grad_label.split(",")[0])
        ax.axhline(peak, color="tab:red", linewidth=0.6, linestyle=":")
        ax.plot([at], [peak], "o", color="tab:red")
        ax.annotate(f"max φ' = {peak:.3g}", (at, peak), textcoords="offset points", xytext=(8, 6), color="tab:red")
        ax.axhline(0, color="0.6", linewidth=0.5)
        ax.set_xlim(LOW, HIGH)
        ax.margins(y=0.15)  # headroom for the peak's label
        ax.set_xlabel("x")
        ax.set_title(name)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

