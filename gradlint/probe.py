"""Probe stage: one seeded forward and backward pass on a deep copy of the model, in training mode,
measuring what the estimate predicts. The user's model and every global RNG are left as they were."""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradlint.call import Call, all_tensors, as_call, first_tensor
from gradlint.state import preserved
from gradlint.types import ErrorKind, GradlintError, ProfileEntry, profile_dict, profile_ratio

# |x| beyond which φ' is below 1% of its maximum (LogSigmoid: x beyond which, on the flat positive side)
SATURATING = {"Sigmoid": 5.99, "Tanh": 2.99, "Hardtanh": 1.0, "Hardsigmoid": 3.0, "Softsign": 9.0, "LogSigmoid": 4.6}
RELU_LIKE = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU")


@dataclass
class LayerMeasure:
    """What the probe saw at one weighted layer beyond its profile entry: the output it passed on (the
    pre-activation of what follows) and its weight's gradient."""

    entry: ProfileEntry
    out_mean: float = 0.0
    out_std: float = 0.0
    dead_fraction: float = 0.0  # units (non-batch positions) never positive across the batch
    weight_grad_rms: float | None = None
    relative_update: float | None = None  # RMS(dL/dW) / RMS(W)

    @property
    def nonfinite(self) -> bool:
        return self.entry.nonfinite


@dataclass
class ActivationMeasure:
    module: str
    kind: str
    saturated_fraction: float  # inputs where |φ'| < 1% of its maximum
    dead_fraction: float
    input_mean: float | None = None
    input_std: float | None = None
    active_fraction: float | None = None  # inputs above zero


@dataclass
class ProbeResult:
    profile: list[ProfileEntry]
    layers: dict[str, LayerMeasure]
    activations: dict[str, ActivationMeasure]
    seconds: float
    batch: int
    nonfinite: bool
    output_rms: float
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    # Parameters that a tensor the forward returns besides y depends on (an auxiliary head's): a loss can use
    # them, so they are not unused although y does not depend on them.
    other_outputs_use: frozenset[str] = frozenset()

    @property
    def log10_grad_ratio(self) -> float | None:
        return profile_ratio(self.profile)

    def to_dict(self) -> dict[str, Any]:
        data = {
            **profile_dict(self.profile),
            "seconds": round(self.seconds, 4),
            "batch": self.batch,
            "nonfinite": self.nonfinite,
        }
        if self.notes:
            data["notes"] = list(self.notes)
        return data


class ProbeTimeout(Exception):
    pass


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Restore grad mode, every RNG, default dtype and device, torch flags and global hooks after the block."""
    with preserved():
        yield


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread only; elsewhere the probe runs unbounded)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise ProbeTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return new
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        items = list(value)
        for i, item in enumerate(items):
            if first_tensor(item) is not None:
                items[i] = _replace_first(item, new)
                return tuple(items)
    if isinstance(value, list):
        items = list(value)
        for i, item in enumerate(items):
            if first_tensor(item) is not None:
                items[i] = _replace_first(item, new)
                return items
    return value


def _rms(t: torch.Tensor) -> float:
    """RMS in the tensor's own precision (no float64 copy of a large activation); NaN/Inf propagate."""
    if not t.numel():
        return 0.0
    return float(torch.linalg.vector_norm(t.detach())) / math.sqrt(t.numel())


def _finite(t: torch.Tensor) -> bool:
    """All values finite. The RMS is finite exactly then (barring float32 overflow, checked only then)."""
    return math.isfinite(_rms(t)) or bool(torch.isfinite(t.detach()).all())


def _dead_fraction(t: torch.Tensor) -> float:
    """Share of units (positions after the batch dimension) that are not positive for any sample. One max
    over the batch, then a compare on the small result: a third of the time of compare-then-any."""
    if t.dim() < 2 or t.shape[0] < 2:
        return 0.0
    active = t.detach().flatten(1).amax(dim=0) > 0  # NaN is not > 0, as before
    return float(1.0 - active.float().mean())


_FAST_DTYPES = (torch.float32, torch.float64)


def _moments(t: torch.Tensor) -> tuple[float, float, float, bool]:
    """(mean, std with Bessel's correction, RMS, all finite) of `t` from one sum and one norm: `Tensor.std`
    runs Welford's algorithm, about 6x the cost of both, and a training monitor pays it on every layer of
    every measured step. The scalars are combined in float64; where the mean dwarfs the spread (cancellation)
    or the norm overflowed, the exact reductions decide."""
    o = t.detach()
    n = o.numel()
    if not n:
        return 0.0, 0.0, 0.0, True
    if o.dtype not in _FAST_DTYPES:
        std = float(o.std()) if n > 1 else 0.0
        return float(o.mean()), std, _rms(o), _finite(o)
    total, norm = float(o.sum()), float(torch.linalg.vector_norm(o))
    mean, rms = total / n, norm / math.sqrt(n)
    if not (math.isfinite(total) and math.isfinite(norm)):
        finite = bool(torch.isfinite(o).all())
        if not finite:
            return mean, float("nan"), rms, False
        return float(o.mean()), float(o.std()) if n > 1 else 0.0, rms, True  # float32 overflow: exact path
    if n == 1:
        return mean, 0.0, rms, True
    var = max(norm * norm - n * mean * mean, 0.0) / (n - 1)
    if var < 1e-4 * mean * mean:  # the spread is below the sums' rounding: measure it directly
        var = float(o.var())
    return mean, math.sqrt(var), rms, True


