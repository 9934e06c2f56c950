"""The probe can discover (issue 13): where the estimate is unsure, the measured profile is judged too.

The static rules judge the estimate; the probe normally only confirms what they proposed. When the estimator
approximated part of the graph (an op it has no rule for, a rule that raised) or the probe disagrees with the
estimate by more than `DISAGREEMENT` decades at some weighted layer, the rules that judge a measured profile
(`Rule.check_measured`: vanishing, exploding, dead units, saturation) read the probe's measurement as they read
a training step's, and what they find is reported as coming from the measurement."""

from __future__ import annotations

from gradlint.estimate import Estimate
from gradlint.probe import ProbeResult
from gradlint.rule import Rule, RuleContext
from gradlint.types import Finding, Risk, Severity

DISAGREEMENT = 1.0  # decades between estimate and probe at one layer beyond which the estimate is not trusted
JUDGING = (Risk.VANISHING, Risk.EXPLODING, Risk.DEAD_UNITS)


def unsure(est: Estimate, probe: ProbeResult) -> str | None:
    """Why the estimate cannot stand alone here, in words; None when it can."""
    approximated = sorted(set(est.unknown_ops) | {f.op for f in est.failures})
    if approximated:
        return f"the estimator approximated {', '.join(approximated[:3])}"
    measured = {p.module: p for p in probe.profile}
    worst: tuple[float, str] | None = None
    for entry in est.profile:
        got = measured.get(entry.module)
        if got is None or got.nonfinite or entry.nonfinite:
            continue
        if entry.zero != got.zero:  # one side finds no gradient at all where the other finds one
            return f"the estimate and the probe disagree on whether {entry.module} receives any gradient"
        if entry.log10_grad_rms is None or got.log10_grad_rms is None:
            continue
        gap = abs(entry.log10_grad_rms - got.log10_grad_rms)
        if gap > DISAGREEMENT and (worst is None or gap > worst[0]):
            worst = (gap, entry.module)
    if worst is not None:
        return f"the probe measured {worst[1]} {worst[0]:.1f} decades away from the estimate"
    return None


def discovered(rules: list[Rule], ctx: RuleContext, probe: ProbeResult, known: list[Finding]) -> list[tuple[Rule, Finding]]:
    """Findings the measured profile shows that no static finding already names (same rule, same module),
    at warning or above, confirmed, with the reason the measurement was judged in their message."""
    reason = unsure(ctx.estimate, probe)
    if reason is None:
        return []
    seen = {(f.rule, f.module) for f in known}
    found: list[tuple[Rule, Finding]] = []
    for rule in rules:
        if (rule.risk not in JUDGING or type(rule).check_measured is Rule.check_measured
                or type(rule).check_probe is not Rule.check_probe):  # that one already judged the probe
            continue
        try:
            measured = list(rule.check_measured(ctx, probe))
        except Exception as exc:  # a rule that cannot read this measurement leaves the others' findings
            ctx.graph.notes.append(f"rule {rule.code} could not judge the probe's measurement: {type(exc).__name__}: {exc}")
            continue
        for finding in measured:
            if (finding.rule, finding.module) in seen or finding.severity.rank < Severity.WARNING.rank:
                continue
            seen.add((finding.rule, finding.module))
            finding.confirmed = True
            finding.evidence["from_measurement"] = reason
            finding.message += f" (Found in the probe's measurement, not the estimate: {reason}.)"
            found.append((rule, finding))
    return found
