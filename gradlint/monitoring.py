"""Monitor stage: the probe's measurement taken on the user's own training steps, judged by the same rules.

`gradlint.monitor(model, every=N)` hooks the model. On every N-th step (step 0 first) it records, during the
first grad-enabled forward of that step, each weighted layer's output moments and dead fraction and each
activation's saturated and dead fractions, and during the backward each layer output's gradient RMS; at
`step()` (after `loss.backward()`, before `optimizer.step()`) it reads the weights' gradients and builds the
probe's result for that step. Nothing is copied, cloned, drawn or re-run: hooks only read tensors (a
tensor hook that returns None leaves the gradient as it is), so training is bit-identical with or without
the monitor. Between measured steps no hook is installed.

The first measured step also captures the model on that batch (graph and estimate, as `gradlint check`
does, on the real input's statistics) so the rules can read a measurement as they read the probe's:
`Rule.check_measured`. A finding keeps the step at which it first appeared (`Finding.step`)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn

from gradlint.call import Call, first_tensor, unwrap
from gradlint.capture.common import leaf_weights
from gradlint.grouping import group
from gradlint.notebook import NotebookReport
from gradlint.probe import (RELU_LIKE, SATURATING, ActivationMeasure, LayerMeasure, ProbeResult, Reading, _finite, _rms,
                            layer_measure, measure_activation, preserved_global_state)
from gradlint.rule import Rule, RuleContext
from gradlint.suppress import Suppressor
from gradlint.types import Finding, GradlintError, ProfileEntry, Severity

log = logging.getLogger("gradlint.monitor")  # the module is `monitoring`: `gradlint.monitor` is the function

FORMATS = ("text", "json", "html")


@dataclass
class StepMeasure(ProbeResult):
    """The probe's result for one training step: what rules read, with the step it was taken at."""

    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, **super().to_dict()}
        data.pop("seconds", None)
        data["activations"] = [{"module": a.module, "kind": a.kind, "saturated_fraction": round(a.saturated_fraction, 4),
                                "dead_fraction": round(a.dead_fraction, 4)} for a in self.activations.values()]
        return data


@dataclass
class Timeline:
    """The measured steps of one monitored run, oldest first (thinned to at most `limit` when long)."""

    every: int
    steps: int = 0  # step() calls so far
    measures: list[StepMeasure] = field(default_factory=list)
    seconds: float = 0.0  # time spent measuring and judging, setup included

    def to_dict(self) -> dict[str, Any]:
        return {"every": self.every, "steps": self.steps, "seconds": round(self.seconds, 4),
                "measured": [m.to_dict() for m in self.measures]}


@dataclass(repr=False, eq=False)
class MonitorReport(NotebookReport):
    """The contract's target entry for a monitored training run: findings with their `step`, the estimate on
    the first batch, and a `monitor` section holding each measured step's profile."""

    timeline: Timeline | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.timeline is not None:
            data["monitor"] = self.timeline.to_dict()
        return data

    def to_text(self, width: int | None = None, profile: bool = True) -> str:
        from gradlint.report.timeline import summary_text

        return super().to_text(width, profile=False) + summary_text(self)


@dataclass
class _Pending:
    """What the hooks of one armed step have seen so far."""

    started: bool = False
    active: bool = False
    done: bool = False
    top: str | None = None  # the outermost module called: its first tensor output is y
    call: Call | None = None
    readings: dict[str, Reading] = field(default_factory=dict)
    activations: dict[str, ActivationMeasure] = field(default_factory=dict)
    y_rms: float = 0.0
    y_finite: bool = True
    y_grad: Reading | None = None