def run_probe(model: nn.Module, call: Call, layers: list[tuple[str, str, str]], *, seed: int = 0,
              timeout: float | None = 60.0, max_params: int | None = None, device: str | None = None,
              final: frozenset[str] = frozenset()) -> ProbeResult:
    """Measure the contract's profile for `layers` [(module path, kind, weight name)] on a copy of `model`.
    `final` names layers whose output is the model's output: nothing can rewrite it, so it is not copied."""
    call = as_call(call)
    n_params = sum(p.numel() for p in model.parameters())
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    if home.type == "meta":
        return _skipped("the model is on the meta device (no weights to run)", call)
    if max_params is not None and n_params > max_params:
        return _skipped(f"the model has {n_params:,} parameters, above the probe budget of {max_params:,} (--probe-max-params)", call)
    start = time.perf_counter()
    with preserved_global_state():
        torch.manual_seed(seed)
        twin: nn.Module | None
        try:
            twin = copy.deepcopy(model)
            if device is not None:  # e.g. probe on a GPU: the copy moves, the user's model stays where it is
                twin.to(device)
                call = call.to(device)
            twin.train()
            for p in twin.parameters():
                p.grad = None
            with time_limit(timeout):
                result = _measure(twin, call, layers, seed, final)
        except ProbeTimeout:
            raise GradlintError(
                ErrorKind.PROBE,
                f"The probe's forward and backward pass took longer than {timeout:g} s and was stopped. Raise "
                "--probe-timeout, lower --probe-batch, or use --no-probe for a static-only check.",
            ) from None
        except GradlintError:
            raise
        except BaseException as exc:  # SystemExit, GeneratorExit, a library's BaseException: the model's failure
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise GradlintError(
                ErrorKind.PROBE,
                f"The probe's forward/backward pass failed: {type(exc).__name__}: {exc}. The static estimate is "
                "still reported; use --no-probe to skip the probe.",
            ) from exc
        finally:
            twin = None
    result.seconds = time.perf_counter() - start
    return result


def _skipped(reason: str, call: Call) -> ProbeResult:
    return ProbeResult([], {}, {}, 0.0, call.batch(), False, 0.0, skipped=reason)


def _measure(twin: nn.Module, call: Call, layers: list[tuple[str, str, str]], seed: int,
             final: frozenset[str] = frozenset()) -> ProbeResult:
    named = dict(twin.named_parameters())
    captured: dict[str, torch.Tensor] = {}
    activations: dict[str, ActivationMeasure] = {}
    handles = []
    for path, _, _ in layers:
        module = twin.get_submodule(path)

        def hook(mod: nn.Module, args: Any, output: Any, path: str = path) -> Any:
            if path in captured:
                return None
            out = first_tensor(output)
            if out is None or not out.is_floating_point():
                return None
            if not out.requires_grad:  # a frozen layer still has a gradient at its output
                out = out.detach().requires_grad_(True)
            captured[path] = out
            if path in final:
                return None if out is first_tensor(output) else _replace_first(output, out)
            return _replace_first(output, out.clone())  # later in-place ops must not rewrite what we measure

        handles.append(module.register_forward_hook(hook))
    for path, module in twin.named_modules():
        kind = type(module).__name__
        if kind in SATURATING or kind in RELU_LIKE:
            def act_hook(mod: nn.Module, args: Any, output: Any, path: str = path, kind: str = kind) -> None:
                if path in activations or not args or not isinstance(args[0], torch.Tensor):
                    return
                activations[path] = measure_activation(path, kind, args[0])

            handles.append(module.register_forward_hook(act_hook))
    try:
        with torch.enable_grad():
            with preserved():  # the forward may flip the default device, dtype or flags: not for what follows
                output = twin(*call.args, **call.kwargs)
            y = first_tensor(output)
            if y is None or not y.is_floating_point():
                raise GradlintError(ErrorKind.PROBE, "The model's output has no floating-point tensor to take a gradient of.")
            others = _parameters_behind([t for t in all_tensors(output)[1:] if t is not y], named)
            generator = torch.Generator(device="cpu").manual_seed(seed + 1)
            g = torch.randn(y.shape, generator=generator, dtype=torch.float32).to(device=y.device, dtype=y.dtype)
            loss = (y * g).sum()
            outs = [captured[p] for p, _, _ in layers if p in captured]
            weights = []
            for _path, _, wname in layers:
                param = named.get(wname)
                weights.append(param)
            targets = outs + [w for w in weights if w is not None and w.requires_grad]
            grads = torch.autograd.grad(loss, targets, allow_unused=True) if loss.requires_grad else [None] * len(targets)
    finally:
        for h in handles:
            h.remove()
    g_rms = _rms(g)
    grad_of = dict(zip([id(t) for t in targets], grads))
    profile: list[ProfileEntry] = []
    measures: dict[str, LayerMeasure] = {}
    nonfinite_any = not _finite(y)
    for path, kind, wname in layers:
        out = captured.get(path)
        if out is None:
            entry = ProfileEntry(path, kind, None, zero=True)
            profile.append(entry)
            measures[path] = LayerMeasure(entry)
            continue
        param = named.get(wname)
        measure = layer_measure(path, kind, Reading.of(out, grad_of.get(id(out))), g_rms,
                                param, grad_of.get(id(param)) if param is not None else None)
        nonfinite_any = nonfinite_any or measure.entry.nonfinite
        profile.append(measure.entry)
        measures[path] = measure
    return ProbeResult(profile, measures, activations, 0.0, call.batch(), nonfinite_any, _rms(y),
                       other_outputs_use=others)


