"""GL001 capture-incomplete: the analysed graph may not be the model the user trains, so every other
finding (and every absence of one) rests on a partial picture."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from gradlint.rule import Rule, RuleContext
from gradlint.types import Finding, Risk, Severity

# What the eager recorder writes when the forward reads a tensor value to decide what to run.
VALUE_BRANCH = "branches on tensor values"


class CaptureIncomplete(Rule):
    code = "GL001"
    name = "capture-incomplete"
    severity = Severity.WARNING
    risk = Risk.OTHER
    summary = "gradlint could not capture the whole forward, or met ops it has no gradient rule for (or whose rule failed)."
    why = (
        "gradlint predicts gradients from the graph it captured. When the forward branches on a tensor value "
        "(`if x.sum() > 0:`), only the branch the example input took is in that graph: layers on the other branch "
        "are never checked, and the estimate for the shared layers ignores the gradient the other branch would "
        "send. Ops without a transfer rule are passed through with their gradient unchanged, which can hide a "
        "vanishing or exploding factor."
    )
    example = """
def forward(self, x):
    h = self.body(x)
    if h.sum() > 0:          # data-dependent control flow
        return self.positive(h)
    return self.negative(h)
"""
    fix = (
        "Make the control flow tensor-valued so the whole forward is traceable, e.g. "
        "`return torch.where(h.sum() > 0, self.positive(h), self.negative(h))`, or branch on a Python "
        "attribute instead of a tensor (`if self.use_positive:`); check the other path with "
        "`--input` examples that take it."
    )
    references = (
        "PyTorch documentation, torch.export: control flow (torch.cond) and data-dependent shapes",
    )
    probe_criterion = (
        "None: the probe runs the same forward on the same example input, so it cannot see the branch "
        "that was not taken."
    )
    options = {}
    VALID = ("fixtures/rules/capture_cases.py:PlainBranchFree", "fixtures/cases/healthy.py:ReLUHe")
    INVALID = ("fixtures/rules/capture_cases.py:ValueBranch",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph = ctx.graph
        if graph.fallback or graph.notes:
            branching = [n for n in graph.notes if VALUE_BRANCH in n]
            where = [r for r in graph.ops() if r.location is not None and any(f" at {r.location};" in n for n in branching)]
            if branching:
                sites = sorted({str(r.location) for r in where}) or ["an unknown line"]
                message = (
                    f"Capture followed one branch only: the forward branches on tensor values at {', '.join(sites)}, "
                    f"so {graph.method} analysed only the branch the example input took. Layers on the untaken "
                    "branch are not checked, and findings for the shared layers assume only this branch sends "
                    "them gradient."
                )
            else:
                message = (f"Capture fell back to {graph.method}, so the analysed graph may differ from the model's "
                           f"full forward: {'; '.join(graph.notes) or 'no further detail'}.")
            yield self.finding(ctx, where[0].module if where else "", message, node=where[0] if where else None,
                               fix=self.fix if branching else None,
                               severity=Severity.WARNING if branching else Severity.INFO,
                               evidence={"method": graph.method, "fallback": graph.fallback, "notes": list(graph.notes)})
        unknown = Counter(ctx.estimate.unknown_ops)
        if unknown:
            listed = ", ".join(f"{op} (x{n})" if n > 1 else op for op, n in sorted(unknown.items()))
            first = next((r for r in graph.ops() if r.op in unknown), None)
            message = (
                f"The estimator has no gradient rule for {listed}: it passes their inputs' statistics through and "
                "assumes they leave the gradient unchanged, so the predicted profile is approximate around "
                f"{first.module or '<root>' if first else '<root>'}. The probe (without --no-probe) measures the real "
                "gradient."
            )
            yield self.finding(ctx, first.module if first else "", message, node=first, severity=Severity.INFO,
                               evidence={"unknown_ops": dict(sorted(unknown.items()))})
        for failure in ctx.estimate.failures:  # a transfer rule that raised: never swallowed silently
            node = graph[failure.node]
            yield self.finding(
                ctx, node.module,
                f"The estimator's rule for {failure.describe()}, so the predicted profile around "
                f"{node.module or '<root>'} is approximate. This is a bug in gradlint; the probe (without --no-probe) "
                "measures the real gradient.", node=node, severity=Severity.INFO,
                evidence={"op": failure.op, "stage": failure.stage, "error": failure.error, "fallback": failure.fallback})