class Monitor:
    """Hooks that measure a training run every `every` steps; see the module docstring. Use `step()` after
    each `loss.backward()`, `report()` at any time, `close()` (or a `with` block) at the end."""

    def __init__(self, model: nn.Module, every: int = 50, *, select: Iterable[str] | None = None,
                 ignore: Iterable[str] = (), thresholds: dict[str, dict[str, Any]] | None = None,
                 per_module_ignores: dict[str, list[str]] | None = None,
                 on_finding: Callable[[Finding], None] | None = None, name: str | None = None,
                 history: int = 2000) -> None:
        from gradlint.registry import all_rules, select_rules

        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (a step count), not {every!r}")
        self.model, _ = unwrap(model)
        self.every = every
        self.name = name or type(self.model).__name__
        self.on_finding = on_finding if on_finding is not None else log_finding
        chosen = select_rules(all_rules(), select, ignore)
        configured = thresholds or {}
        self.rules: list[Rule] = [cls(configured.get(cls.code) or configured.get(cls.name)) for cls in chosen]
        self._suppressor = Suppressor(self.model, None, dict(per_module_ignores or {}))
        self._weights = leaf_weights(self.model)
        self._kinds = {path: type(m).__name__ for path, m in self.model.named_modules()}
        self._params = dict(self.model.named_parameters())
        self._history = max(int(history), 2)
        self.timeline = Timeline(every)
        self.notes: list[str] = []
        self._found: dict[tuple[str, str], Finding] = {}
        self._suppressed: set[tuple[str, str]] = set()
        self._context: RuleContext | None = None
        self._context_failed = False
        self._top: str | None = None  # fixed at the first measured step
        self._target: nn.Module | None = None
        self._handles: list[Any] = []
        self._pending: _Pending | None = None
        self._closed = False
        self._arm()

    # -- the user's calls -------------------------------------------------------------------------------

    def step(self) -> list[Finding]:
        """End the current training step: call after `loss.backward()`, before `optimizer.step()` and
        `zero_grad()`. Returns the findings that appeared (or got worse) at this step."""
        if self._closed:
            raise RuntimeError("this gradlint monitor is closed; create a new one with gradlint.monitor(model)")
        index = self.timeline.steps
        new: list[Finding] = []
        pending, self._pending = self._pending, None
        if pending is not None:
            tick = time.perf_counter()
            self._disarm()
            measure = self._collect(pending, index) if pending.done else None
            if measure is not None:
                self._keep(measure)
                new = self._judge(measure)
            self.timeline.seconds += time.perf_counter() - tick
        self.timeline.steps += 1
        if self.timeline.steps % self.every == 0:
            self._arm()
        for finding in new:
            self.on_finding(finding)
        return new

    def report(self) -> MonitorReport:
        """The contract's target entry so far: every finding at the step it appeared, grouped by cause."""
        report = MonitorReport(self.name)
        report.timeline = copy.copy(self.timeline)
        report.timeline.measures = list(self.timeline.measures)
        ordered = sorted(self._found.values(), key=lambda f: (-f.severity.rank, f.step or 0, f.rule, f.module))
        report.findings = group(copy.deepcopy(ordered))
        report.suppressed = len(self._suppressed)
        target = self._target if self._target is not None else self.model
        report.parameters = sum(p.numel() for p in target.parameters())
        if self._context is not None:
            report.graph, report.estimate = self._context.graph, self._context.estimate
        report.input_source = "the first measured training batch"
        report.notes = list(self.notes)
        if not self.timeline.measures:
            report.notes.append("no training step was measured yet: call monitor.step() after each loss.backward(), "
                                "with a forward that ran with gradients enabled since the previous step()")
        return report

    def save(self, directory: str | Path, formats: Iterable[str] = FORMATS, stem: str = "gradlint-monitor") -> list[Path]:
        """Write the report as `stem.txt`, `.json` and `.html` (the formats asked for) into `directory`."""
        from gradlint.report import html, json_format

        report = self.report()
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for fmt in formats:
            if fmt not in FORMATS:
                raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
            content = (report.to_text() if fmt == "text" else json_format.render([report]) if fmt == "json"
                       else html.render([report]))
            path = folder / f"{stem}.{ {'text': 'txt'}.get(fmt, fmt) }"
            path.write_text(content, encoding="utf-8")
            written.append(path)
        return written

    def close(self) -> None:
        """Remove every hook the monitor installed; the report stays available."""
        self._disarm()
        self._pending = None
        self._closed = True

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, ungrouped, in the order they appeared."""
        return sorted(self._found.values(), key=lambda f: f.step or 0)

    # -- hooks ------------------------------------------------------------------------------------------

    def _arm(self) -> None:
        pending = self._pending = _Pending()
        model = self.model
        if self._top is not None:
            tops = [(self._top, model.get_submodule(self._top))]
        else:  # the outermost module called is the model, or (a LightningModule calling self.net) a child
            tops = [("", model), *model.named_children()]

        for path, module in tops:
            def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], path: str = path) -> None:
                if pending.started or not torch.is_grad_enabled():
                    return
                pending.started = pending.active = True
                pending.top = path
                if self._context is None and not self._context_failed:
                    pending.call = Call(tuple(args), dict(kwargs))

            def post(mod: nn.Module, args: tuple[Any, ...], output: Any, path: str = path) -> None:
                if not pending.active or pending.top != path:
                    return
                pending.active, pending.done = False, True
                y = _y(output)
                if y is None or not y.is_floating_point():
                    return
                pending.y_rms, pending.y_finite = _rms(y), _finite(y)
                if y.requires_grad:
                    pending.y_grad = Reading(0.0, 0.0, 0.0, True)
                    y.register_hook(pending.y_grad.add_grad)  # type: ignore[no-untyped-call]

            self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            self._handles.append(module.register_forward_hook(post))

        for path in self._weights:
            def layer(mod: nn.Module, args: Any, output: Any, path: str = path) -> None:
                if not pending.active or path in pending.readings:
                    return
                out = first_tensor(output)
                if out is None or not out.is_floating_point():
                    return
                reading = pending.readings[path] = Reading.forward(out)
                if out.requires_grad:
                    out.register_hook(reading.add_grad)  # type: ignore[no-untyped-call]  # returns None: gradient unchanged

            self._handles.append(model.get_submodule(path).register_forward_hook(layer))
        for path, kind in self._kinds.items():
            if kind in SATURATING or kind in RELU_LIKE:
                def act(mod: nn.Module, args: Any, output: Any, path: str = path, kind: str = kind) -> None:
                    if pending.active and path not in pending.activations and args and isinstance(args[0], torch.Tensor):
                        pending.activations[path] = measure_activation(path, kind, args[0])

                self._handles.append(model.get_submodule(path).register_forward_hook(act))

    def _disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- measuring and judging --------------------------------------------------------------------------

    def _collect(self, pending: _Pending, index: int) -> StepMeasure | None:
        """The step's probe result, paths relative to the outermost module called (the model, usually)."""
        top = pending.top or ""
        if self._top is None:
            self._top, self._target = top, self.model.get_submodule(top) if top else self.model
        if top != self._top:
            return None
        if pending.y_grad is None or pending.y_grad.grad_rms is None:
            return None  # no backward reached the output since the forward: nothing to measure
        prefix = f"{top}." if top else ""
        g_rms = pending.y_grad.grad_rms if pending.y_grad.grad_finite else float("nan")
        profile: list[ProfileEntry] = []
        layers: dict[str, LayerMeasure] = {}
        for path, reading in pending.readings.items():
            if not path.startswith(prefix):
                continue
            name = path[len(prefix):]
            param = self._params.get(self._weights[path])
            grad = param.grad if param is not None else None
            measure = layer_measure(name, self._kinds.get(path, ""), reading, g_rms, param, grad)
            profile.append(measure.entry)
            layers[name] = measure
        activations = {}
        for path, act in pending.activations.items():
            if path.startswith(prefix):
                act.module = path[len(prefix):]
                activations[act.module] = act
        nonfinite = (not pending.y_finite or not pending.y_grad.grad_finite
                     or any(entry.nonfinite for entry in profile))
        if self._context is None and not self._context_failed and pending.call is not None:
            self._build_context(pending.call)
        batch = pending.call.batch() if pending.call is not None else 0
        return StepMeasure(profile, layers, activations, 0.0, batch, nonfinite, pending.y_rms, step=index)

    def _build_context(self, call: Call) -> None:
        """Capture and estimate the model on the first measured batch, as `gradlint check` would, leaving
        the model, its gradients and every RNG as they were."""
        from gradlint.capture import capture
        from gradlint.estimate import estimate
        from gradlint.estimate.weights import WeightTable

        target = self._target if self._target is not None else self.model
        try:
            with preserved_global_state(), torch.no_grad():
                graph = capture(target, call)
                est = estimate(graph, WeightTable(target, None), tuple(call.tensors()))
        except GradlintError as exc:
            self._context_failed = True
            self.notes.append(f"the rules could not judge the measurements (capture failed: {exc.message}); "
                              "the profile over steps is still recorded")
            return
        except Exception as exc:  # a bug in gradlint must never stop the user's training
            self._context_failed = True
            self.notes.append(f"the rules could not judge the measurements: {type(exc).__name__}: {exc}")
            log.debug("gradlint monitor: capture failed", exc_info=True)
            return
        self._context = RuleContext(graph, est, target, None)

    def _keep(self, measure: StepMeasure) -> None:
        measures = self.timeline.measures
        measures.append(measure)
        if len(measures) > self._history:  # keep the first step and every other one after it
            self.timeline.measures = measures[:1] + measures[2::2]

    def _judge(self, measure: StepMeasure) -> list[Finding]:
        ctx = self._context
        if ctx is None:
            return []
        new = []
        for rule in self.rules:
            try:
                found = list(rule.check_measured(ctx, measure))
            except Exception as exc:  # one broken (plugin) rule must not hide the others' findings
                note = f"rule {rule.code} ({rule.name}) could not read a training measurement: {type(exc).__name__}: {exc}"
                if note not in self.notes:
                    self.notes.append(note)
                log.debug("rule %s failed on step %d", rule.code, measure.step, exc_info=True)
                continue
            for finding in found:
                finding.step, finding.confirmed = measure.step, True
                key = (finding.rule, finding.module)
                if self._suppressor.suppressed(finding):
                    self._suppressed.add(key)
                    continue
                old = self._found.get(key)
                if old is None or finding.severity.rank > old.severity.rank:
                    finding.evidence["first_step"] = old.evidence.get("first_step", old.step) if old else measure.step
                    finding.evidence["last_step"] = measure.step
                    finding.evidence["steps_seen"] = (old.evidence.get("steps_seen", 1) if old else 0) + 1
                    self._found[key] = finding
                    new.append(finding)
                else:
                    old.evidence["last_step"] = measure.step
                    old.evidence["steps_seen"] = old.evidence.get("steps_seen", 1) + 1
        return new


