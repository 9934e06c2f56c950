"""One target, end to end: load -> inputs -> capture -> estimate -> rules -> probe -> report entry.
Each stage's failure ends that target only, with the contract's error kind."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from torch import nn

from gradlint.call import Call, unwrap
from gradlint.capture import capture
from gradlint.discovery import discovered
from gradlint.estimate import Estimate, estimate
from gradlint.graph import ModelGraph
from gradlint.inputs import InputSpec, ResolvedInputs, resolve_inputs
from gradlint.load import load_target, restored_interpreter_state
from gradlint.grouping import group
from gradlint.measurable import batch_for_batch_norm, with_default_init, zero_head
from gradlint.probe import ProbeResult, run_probe
from gradlint.recorder import ConstructionRecord
from gradlint.remedy import verify_fixes
from gradlint.rule import Rule, RuleContext
from gradlint.state import preserved
from gradlint.suppress import Suppressor
from gradlint.types import ErrorKind, Finding, GradlintError, Severity
from gradlint.estimate.weights import WeightTable

log = logging.getLogger("gradlint")


@dataclass
class CheckOptions:
    rules: list[type[Rule]]
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: list[InputSpec] | None = None
    probe: bool = True
    probe_batch: int | None = None
    probe_timeout: float | None = 60.0
    probe_max_params: int | None = 200_000_000
    device: str | None = None
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)
    verbose: bool = False
    # told each stage as it starts ("load", "capture", "estimate", "rules", "probe", "fixes"), with the report
    # as it would be if the run ended there: a worker process hands both to the process that writes the report
    progress: Callable[[str, TargetReport], None] | None = None
    data: Any = None  # --data FILE.py:NAME (or, from Python, the batch, function or DataLoader): see gradlint.data


@dataclass
class TargetReport:
    """One target's result: the contract's target entry, plus the objects behind it for other views."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    error: GradlintError | None = None
    graph: ModelGraph | None = None
    estimate: Estimate | None = None
    probe: ProbeResult | None = None
    input_source: str | None = None
    parameters: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    suppressed: int = 0
    traceback: str | None = None
    notes: list[str] = field(default_factory=list)  # what gradlint did differently from the plain contract, and why

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "target": self.target,
            "status": "ok" if self.ok else "error",
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.error is not None:
            data["error"] = {"kind": self.error.kind.value, "message": self.error.message}
        if self.graph is not None:
            data["capture"] = {
                "method": self.graph.method,
                "fallback": self.graph.fallback,
                "nodes": len(self.graph.order),
                "weighted_layers": len(self.graph.weighted_layers),
                "notes": self.graph.notes,
                "input": self.input_source,
                "parameters": self.parameters,
                "module_types": dict(self.graph.module_types),
            }
        elif self.input_source is not None:  # an error after the input was chosen: which one it was
            data["input"] = self.input_source
        data["estimate"] = self.estimate.to_dict() if self.estimate is not None else None
        if self.probe is not None and self.probe.skipped is None:
            data["probe"] = self.probe.to_dict()
        else:
            data["probe"] = None
            if self.probe is not None and self.probe.skipped:
                data["probe_skipped"] = self.probe.skipped
                if self.probe.notes:
                    data["probe_notes"] = list(self.probe.notes)
        if self.suppressed:
            data["suppressed"] = self.suppressed
        if self.notes:
            data["notes"] = list(self.notes)
        data["seconds"] = {k: round(v, 4) for k, v in self.seconds.items()}
        return data


def check_target(raw: str, options: CheckOptions, given: Call | None = None) -> TargetReport:
    report = TargetReport(raw)
    with restored_interpreter_state(), preserved():  # what the target's import changed ends with its check
        try:
            started = time.perf_counter()
            _tell(options, "load", report)
            loaded = load_target(raw)
            report.seconds["load"] = time.perf_counter() - started
            analyse(loaded.model, report, options, loaded.record, given)
        except GradlintError as exc:
            from gradlint.devices import absent_device_hint

            exc.message += absent_device_hint(exc.message)
            report.error = exc
            report.traceback = traceback.format_exc()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            report.error = model_raised(exc, report) if not isinstance(exc, Exception) else GradlintError(
                ErrorKind.INTERNAL,
                f"gradlint failed on this target with {type(exc).__name__}: {exc}. This is a bug in gradlint; "
                "run with --verbose and report the traceback.",
            )
            report.traceback = traceback.format_exc()
    return report


