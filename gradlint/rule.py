"""The rule API. A rule is one class in one file of a rules directory: it declares who it is, reads the
graph and the estimate, and returns findings; it never runs the model, imports another rule or prints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from gradlint.estimate import Estimate
from gradlint.graph import ModelGraph, NodeRecord
from gradlint.recorder import ConstructionRecord, class_location
from gradlint.types import Finding, Risk, Severity, SourceLocation


@dataclass
class RuleContext:
    """Everything a rule may read. `model` is for structure and parameter metadata only."""

    graph: ModelGraph
    estimate: Estimate
    model: nn.Module
    record: ConstructionRecord | None
    options: dict[str, Any] = field(default_factory=dict)

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
    # Fixture targets ("fixtures/cases/failures.py:HeInitSigmoid"): tests assert INVALID ones trigger
    # this rule and VALID ones do not.
    VALID: ClassVar[tuple[str, ...]] = ()
    INVALID: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.opts = {**self.options, **(options or {})}

    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        raise NotImplementedError

    def check_probe(self, ctx: RuleContext, probe: Any) -> Iterable[Finding]:
        """Findings that only a measurement can show (NaN at init); they come out confirmed."""
        return ()

    def confirm(self, finding: Finding, probe: Any) -> bool | None:
        """The probe criterion: True/False once measured, None when the probe cannot tell."""
        return None

    def finding(self, ctx: RuleContext, module: str, message: str, *, node: NodeRecord | None = None,
                fix: str | None = None, severity: Severity | None = None, risk: Risk | None = None,
                evidence: dict[str, Any] | None = None) -> Finding:
        loc = ctx.location(module, node)
        return Finding(
            rule=self.code, name=self.name, severity=severity or self.severity, risk=risk or self.risk,
            message=message, module=module, path=loc.path if loc else None, line=loc.line if loc else None,
            fix=fix, evidence=evidence or {},
        )