def one_line(finding: Finding) -> str:
    """A finding as one log line: step, code, severity, module, where, message."""
    where = f" ({finding.path}:{finding.line})" if finding.path and finding.line else ""
    return (f"gradlint: step {finding.step}: {finding.rule} {finding.name} [{finding.severity.value}] "
            f"{finding.module or '<root>'}{where}: {finding.message}")


def log_finding(finding: Finding, logger: logging.Logger | None = None) -> None:
    """The default `on_finding`: one line on the `gradlint.monitor` logger (warning, or info for info)."""
    level = logging.INFO if finding.severity is Severity.INFO else logging.WARNING
    (logger or log).log(level, one_line(finding))


def monitor(model: nn.Module, every: int = 50, **options: Any) -> Monitor:
    """Watch a training run: `m = gradlint.monitor(model, every=50)`, then `m.step()` after each
    `loss.backward()` (before `optimizer.step()`), `m.report()` for the contract's report, `m.close()` (or
    `with gradlint.monitor(model) as m:`). Options: select, ignore, thresholds, per_module_ignores,
    on_finding (called with each new finding; default: one log line), name, history."""
    return Monitor(model, every, **options)


def _y(output: Any) -> torch.Tensor | None:
    """The contract's y (the first tensor of the output), except that a forward given its labels returns
    the loss first (transformers' `ModelOutput.loss`): then the first tensor with more than one element,
    the logits the loss is computed from, so the profile is relative to the output gradient as in `check`."""
    y = first_tensor(output)
    if y is None or y.numel() != 1 or isinstance(output, torch.Tensor):
        return y
    values = list(output.values()) if isinstance(output, dict) else list(output) if isinstance(output, (tuple, list)) else []
    return next((t for t in (first_tensor(v) for v in values) if t is not None and t.numel() > 1), y)
