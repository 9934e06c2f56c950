"""The gradient profile as an inline SVG chart: no scripts, fonts or external styles, so the HTML
report that embeds it is one self-contained file."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from gradlint.types import ProfileEntry

if TYPE_CHECKING:
    from gradlint.report.bands import Bands

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 120
MAX_LABELS = 48
MINUS = "\u2212"


def _value(entry: ProfileEntry, low: float, high: float) -> float:
    """The plotted value: a zero gradient sits on the floor, a non-finite one on the ceiling."""
    if entry.log10_grad_rms is not None:
        return min(max(entry.log10_grad_rms, low), high)
    return high if entry.nonfinite else low


def _describe(entry: ProfileEntry) -> str:
    if entry.log10_grad_rms is not None:
        return f"{entry.log10_grad_rms:+.2f}"
    return "non-finite" if entry.nonfinite else "zero"


def power(exponent: float | int, size: int = 8) -> str:
    """10 with a raised exponent, as SVG text (no `1e-3`, no `10^-3`)."""
    shown = escape((f"{exponent:g}" if isinstance(exponent, int) else f"{exponent:.3g}").replace("-", MINUS))
    return f'10<tspan dy="-5" font-size="{size}">{shown}</tspan><tspan dy="5"> </tspan>'


def profile_svg(estimate: list[ProfileEntry], probe: list[ProfileEntry], lines: Bands | None = None,
                shade: tuple[bool, bool] | None = None, span: tuple[float, float] | None = None) -> str:
    """Estimate as a polyline (one point per weighted layer), probe as points, log10 scale, with the rules'
    vanishing and exploding thresholds drawn where the rules judge (`lines`) and their bands shaded only
    where `shade` says a finding crossed them; `span` is the (low, high) shared by every chart of a report."""
    if lines is None:
        from gradlint.report.bands import bands

        lines = bands()
    vanish, explode = lines.vanish.value, lines.explode.value
    shade_low, shade_high = shade if shade is not None else (True, True)
    values = [e.log10_grad_rms for e in (*estimate, *probe) if e.log10_grad_rms is not None]
    low, high = span if span is not None else (min([vanish - 1.0, *values]) - 0.25, max([explode + 0.65, *values]) + 0.25)
    modules = [e.module for e in estimate]
    index = {m: i for i, m in enumerate(modules)}
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(modules) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(modules) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="profile" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="gradient profile">',
    ]
    if shade_low:
        parts.append(f'<rect class="band vanishing" x="{LEFT}" y="{y(vanish):.1f}" width="{plot_w}" height="{y(low) - y(vanish):.1f}" fill="#fde2e2"/>')
    if shade_high:
        parts.append(f'<rect class="band exploding" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{y(explode) - TOP:.1f}" fill="#fde9d0"/>')
    for line, colour in ((lines.vanish, "#c0392b"), (lines.explode, "#a15c00")):
        parts.append(f'<line class="threshold {line.risk.value}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(line.value):.1f}" '
                     f'y2="{y(line.value):.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
                     f'<text class="threshold-label" x="{WIDTH - RIGHT - 4}" y="{y(line.value) - 4:.1f}" text-anchor="end" '
                     f'font-size="10" fill="{colour}">{escape(line.rule)} {escape(line.option)} = {power(round(line.value, 2))}</text>')
    for tick in range(int(low), int(high) + 1):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{power(tick)}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" '
                 'text-anchor="middle">gradient RMS / output gradient RMS</text>')
    points = " ".join(f"{x(i):.1f},{y(_value(e, low, high)):.1f}" for i, e in enumerate(estimate))
    parts.append(f'<polyline class="estimate" points="{points}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    for i, e in enumerate(estimate):
        value = e.log10_grad_rms
        unjudged = value is not None and ((value < vanish and not shade_low) or (value > explode and not shade_high))
        note = " (past the line, but the rule does not judge this layer alone: no finding)" if unjudged else ""
        parts.append(f'<circle class="estimate-point{" unjudged" if unjudged else ""}" cx="{x(i):.1f}" cy="{y(_value(e, low, high)):.1f}" '
                     f'r="2" fill="{"#fff" if unjudged else "#1f5fbf"}" stroke="#1f5fbf">'
                     f'<title>{escape(e.module)} ({escape(e.kind)}): estimate {_describe(e)}{note}</title></circle>')
    for e in probe:
        if e.module in index:
            parts.append(f'<circle class="probe" cx="{x(index[e.module]):.1f}" cy="{y(_value(e, low, high)):.1f}" r="4" '
                         f'fill="none" stroke="#c0392b" stroke-width="1.5"><title>{escape(e.module)}: probe {_describe(e)}</title></circle>')
    every = max(-(-len(modules) // MAX_LABELS), 1)
    base = HEIGHT - BOTTOM + 10
    for i, module in enumerate(modules):
        if i % every == 0 or i == len(modules) - 1:
            parts.append(f'<text class="layer" x="{x(i):.1f}" y="{base}" font-size="10" text-anchor="end" '
                         f'transform="rotate(-60 {x(i):.1f} {base})">{escape(module or "<root>")}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