def model_raised(exc: BaseException, report: TargetReport) -> GradlintError:
    """The target's error for what no `except Exception` catches (SystemExit, GeneratorExit, a library's
    BaseException): only the model's code raises those, so it is the model's failure, never the run's."""
    stage = (ErrorKind.CAPTURE, "while gradlint built its input and ran its forward") if report.graph is None else \
        (ErrorKind.PROBE, "while gradlint measured it")
    shown = f"{type(exc).__name__}({', '.join(map(repr, exc.args))})"
    hint = " (sys.exit)" if isinstance(exc, SystemExit) else ""
    return GradlintError(stage[0], f"{report.target}: the model's code raised {shown}{hint} {stage[1]}; gradlint reports "
                                   "it as this target's error instead of ending the run.")


def analyse(model: nn.Module, report: TargetReport, options: CheckOptions, record: ConstructionRecord | None,
            given_inputs: Call | None = None) -> TargetReport:
    """The stages after loading; also what the Python API calls on a model object."""
    model, wrapper_note = unwrap(model)
    params = list(model.parameters())
    if not params:
        raise GradlintError(
            ErrorKind.CONSTRUCT,
            f"{report.target}: the model has no parameters, so there is no gradient to check. Point gradlint "
            "at the module that owns the layers.",
        )
    report.parameters = sum(p.numel() for p in params)
    _tell(options, "capture", report)
    tick = time.perf_counter()
    if given_inputs is None and options.data is not None:
        from gradlint.data import data_inputs

        inputs = data_inputs(options.data, model)
    else:
        inputs = ResolvedInputs(given_inputs, "given") if given_inputs is not None else resolve_inputs(model, options.inputs)
    report.input_source = inputs.source
    with preserved(model):  # the forward runs here: what it does to grad mode, devices or hooks stays here
        graph = capture(model, inputs.call)
    if wrapper_note:
        report.notes.append(wrapper_note)
    report.graph = graph
    report.seconds["capture"] = time.perf_counter() - tick
    tick = time.perf_counter()
    _tell(options, "estimate", report)
    est = estimate(graph, WeightTable(model, record), inputs.call.tensors())
    # copies of the model (a redrawn head, candidate inits) only within the probe's budget: a model too large
    # to probe is too large to copy
    copyable = options.probe_max_params is None or report.parameters <= options.probe_max_params
    heads = zero_head(est, graph, model) if copyable else []
    if heads:  # nothing before a zero head has a gradient to judge: judge the model as it is after one step
        model = with_default_init(model, heads)
        est = estimate(graph, WeightTable(model, record), inputs.call.tensors())
        report.notes.append(
            f"the output layer's weight ({', '.join(heads)}) is zero-initialised, so every gradient before it is exactly "
            "0 at initialisation (and is not after the first step); gradlint estimated and probed the model with that "
            "weight drawn from PyTorch's default init instead")
    report.estimate = est
    report.seconds["estimate"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ctx = RuleContext(graph, est, model, record)
    active: list[tuple[Rule, Finding]] = []
    instances: list[Rule] = []
    for rule_cls in options.rules:
        rule = rule_cls(options.thresholds.get(rule_cls.code) or options.thresholds.get(rule_cls.name))
        instances.append(rule)
        try:
            active.extend((rule, finding) for finding in rule.check(ctx))
        except Exception as exc:  # one broken (plugin) rule must not hide the others' findings, nor pass unseen
            report.error = report.error or GradlintError(
                ErrorKind.INTERNAL, f"rule {rule_cls.code} ({rule_cls.name}) failed on this target with "
                f"{type(exc).__name__}: {exc}; its findings are missing (the other rules' are reported).")
            report.traceback = report.traceback or traceback.format_exc()
            log.debug("rule %s failed", rule_cls.code, exc_info=True)
    report.seconds["rules"] = time.perf_counter() - tick
    if options.probe:
        if options.progress is not None:
            unprobed = copy.deepcopy(active)
            pending = ProbeResult([], {}, {}, 0.0, 0, False, 0.0, skipped="not run")
            _tell(options, "probe", dataclasses.replace(report, probe=pending),
                  group(_kept(unprobed, instances, ctx, Suppressor(model, record, options.per_module_ignores), options, report)))
        tick = time.perf_counter()
        probe_call = inputs.call
        if options.probe_batch and options.inputs is None and inputs.source.startswith("inferred"):
            probe_call = resolve_inputs(model, batch=options.probe_batch).call
        probe_notes = []
        too_few = batch_for_batch_norm(est, graph, inputs.call.batch(), probe_call.batch())
        if too_few is not None:
            needed, why = too_few
            if inputs.source.startswith("inferred"):
                probe_call = resolve_inputs(model, batch=needed).call
                probe_notes.append(f"{why}; the probe used batch {needed} instead")
            else:
                probe_notes.append(f"{why}; give a larger batch (--input) for a meaningful measurement")
        layers = [(layer.module, layer.kind, layer.weight) for layer in graph.weighted_layers]
        try:
            final = frozenset(layer.module for layer in graph.weighted_layers if layer.output == graph.output)
            report.probe = run_probe(model, probe_call, layers, timeout=options.probe_timeout, max_params=options.probe_max_params,
                                     device=options.device, final=final)
        except GradlintError as exc:
            report.probe = ProbeResult([], {}, {}, 0.0, 0, False, 0.0, skipped=exc.message)
        report.probe.notes.extend(probe_notes)
        report.seconds["probe"] = time.perf_counter() - tick
        if report.probe.skipped is None:
            for rule in instances:  # rules whose evidence is the measurement itself (non-finite values)
                active.extend((rule, finding) for finding in rule.check_probe(ctx, report.probe))
            for rule, finding in active:
                if finding.confirmed is not None:
                    continue
                try:
                    verdict = rule.confirm(finding, report.probe)
                except Exception as exc:
                    graph.notes.append(f"rule {rule.code} could not read the probe: {type(exc).__name__}: {exc}")
                    verdict = None
                finding.confirmed = verdict
                if verdict is False:
                    finding.severity = Severity.INFO
                    finding.message += " (The probe did not confirm this at initialisation; downgraded to info.)"
            active.extend(discovered(instances, ctx, report.probe, [f for _, f in active]))
    kept = _kept(active, instances, ctx, Suppressor(model, record, options.per_module_ignores), options, report)
    if copyable:
        _tell(options, "fixes", report, group(copy.deepcopy(kept)))
        verify_fixes(kept, model, graph, record, inputs.call.tensors(), est)
    report.findings = group(kept)
    return report


def _kept(active: list[tuple[Rule, Finding]], instances: list[Rule], ctx: RuleContext, suppressor: Suppressor,
          options: CheckOptions, report: TargetReport) -> list[Finding]:
    """The findings that survive suppression, with the rules that judge the suppressions themselves (GL003)."""
    kept = []
    report.suppressed = 0
    for _, finding in active:
        if suppressor.suppressed(finding):
            report.suppressed += 1
        else:
            kept.append(finding)
    for rule in instances:  # rules that judge the suppressions themselves (GL003) run once they are known
        hook = getattr(rule, "check_suppressions", None)
        if hook is not None:
            kept.extend(hook(ctx, suppressor, options.rules))
    kept.sort(key=lambda f: (-f.severity.rank, f.rule, f.module))
    return kept


def _tell(options: CheckOptions, stage: str, report: TargetReport, findings: list[Finding] | None = None) -> None:
    """Hand `options.progress` the stage about to start and the report as it stands (with `findings`)."""
    if options.progress is None:
        return
    snapshot = copy.copy(report)
    if findings is not None:
        snapshot.findings = findings
    options.progress(stage, snapshot)
