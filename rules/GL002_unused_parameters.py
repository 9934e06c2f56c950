"""GL002 unused-parameters: parameters the loss never reaches, and layers the optimizer never sees."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from gradlint.graph import NodeKind
from gradlint.rule import Rule, RuleContext
from gradlint.sources import display_path, is_user_file
from gradlint.types import Finding, Risk, Severity, SourceLocation

if TYPE_CHECKING:
    from torch import nn

    from gradlint.probe import ProbeResult


@lru_cache(maxsize=1)
def _internal() -> frozenset[str]:
    """Attributes every nn.Module has; they hold the registered children, parameters and hooks."""
    from torch import nn

    return frozenset(vars(nn.Module()))


class UnusedParameters(Rule):
    code = "GL002"
    name = "unused-parameters"
    severity = Severity.WARNING
    risk = Risk.OTHER
    summary = "Registered parameters the output does not depend on, or layers kept in plain lists/dicts (never registered)."
    why = (
        "A registered parameter the forward never uses gets no gradient: it stays at its initial value, wastes "
        "memory and optimizer state, and breaks DistributedDataParallel unless `find_unused_parameters=True`. "
        "The opposite mistake is worse: layers kept in a Python list, tuple or dict are called in forward but "
        "are not registered, so `parameters()`, `state_dict()`, `.to(device)` and the optimizer never see "
        "them. They are never trained and are not saved."
    )
    example = """