def _parameters_behind(tensors: list[torch.Tensor], named: Mapping[str, torch.Tensor]) -> frozenset[str]:
    """Names of the parameters whose gradient accumulators the autograd graphs of `tensors` reach: what a
    loss on those outputs would train. A walk over the recorded graph; nothing is computed."""
    wanted = {id(p): name for name, p in named.items()}
    found: set[str] = set()
    stack: list[Any] = [t.grad_fn for t in tensors if t.grad_fn is not None]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)  # AccumulateGrad: a leaf tensor
        if variable is not None and id(variable) in wanted:
            found.add(wanted[id(variable)])
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return frozenset(found)


@dataclass
class Reading:
    """What one weighted layer's first call showed, reduced to numbers as soon as it is seen (a training
    monitor keeps no tensors): its output's moments and dead fraction, and its output gradient's RMS."""

    out_mean: float
    out_std: float
    dead_fraction: float
    out_finite: bool
    grad_rms: float | None = None  # None: no gradient reached the output
    grad_finite: bool = True

    @classmethod
    def of(cls, out: torch.Tensor, grad: torch.Tensor | None = None) -> Reading:
        reading = cls.forward(out)
        if grad is not None:
            reading.add_grad(grad)
        return reading

    @classmethod
    def forward(cls, out: torch.Tensor) -> Reading:
        mean, std, _, finite = _moments(out)
        return cls(mean, std, _dead_fraction(out), finite)

    def add_grad(self, grad: torch.Tensor) -> None:
        rms = _rms(grad)
        self.grad_finite = math.isfinite(rms) or bool(torch.isfinite(grad.detach()).all())
        self.grad_rms = rms


def layer_measure(path: str, kind: str, reading: Reading, g_rms: float, param: torch.Tensor | None,
                  param_grad: torch.Tensor | None) -> LayerMeasure:
    """One weighted layer's profile entry and measure, the contract's way: log10 of its output gradient's
    RMS over the output gradient's (`g_rms`), null where zero or non-finite (a non-finite forward too), and
    log10 RMS(dL/dW) / RMS(W) for its weight."""
    entry = _entry(path, kind, reading.grad_rms, reading.grad_finite, g_rms)
    if not reading.out_finite:  # the contract: a nonfinite forward is null too
        entry = ProfileEntry(path, kind, None, nonfinite=True)
    measure = LayerMeasure(entry, reading.out_mean, reading.out_std, reading.dead_fraction)
    if param is not None and param_grad is not None:
        wg = _rms(param_grad)
        measure.weight_grad_rms = wg
        w_rms = _rms(param)
        measure.relative_update = wg / w_rms if w_rms > 0 else None
        if measure.relative_update and math.isfinite(measure.relative_update):
            entry.log10_update_ratio = math.log10(measure.relative_update)
    return measure


def measure_activation(path: str, kind: str, h: torch.Tensor) -> ActivationMeasure:
    """The saturated (|φ'| below 1% of its peak) and dead fractions of an activation's input `h`, with its
    moments and positive share (what GL301 and GL302 judge)."""
    h = h.detach()
    limit = SATURATING.get(kind)
    if not h.numel():
        saturated = 0.0
    elif kind == "LogSigmoid" and limit is not None:
        saturated = float((h > limit).float().mean())
    elif kind == "Hardsigmoid":
        saturated = float((h.abs() >= 3.0).float().mean())
    elif limit is not None:
        saturated = float((h.abs() > limit).float().mean())
    else:
        saturated = 0.0
    measure = ActivationMeasure(path, kind, saturated, _dead_fraction(h) if kind in RELU_LIKE else 0.0)
    if h.numel() and h.is_floating_point():
        measure.input_mean, measure.input_std, _, _ = _moments(h)
        measure.active_fraction = float((h > 0).float().mean())
    return measure


def _entry(path: str, kind: str, rms: float | None, finite: bool, g_rms: float) -> ProfileEntry:
    if rms is None:
        return ProfileEntry(path, kind, None, zero=True)
    if not finite or not math.isfinite(rms):
        return ProfileEntry(path, kind, None, nonfinite=True)
    if rms == 0.0 or g_rms == 0.0:
        return ProfileEntry(path, kind, None, zero=True)
    return ProfileEntry(path, kind, math.log10(rms / g_rms))
