"""The rule API. A rule is one class in one file of a rules directory: it declares who it is, reads the
graph and the estimate, and returns findings; it never runs the model, imports another rule or prints."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from gradlint.types import Family, Finding, ProfileEntry, Risk, Severity, SourceLocation

if TYPE_CHECKING:  # torch and the estimator load when a rule checks a model, not when its metadata is read
    from torch import nn

    from gradlint.estimate import Estimate
    from gradlint.graph import ModelGraph, NodeRecord
    from gradlint.probe import ProbeResult
    from gradlint.recorder import ConstructionRecord
    from gradlint.suppress import Suppressor
    from gradlint.updates import Verdict

# The one meaning of severity (README "Severity"; `gradlint explain` prints it), fitted on bench/trainability.py.
SEVERITY_MEANING = ("error = the model will not train even with Adam; warning = it will not train with plain SGD, "
                    "or needs a trick to; info = measurable but harmless")


def __getattr__(name: str) -> Any:
    """`BATCH_NORM_OPS`: every op name the estimator treats as batch norm (aten variants of one layer), read
    from its op table on first use, so that importing the rule API does not import torch."""
    if name == "BATCH_NORM_OPS":
        from gradlint.estimate.normalisation import batch_norm
        from gradlint.estimate.table import TABLE

        value = frozenset(op for op, entry in TABLE.items() if entry.rule is batch_norm)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class RuleContext:
    """Everything a rule may read. `model` is for structure and parameter metadata only."""

    graph: ModelGraph
    estimate: Estimate
    model: nn.Module
    record: ConstructionRecord | None

    def location(self, module: str, node: NodeRecord | None = None) -> SourceLocation | None:
        """Where the user would fix it: the layer's creation line, else the forward line of the op."""
        if module or node is None:
            try:
                sub = self.model.get_submodule(module) if module else self.model
            except AttributeError:
                sub = None
            if sub is not None and self.record is not None:
                site = self.record.site_of(sub)
                if site is not None:
                    return site
            if sub is not None and node is None:
                from gradlint.recorder import class_location

                found = self.graph.location_of_module(module)
                return found or class_location(sub)
        if node is not None and node.location is not None:
            return node.location
        return self.graph.location_of_module(module)