self.unused = nn.Linear(128, 128)                          # registered, never called
self.heads = [nn.Linear(128, 10) for _ in range(2)]        # called, never registered
"""
    fix = (
        "Register containers of layers with `nn.ModuleList([...])` / `nn.ModuleDict({...})` instead of "
        "`[...]` / `{...}`; delete layers the forward does not call (or call them)."
    )
    references = (
        "PyTorch documentation, torch.nn.ModuleList and torch.nn.ModuleDict",
        "PyTorch documentation, DistributedDataParallel: find_unused_parameters",
    )
    probe_criterion = (
        "Confirmed when the probe measured the layer that owns the unused parameters and its weight gradient "
        "is zero or missing; refuted when another tensor the forward returns (an auxiliary head's output) depends on "
        "the parameters; otherwise (the layer never ran, or the layer is unregistered) the probe cannot tell."
    )
    options = {}
    VALID = ("fixtures/rules/unused_cases.py:RegisteredHeads", "fixtures/cases/healthy.py:ReLUHe",
             "fixtures/rules/unused_cases.py:AuxiliaryHeadNet")
    INVALID = ("fixtures/cases/failures.py:UnusedParams", "fixtures/rules/unused_cases.py:UnregisteredDictHeads")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        yield from self._unused(ctx)
        yield from self._unregistered(ctx)

    def _unused(self, ctx: RuleContext) -> Iterator[Finding]:
        graph = ctx.graph
        live = {r.param for r in graph if r.kind is NodeKind.PARAM and r.name in graph.live and r.param}
        names: dict[int, list[str]] = {}
        tensors: dict[int, nn.Parameter] = {}
        for name, p in ctx.model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), []).append(name)
            tensors[id(p)] = p
        by_owner: dict[str, list[str]] = {}
        for key, aliases in names.items():
            if not tensors[key].requires_grad or any(a in live for a in aliases):
                continue  # frozen on purpose, or reached by the backward under one of its names
            owner, _, leaf = aliases[0].rpartition(".")
            by_owner.setdefault(owner, []).append(leaf)
        branched = any("branches on tensor values" in n for n in graph.notes)
        for owner, leaves in sorted(by_owner.items()):
            count = sum(_numel(ctx.model, f"{owner}.{leaf}" if owner else leaf) for leaf in leaves)
            label = owner or "<root>"
            message = (
                f"{label} has parameters the output does not depend on ({', '.join(sorted(leaves))}; {count:,} values): "
                "they receive no gradient and stay at their initial values, and DistributedDataParallel will "
                f"raise unless find_unused_parameters=True. Call {label} in forward or delete it."
            )
            if branched:
                message += (" The forward branches on tensor values and only one branch was captured, so they may "
                            "be used on the other branch.")
            attr = owner.rpartition(".")[2] if owner else sorted(leaves)[0]
            yield self.finding(ctx, owner, message, severity=Severity.INFO if branched else None,
                               fix=f"Use `self.{attr}` in forward, or delete it from __init__ (and from checkpoints).",
                               evidence={"parameters": [f"{owner}.{leaf}" if owner else leaf for leaf in sorted(leaves)],
                                         "numel": count, "kind": "unused"})

    def _unregistered(self, ctx: RuleContext) -> Iterator[Finding]:
        registered = {id(m) for m in ctx.model.modules()}
        for path, module in ctx.model.named_modules():
            for attr, value in vars(module).items():
                if attr in _internal():
                    continue
                # a reference to a module registered elsewhere (weight tying, a back-pointer) is trained there
                hidden = [m for m in _modules_in(value) if id(m) not in registered]
                if not hidden:
                    continue
                count = sum(p.numel() for m in hidden for p in m.parameters())
                kinds = sorted({type(m).__name__ for m in hidden})
                container = type(value).__name__
                wrapper = "nn.ModuleDict" if isinstance(value, dict) else "nn.ModuleList"
                qualified = f"{path}.{attr}" if path else attr
                message = (
                    f"{qualified} is a plain Python {container} holding {len(hidden)} module(s) ({', '.join(kinds)}; "
                    f"{count:,} parameters) that are not registered: parameters(), state_dict(), .to(device) and the "
                    f"optimizer never see them, so they are never trained and not saved. Wrap it: "
                    f"`self.{attr} = {wrapper}(...)`."
                )
                fix = f"self.{attr} = {wrapper}({'{...}' if isinstance(value, dict) else '[...]'})"
                loc = _assignment(module, attr)
                finding = self.finding(ctx, path, message, fix=fix,
                                       evidence={"attribute": qualified, "container": container,
                                                 "modules": len(hidden), "numel": count, "kind": "unregistered"})
                if loc is not None:
                    finding.path, finding.line = loc.path, loc.line
                yield finding

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        if finding.evidence.get("kind") != "unused":
            return None
        feeding = sorted(set(finding.evidence.get("parameters", ())) & probe.other_outputs_use)
        if feeding:  # an auxiliary head: y does not use it, another output (and so the loss) can
            finding.evidence["used_by_other_outputs"] = feeding
            finding.message += (" Measured: another tensor the forward returns (an auxiliary output) depends on "
                                f"{', '.join(feeding[:3])}, so a loss over the outputs trains them.")
            return False
        measure = probe.layers.get(finding.module)
        if measure is None:
            return None
        return measure.weight_grad_rms is None or measure.weight_grad_rms == 0.0


def _numel(model: nn.Module, name: str) -> int:
    try:
        return model.get_parameter(name).numel()
    except AttributeError:
        return 0


def _modules_in(value: Any, depth: int = 0) -> Iterator[nn.Module]:
    """Modules inside a list, tuple or dict attribute (nested containers included)."""
    from torch import nn

    if isinstance(value, nn.Module) or depth > 3:
        return
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        if isinstance(item, nn.Module):
            yield item
        else:
            yield from _modules_in(item, depth + 1)


def _assignment(module: nn.Module, attr: str) -> SourceLocation | None:
    """The `self.<attr> = ...` line in the module's class, where the fix goes."""
    cls = type(module)
    try:
        path = inspect.getsourcefile(cls)
        lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    if path is None or not is_user_file(path):
        return None
    pattern = re.compile(rf"self\.{re.escape(attr)}\s*(:[^=]*)?=")
    for offset, text in enumerate(lines):
        if pattern.search(text):
            return SourceLocation(display_path(path), start + offset)
    return None
