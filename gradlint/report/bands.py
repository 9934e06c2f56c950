"""Where the charts draw their danger lines: read from the rules that judge a gradient profile (their
options, overridden by `[tool.gradlint.thresholds]`), never repeated as constants, and shaded only
when a finding says the target crossed them, so a chart never contradicts the verdict next to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradlint.types import Risk, Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport


@dataclass(frozen=True)
class Line:
    """One threshold: its value in log10 (gradient RMS relative to the output gradient) and its rule."""

    value: float
    rule: str  # "GL103"
    option: str  # "min_log10"
    risk: Risk


@dataclass(frozen=True)
class Bands:
    vanish: Line
    explode: Line

    def crossed(self, report: TargetReport, line: Line) -> bool:
        """The target has a finding of that line's risk at warning or above: its band is shaded."""
        return any(f.risk is line.risk and f.severity.rank >= Severity.WARNING.rank for f in report.findings)


def to_data(lines: Bands) -> dict[str, Any]:
    return {"vanish": vars(lines.vanish) | {"risk": lines.vanish.risk.value},
            "explode": vars(lines.explode) | {"risk": lines.explode.risk.value}}


def from_data(data: dict[str, Any]) -> Bands:
    """The lines a run drew, as the cache keeps them (so an answer from the cache needs no rule set)."""
    def line(d: dict[str, Any]) -> Line:
        return Line(float(d["value"]), str(d["rule"]), str(d["option"]), Risk(d["risk"]))
    return Bands(line(data["vanish"]), line(data["explode"]))


def bands(rules: Sequence[Any] | None = None, thresholds: dict[str, dict[str, Any]] | None = None) -> Bands:
    """The vanishing line is the `min_log10` of the vanishing-risk rule that has one (GL103), the exploding
    line the `max_log10` of the exploding-risk rule that has one (GL201), each as configured."""
    from gradlint.registry import all_rules

    configured = thresholds or {}
    found: dict[str, Line] = {}
    for rule in [*(rules or ()), *all_rules()]:  # the run's rules first; the built-in ones when those lack a line
        for option, risk in (("min_log10", Risk.VANISHING), ("max_log10", Risk.EXPLODING)):
            if option in rule.options and rule.risk is risk and option not in found:
                own = configured.get(rule.code) or configured.get(rule.name) or {}
                found[option] = Line(float(own.get(option, rule.options[option])), rule.code, option, risk)
    return Bands(found["min_log10"], found["max_log10"])


def scale(targets: Sequence[TargetReport], lines: Bands) -> tuple[float, float]:
    """One log10 range for every target's chart (the lines always in view), so a healthy model and a
    broken one are drawn to the same scale."""
    values = [lines.vanish.value - 1.0, lines.explode.value + 0.65]
    for t in targets:
        if t.estimate is not None:
            values += [p.log10_grad_rms for p in t.estimate.profile if p.log10_grad_rms is not None]
        if t.probe is not None and t.probe.skipped is None:
            values += [p.log10_grad_rms for p in t.probe.profile if p.log10_grad_rms is not None]
    return min(values) - 0.25, max(values) + 0.25