class Rule:
    """Subclass and fill in the class attributes; `check` yields findings via `self.finding(...)`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    risk: ClassVar[Risk] = Risk.OTHER
    summary: ClassVar[str] = ""
    why: ClassVar[str] = ""  # "Why is this bad?"
    example: ClassVar[str] = ""
    fix: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    probe_criterion: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}  # thresholds, overridable in [tool.gradlint.thresholds]
    # What each option bounds, one line each, in the rule's own units: shown with its type and default by
    # `explain` and docs/rules.md. The default's type is the option's type (checked at config load).
    option_docs: ClassVar[dict[str, str]] = {}
    # When a finding's severity differs from `severity` (a larger effect escalates it), in words: shown
    # wherever severities are listed (`gradlint rules`, `explain`, docs/rules.md).
    escalation: ClassVar[str] = ""
    # Fixture targets ("fixtures/cases/failures.py:HeInitSigmoid"): tests assert INVALID ones trigger
    # this rule and VALID ones do not.
    VALID: ClassVar[tuple[str, ...]] = ()
    INVALID: ClassVar[tuple[str, ...]] = ()
    # A vanishing/exploding rule whose findings take their severity from the model's training verdict
    # (gradlint.updates: fitted on bench/trainability.py), predicted at check time, measured at confirm time.
    judged: ClassVar[bool] = False
    # Activations `gradlint explain CODE --plot` draws (their value and derivative) beside the rule's text.
    plot_activations: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.opts = {**self.options, **(options or {})}

    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        raise NotImplementedError

    def check_probe(self, ctx: RuleContext, probe: ProbeResult) -> Iterable[Finding]:
        """Findings that only a measurement can show (NaN at init); they come out confirmed. `probe` is one
        measured forward/backward pass (the probe's, or a training step's): read its `profile`, `layers`,
        `activations`, `nonfinite` and `output_rms`, never anything else. Runs only when it was not skipped."""
        return ()

    def check_measured(self, ctx: RuleContext, measured: Any) -> Iterable[Finding]:
        """Findings one measurement taken during training shows (gradlint.monitor: `measured` is the probe's
        kind of result, for the user's own batch at step `measured.step`). By default what `check_probe` finds;
        a rule that judges a profile, a unit fraction or an update ratio judges the measured one here."""
        return self.check_probe(ctx, measured)

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        """The probe criterion: True/False once measured, None when the probe cannot tell."""
        return None

    def check_suppressions(self, ctx: RuleContext, suppressor: Suppressor,
                           enabled: list[type[Rule]]) -> Iterable[Finding]:
        """Findings about the suppressions themselves (GL003), once every other rule's have been filtered."""
        return ()

    def finding(self, ctx: RuleContext, module: str, message: str, *, node: NodeRecord | None = None,
                fix: str | None = None, severity: Severity | None = None, risk: Risk | None = None,
                evidence: dict[str, Any] | None = None, measured: Any = None) -> Finding:
        """A finding of this rule; a judged rule's takes the training verdict's severity, predicted, or the
        verdict of `measured` (a probe or training measurement) when the finding comes from one."""
        loc = ctx.location(module, node)
        made = Finding(
            rule=self.code, name=self.name, severity=severity or self.severity, risk=risk or self.risk,
            message=message, module=module, path=loc.path if loc else None, line=loc.line if loc else None,
            fix=fix, evidence=evidence or {},
        )
        if self.judged:
            self.ctx = ctx
            judged_severity(self, made, measured)
        return made

    def judge(self, finding: Finding, probe: ProbeResult, confirmed: bool | None) -> bool | None:
        """The end of a judged rule's `confirm`: a confirmed finding takes the measured verdict's severity."""
        if confirmed and self.judged:
            judged_severity(self, finding, probe)
        return confirmed


# -- helpers several rules share -------------------------------------------------------------------


def is_gate(ctx: RuleContext, name: str) -> bool:
    """A saturating op that feeds a product is a gate (GLU, squeeze-excitation, LSTM-style) or part of a
    non-saturating composite (swish): its range is the point, so it is neither a chain link nor saturated."""
    return any(ctx.graph.family(user) is Family.PRODUCT for user in ctx.graph.users(name))


def parent_module(path: str | None) -> str | None:
    """The module that owns `path` ("layers.3" for "layers.3.norm1"): the block a user edits."""
    return path.rsplit(".", 1)[0] if path and "." in path else path


class Unmeasurable(enum.Enum):
    """Why a measured gradient has no logarithm to compare."""

    ZERO = "zero"  # no gradient at all
    NONFINITE = "nonfinite"  # NaN or Inf


def probe_entry(probe: ProbeResult, module: str | None) -> ProfileEntry | None:
    """The probe's measured profile entry for the weighted layer `module`, if it was measured."""
    return next((p for p in probe.profile if p.module == module), None)


def measured_level(probe: ProbeResult, module: str | None) -> float | Unmeasurable | None:
    """The probe's log10 gradient RMS at layer `module`; NONFINITE for NaN/Inf (the whole pass, or there);
    None when it was not measured or got no gradient."""
    if probe.nonfinite:
        return Unmeasurable.NONFINITE
    entry = probe_entry(probe, module)
    if entry is None:
        return None
    return Unmeasurable.NONFINITE if entry.nonfinite else entry.log10_grad_rms


def measured_drift(probe: ProbeResult, first: str | None, last: str | None) -> float | Unmeasurable | None:
    """Measured log10 gradient RMS at layer `first` minus that at layer `last`; ZERO or NONFINITE when
    `first` got no gradient or a NaN/Inf one (no logarithm to compare); None when either was not measured."""
    start, end = probe_entry(probe, first), probe_entry(probe, last)
    if start is None or end is None:
        return None
    if start.zero:
        return Unmeasurable.ZERO
    if start.nonfinite:
        return Unmeasurable.NONFINITE
    if start.log10_grad_rms is None or end.log10_grad_rms is None:
        return None
    return start.log10_grad_rms - end.log10_grad_rms


def training_verdict(ctx: RuleContext, risk: Risk, probe: ProbeResult | None = None) -> Verdict:
    """The model's vanishing or exploding verdict (gradlint.updates): predicted, or measured by `probe`.
    Every vanishing/exploding rule takes its severity from it, so severity means one thing."""
    from gradlint.updates import Updates, exploding_verdict, vanishing_verdict

    updates = Updates(ctx.graph, ctx.estimate, probe)
    return exploding_verdict(updates) if risk is Risk.EXPLODING else vanishing_verdict(updates)


def judged_severity(rule: Rule, finding: Finding, probe: ProbeResult | None = None) -> Severity:
    """Set `finding`'s severity from the training verdict of its risk (measured when `probe` is given) and
    say why in its message; the verdict's numbers go into its evidence. Needs the rule's last context."""
    ctx: RuleContext | None = getattr(rule, "ctx", None)
    if ctx is None or finding.risk not in (Risk.VANISHING, Risk.EXPLODING):
        return finding.severity
    from gradlint.updates import Updates

    if probe is not None and (probe.nonfinite or not Updates(ctx.graph, ctx.estimate, probe).values):
        return finding.severity  # nothing finite measured to judge by: the prediction stands
    verdict = training_verdict(ctx, finding.risk, probe)
    finding.evidence.update(verdict.evidence("measured_" if probe is not None else ""))
    finding.severity = verdict.severity
    if probe is not None:
        said = verdict.describe(finding.risk.value)
        if said:
            finding.message += f" Measured: {said}."
    if probe is None:
        said = verdict.describe(finding.risk.value)
        said = f" ({said})" if said else ""
        finding.message += {
            Severity.INFO: f" Training should cope{said}: within what plain SGD trains through (info).",
            Severity.WARNING: f" Plain SGD will not train it{said}; Adam can (warning).",
            Severity.ERROR: f" Neither plain SGD nor Adam will train it{said} (error).",
        }[verdict.severity]
    return verdict.severity
