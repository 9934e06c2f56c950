"""`--format text`: the human view, rendered with rich."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.text import Text

from gradlint.report.bands import Bands, bands, scale
from gradlint.types import Finding, Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _finding(f: Finding) -> Text:
    text = Text()
    where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "<unknown>")
    text.append(where, style="bold")
    text.append(": ")
    text.append(f"{f.rule}", style=_STYLE[f.severity])
    text.append(f" [{f.severity.value}] ", style=_STYLE[f.severity])
    text.append(f.message)
    text.append(f"\n    module: {f.module or '<root>'}", style="dim")
    if f.confirmed is not None:
        text.append("  probe: ", style="dim")
        text.append("confirmed" if f.confirmed else "not confirmed", style="green" if f.confirmed else "magenta")
    if f.related:
        also = ", ".join(f"{r.rule} {r.name} [{r.severity.value}]" for r in f.related)
        text.append(f"\n    same cause: {also}", style="dim")
    if f.fix:
        text.append("\n    fix: ", style="green")
        text.append(f.fix.replace("\n", "\n         "))
    return text


def profile_chart(report: TargetReport, width: int = 40, limit: int = 24, span: tuple[float, float] | None = None,
                  lines: Bands | None = None) -> Text:
    """A compact bar per weighted layer: log10 gradient RMS, estimate (and probe where measured). Bars share
    `span` (the largest |log10| across the run's targets, so targets compare), and a bar is red only past
    a rule's threshold when that rule's finding says so (the chart agrees with the verdict)."""
    text = Text()
    if report.estimate is None:
        return text
    lines = lines or bands()
    probe = {p.module: p.log10_grad_rms for p in report.probe.profile} if report.probe else {}
    rows = report.estimate.profile
    step = max(len(rows) // limit, 1)
    shown = rows[::step]
    if rows and shown[-1] is not rows[-1]:
        shown.append(rows[-1])
    low, high = span or scale([report], lines)
    scale_max = max(abs(low), abs(high), 1e-9)
    scale_by = width / scale_max
    low_red, high_red = lines.crossed(report, lines.vanish), lines.crossed(report, lines.explode)
    name_width = min(max((len(r.module) for r in shown), default=8), 28)
    text.append(f"  gradient profile (log10 RMS, estimate | probe), {len(rows)} weighted layers; "
                f"{lines.vanish.rule} below {lines.vanish.value:+.2f}, {lines.explode.rule} above {lines.explode.value:+.2f}\n", style="bold")
    for row in shown:
        name = row.module if len(row.module) <= name_width else "…" + row.module[-name_width + 1:]
        text.append(f"  {name:<{name_width}} {_fmt(row.log10_grad_rms):>6} | {_fmt(probe.get(row.module)):>6} ")
        if row.log10_grad_rms is None:  # no gradient at all, or NaN/Inf: say so rather than draw nothing
            text.append("NaN/Inf" if row.nonfinite else "no gradient", style="bold red")
        else:
            value = row.log10_grad_rms
            bar = "█" * max(int(round(abs(value) * scale_by)), 0)
            past = (value < lines.vanish.value and low_red) or (value > lines.explode.value and high_red)
            style = "red" if past else ("yellow" if value < lines.vanish.value or value > lines.explode.value else "green")
            text.append(("-" if value < 0 else "+") + bar, style=style)
        text.append("\n")
    return text


def render(targets: list[TargetReport], console: Console, show_profile: bool = True, quiet: bool = False,
           lines: Bands | None = None) -> None:
    """Each target's findings, the worst target's profile chart and a summary line; with `quiet`, the
    findings and target errors only (ruff's -q)."""
    for t in targets:
        if quiet:
            if t.error is not None:
                console.print(Text(f"{t.target}: ") + Text(f"error ({t.error.kind.value}): ", style="bold red") + Text(t.error.message))
            for f in t.findings:
                console.print(_finding(f))
            continue
        console.print(Text(t.target, style="bold underline"))
        if t.error is not None:
            console.print(Text(f"  error ({t.error.kind.value}): ", style="bold red") + Text(t.error.message))
            continue
        graph = t.graph
        if graph is not None and t.estimate is not None:
            probe = t.probe
            probe_text = (
                f"probe {_fmt(probe.log10_grad_ratio)}" if probe and probe.skipped is None
                else f"probe skipped: {probe.skipped}" if probe else "probe off"
            )
            console.print(Text(
                f"  {len(graph.weighted_layers)} weighted layers, {t.parameters:,} parameters, captured by {graph.method}; "
                f"first-layer gradient log10 ratio: estimate {_fmt(t.estimate.log10_grad_ratio)}, {probe_text}",
                style="dim",
            ))
            for note in [*t.notes, *(probe.notes if probe else [])]:
                console.print(Text(f"  note: {note}", style="dim"))
        for f in t.findings:
            console.print(Group(_finding(f)))
        if not t.findings:
            console.print(Text("  no findings", style="green"))
    if quiet:
        return
    worst = _worst(targets)
    if show_profile and worst is not None:
        lines = lines or bands()
        console.print(Text(f"\n{worst.target}", style="bold"))
        console.print(profile_chart(worst, span=scale(targets, lines), lines=lines))
    console.print(summary_line(targets))


def _worst(targets: list[TargetReport]) -> TargetReport | None:
    scored = [(abs(t.estimate.log10_grad_ratio or 0.0), t) for t in targets if t.ok and t.estimate and t.estimate.profile]
    return max(scored, key=lambda s: s[0])[1] if scored else None


def summary_line(targets: list[TargetReport]) -> Text:
    counts = {s: sum(1 for t in targets for f in t.findings if f.severity is s) for s in Severity}
    errors = sum(1 for t in targets if not t.ok)
    text = Text("\n")
    text.append(f"Checked {len(targets)} target{'s' if len(targets) != 1 else ''}: ", style="bold")
    text.append(f"{counts[Severity.ERROR]} error{'s' if counts[Severity.ERROR] != 1 else ''}, ", style=_STYLE[Severity.ERROR] if counts[Severity.ERROR] else "")
    text.append(f"{counts[Severity.WARNING]} warning{'s' if counts[Severity.WARNING] != 1 else ''}, ", style=_STYLE[Severity.WARNING] if counts[Severity.WARNING] else "")
    text.append(f"{counts[Severity.INFO]} info")
    if errors:
        text.append(f"; {errors} target{'s' if errors != 1 else ''} could not be analysed", style="bold red")
    return text
