"""Pictures of a monitored training run (gradlint.monitoring): the measured gradient profile over steps, as
an SVG heat map (layers by steps, on the contract's log10 scale) with each finding marked at the step it
appeared, and as a compact terminal summary. Both are views of the report's `monitor` section."""

from __future__ import annotations

from html import escape
from typing import Any

from gradlint.report.bands import bands
from gradlint.report.svg import MINUS
from gradlint.types import Finding

MAX_ROWS, MAX_COLUMNS = 64, 160
CELL_H, LEFT, TOP, RIGHT = 12, 150, 34, 60
_SPARK = "▁▂▃▄▅▆▇█"


def _grid(report: Any, rows: int, columns: int) -> tuple[list[str], list[int], list[list[float | str | None]]]:
    """(layer names, step of each column, value per row and column): layers thinned to `rows`, steps binned
    to `columns` (each column shows its last measured step). A value is a float, "zero", "nonfinite" or None
    (the layer was not measured then)."""
    measures = report.timeline.measures
    layers: list[str] = []
    for m in measures:
        for entry in m.profile:
            if entry.module not in layers:
                layers.append(entry.module)
    stride = max(-(-len(layers) // rows), 1)
    shown = layers[::stride]
    if layers and shown[-1] != layers[-1]:
        shown.append(layers[-1])
    per = max(-(-len(measures) // columns), 1)
    picked = [measures[min(i + per - 1, len(measures) - 1)] for i in range(0, len(measures), per)]
    grid: list[list[float | str | None]] = []
    for name in shown:
        row: list[float | str | None] = []
        for m in picked:
            entry = next((e for e in m.profile if e.module == name), None)
            if entry is None:
                row.append(None)
            elif entry.log10_grad_rms is not None:
                row.append(entry.log10_grad_rms)
            else:
                row.append("nonfinite" if entry.nonfinite else "zero")
        grid.append(row)
    return shown, [m.step for m in picked], grid


def _colour(value: float | str | None, low: float, high: float) -> str:
    if value is None:
        return "#ffffff"
    if value == "zero":
        return "#9e9e9e"
    if value == "nonfinite" or isinstance(value, str):
        return "#000000"
    if value < 0:
        t, (r, g, b) = min(value / low, 1.0) if low < 0 else 1.0, (31, 95, 191)
    else:
        t, (r, g, b) = min(value / high, 1.0) if high > 0 else 1.0, (192, 57, 43)
    def mix(c: int) -> int:  # white to the colour
        return round(255 + (c - 255) * t)

    return f"#{mix(r):02x}{mix(g):02x}{mix(b):02x}"


def heatmap_svg(report: Any) -> str:
    """Layers (rows, first executed on top) by measured steps (columns); blue below 0, red above, each at full
    strength at the rules' vanishing / exploding line; grey: no gradient; black: NaN/Inf. A finding is a
    vertical mark at its onset step, labelled with its code."""
    lines = bands()
    low, high = lines.vanish.value, lines.explode.value
    names, steps, grid = _grid(report, MAX_ROWS, MAX_COLUMNS)
    if not names or not steps:
        return ""
    cell_w = max(min(600 // len(steps), 24), 3)
    width = LEFT + cell_w * len(steps) + RIGHT
    height = TOP + CELL_H * len(names) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="ui-monospace,monospace" font-size="10">']
    for i, (name, row) in enumerate(zip(names, grid)):
        y = TOP + i * CELL_H
        parts.append(f'<text x="{LEFT - 4}" y="{y + CELL_H - 3}" text-anchor="end">{escape(name)}</text>')
        for j, value in enumerate(row):
            shown = f"{value:+.2f}" if isinstance(value, float) else (value or "not measured")
            parts.append(f'<rect x="{LEFT + j * cell_w}" y="{y}" width="{cell_w}" height="{CELL_H}" '
                         f'fill="{_colour(value, low, high)}"><title>{escape(name)}, step {steps[j]}: {escape(str(shown))}</title></rect>')
    bottom = TOP + CELL_H * len(names)
    ticks = sorted({0, len(steps) // 2, len(steps) - 1})
    for j in ticks:
        parts.append(f'<text x="{LEFT + j * cell_w + cell_w / 2}" y="{bottom + 12}" text-anchor="middle">{steps[j]}</text>')
    parts.append(f'<text x="{LEFT}" y="{bottom + 26}">training step</text>')
    for k, finding in enumerate(_onsets(report)):
        column = next((j for j, s in enumerate(steps) if s >= (finding.step or 0)), len(steps) - 1)
        x = LEFT + column * cell_w + cell_w / 2
        colour = {"error": "#b00020", "warning": "#a15c00"}.get(finding.severity.value, "#1f5fbf")
        parts.append(f'<line x1="{x}" y1="{TOP - 4}" x2="{x}" y2="{bottom}" stroke="{colour}" stroke-width="1.5" '
                     f'stroke-dasharray="3,2"><title>{escape(finding.rule)} at step {finding.step}: {escape(finding.message)}</title></line>')
        parts.append(f'<text x="{x + 2}" y="{TOP - 6 - 10 * (k % 2)}" fill="{colour}">{escape(finding.rule)}@{finding.step}</text>')
        if finding.module in names:
            row_y = TOP + names.index(finding.module) * CELL_H + CELL_H / 2
            parts.append(f'<circle cx="{x}" cy="{row_y}" r="4" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def _onsets(report: Any) -> list[Finding]:
    found = [m for f in report.findings for m in f.members() if m.step is not None]
    return sorted(found, key=lambda f: (f.step or 0, f.rule))


def timeline_html(report: Any) -> str:
    """The HTML report's section for a monitored run; empty for a `gradlint check` report."""
    timeline = getattr(report, "timeline", None)
    if timeline is None:
        return ""
    lines = bands()
    low = f"{lines.vanish.value:.3g}".replace("-", MINUS)
    high = f"{lines.explode.value:.3g}"
    svg = heatmap_svg(report)
    head = (f"<h3>Training monitor</h3><p>{timeline.steps} steps, measured every {timeline.every} "
            f"({len(timeline.measures)} measurements shown), {timeline.seconds:.2f} s spent measuring.</p>")
    if not svg:
        return head + "<p>No step was measured.</p>"
    return (head + '<p class="legend">log10 gradient RMS relative to the output gradient: '
            f'<span style="color:#1f5fbf">blue</span> below 0, full at 10<sup>{low}</sup> ({escape(lines.vanish.rule)}); '
            f'<span style="color:#c0392b">red</span> above, full at 10<sup>{high}</sup> ({escape(lines.explode.rule)}); '
            "grey: no gradient; black: NaN/Inf; dashed lines: findings at the step they appeared.</p>" + svg)


def summary_text(report: Any, rows: int = 12, columns: int = 32) -> str:
    """A few lines for the terminal: each (thinned) layer's measured profile over steps as a sparkline on one
    shared scale, with its first and last value, then the findings' onsets."""
    timeline = getattr(report, "timeline", None)
    if timeline is None:
        return ""
    out = [f"\n  training monitor: {timeline.steps} steps, measured every {timeline.every} "
           f"({len(timeline.measures)} measurements), {timeline.seconds:.2f} s measuring"]
    names, steps, grid = _grid(report, rows, columns)
    values = [v for row in grid for v in row if isinstance(v, float)]
    if names and steps:
        lo, hi = min(values, default=0.0), max(values, default=0.0)
        span = max(hi - lo, 1e-9)
        width = min(max(len(n) for n in names), 28)
        out.append(f"  log10 gradient RMS over steps {steps[0]}..{steps[-1]} (sparkline from {lo:+.1f} to {hi:+.1f}): first, last")
        for name, row in zip(names, grid):
            spark = "".join(" " if v is None else "·" if v == "zero" else "!" if isinstance(v, str)
                            else _SPARK[min(int((v - lo) / span * len(_SPARK)), len(_SPARK) - 1)] for v in row)
            ends = [v for v in row if v is not None]
            first = _fmt(ends[0]) if ends else "n/a"
            last = _fmt(ends[-1]) if ends else "n/a"
            shown = name if len(name) <= width else "…" + name[-width + 1:]
            out.append(f"  {shown:<{width}} {spark}  {first:>7} {last:>7}")
    onsets = _onsets(report)
    if onsets:
        out.append("  onsets: " + "; ".join(f"step {f.step} {f.rule} [{f.severity.value}] {f.module or '<root>'}" for f in onsets))
    else:
        out.append("  no findings during training")
    return "\n".join(out) + "\n"


def _fmt(value: float | str | None) -> str:
    if isinstance(value, float):
        return f"{value:+.2f}"
    return "NaN/Inf" if value == "nonfinite" else "zero" if value == "zero" else "n/a"
