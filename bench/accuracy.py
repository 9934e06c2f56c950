"""How close is the static estimate to the real gradient profile?

For every weighted layer of every fixture model, compares gradlint's static prediction of the contract's
quantity, log10(RMS(dL/d out_m) / RMS(g)), with a measurement written here independently of
gradlint.probe (median over three seeds, training mode). Errors are in decades (log10 units).

    python3 bench/accuracy.py [--quick] [--verbose]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from bench._fixtures import case_targets, mlp_targets, zoo_targets

SEEDS = (0, 1, 2)
QUICK_ACTS = ["relu", "tanh", "sigmoid", "gelu", "selu", "hardtanh"]
QUICK_INITS = ["default", "kaiming", "xavier", "large"]


# --- the independent measurement -------------------------------------------------------------------

def weighted_modules(model: nn.Module) -> list[str]:
    """Leaf modules that directly own a parameter of two or more dimensions (the contract's definition)."""
    return [
        name for name, m in model.named_modules()
        if next(m.children(), None) is None and any(p.dim() >= 2 for p in m.parameters(recurse=False))
    ]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


def measure_once(model: nn.Module, args: tuple[Any, ...], seed: int) -> dict[str, float | None]:
    """One seeded forward/backward on a copy of `model`: log10 RMS gradient ratio per weighted layer.
    None where the gradient is exactly zero, not finite, or the layer never ran."""
    twin = copy.deepcopy(model).train()
    names = weighted_modules(twin)
    kept: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Any:
        def hook(mod: nn.Module, inp: Any, out: Any) -> Any:
            if name in kept:
                return None
            if isinstance(out, torch.Tensor) and out.requires_grad:
                kept[name] = out
                return out.clone()  # a later in-place op must not overwrite the tensor we differentiate at
            first = _first_tensor(out)
            if first is not None and first.requires_grad:
                kept[name] = first
            return None
        return hook

    handles = [twin.get_submodule(n).register_forward_hook(keeper(n)) for n in names]
    try:
        torch.manual_seed(seed)
        with torch.enable_grad():
            y = _first_tensor(twin(*args))
            assert y is not None and y.is_floating_point(), "model output has no floating-point tensor"
            g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1000 + seed), dtype=y.dtype)
            loss = (y * g).sum()
            order = [n for n in names if n in kept]
            grads = torch.autograd.grad(loss, [kept[n] for n in order], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    g_rms = _rms(g)
    result: dict[str, float | None] = {n: None for n in names}
    for name, grad in zip(order, grads):
        if grad is not None and bool(torch.isfinite(grad).all()):
            rms = _rms(grad)
            result[name] = math.log10(rms / g_rms) if rms > 0 else None
    return result


def measure(model: nn.Module, seeds: tuple[int, ...] = SEEDS) -> dict[str, float | None]:
    """Median over seeds (each seed draws its own inputs, dropout masks and g)."""
    from gradlint.inputs import resolve_inputs

    runs = [measure_once(model, resolve_inputs(model, seed=s).args, s) for s in seeds]
    merged: dict[str, float | None] = {}
    for name in runs[0]:
        values = [r[name] for r in runs if r.get(name) is not None]
        merged[name] = statistics.median(values) if len(values) == len(runs) else None
    return merged


# --- the static estimate ------------------------------------------------------------------------

def static_estimate(target: str) -> tuple[nn.Module, Any]:
    """Load `target` and run gradlint's capture + estimate on it, as pipeline.analyse does."""
    from gradlint.capture import capture
    from gradlint.estimate import estimate
    from gradlint.inputs import resolve_inputs
    from gradlint.load import load_target, restored_interpreter_state
    from gradlint.estimate.weights import WeightTable

    with restored_interpreter_state():
        loaded = load_target(target)
    model = loaded.model
    inputs = resolve_inputs(model)
    graph = capture(model, inputs.args)
    return model, estimate(graph, WeightTable(model, loaded.record), inputs.args)


# --- comparison --------------------------------------------------------------------------------

@dataclass
class LayerRow:
    module: str
    kind: str
    predicted: float | None
    measured: float | None

    @property
    def error(self) -> float | None:
        if self.predicted is None or self.measured is None:
            return None
        return self.predicted - self.measured


@dataclass
class ModelResult:
    target: str
    rows: list[LayerRow] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[float]:
        return [abs(r.error) for r in self.rows if r.error is not None]

    @property
    def mismatched_zeros(self) -> int:
        """Layers where exactly one side says the gradient is zero / not finite."""
        return sum((r.predicted is None) != (r.measured is None) for r in self.rows)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def compare(target: str) -> ModelResult:
    start = time.perf_counter()
    model, est = static_estimate(target)
    measured = measure(model)
    result = ModelResult(target, unknown_ops=sorted(set(est.unknown_ops)))
    for entry in est.profile:
        result.rows.append(LayerRow(entry.module, entry.kind, entry.log10_grad_rms, measured.get(entry.module)))
    result.seconds = time.perf_counter() - start
    return result


def targets(quick: bool) -> list[str]:
    mlps = mlp_targets(10, QUICK_ACTS, QUICK_INITS) if quick else mlp_targets(10)
    return zoo_targets() + case_targets("failures") + case_targets("healthy") + mlps


def short(target: str) -> str:
    return target.removeprefix("fixtures/").replace(".py:", ":")


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def report(results: list[ModelResult], skipped: list[tuple[str, str]], verbose: bool, console: Console) -> None:
    table = Table(title="Static estimate vs measured log10 gradient RMS (|error| in decades)")
    for col in ("model", "layers", "median", "p80", "max", "worst layer (pred / meas)", "zero mism.", "s"):
        table.add_column(col, justify="left" if col in ("model", "worst layer (pred / meas)") else "right")
    for res in results:
        errs = res.errors
        worst = max((r for r in res.rows if r.error is not None), key=lambda r: abs(r.error or 0), default=None)
        table.add_row(
            short(res.target), str(len(res.rows)),
            f"{percentile(errs, 50):.2f}", f"{percentile(errs, 80):.2f}", f"{max(errs, default=float('nan')):.2f}",
            f"{worst.module} ({_fmt(worst.predicted)} / {_fmt(worst.measured)})" if worst else "—",
            str(res.mismatched_zeros) if res.mismatched_zeros else "", f"{res.seconds:.1f}",
        )
    console.print(table)
    if verbose:
        for res in results:
            detail = Table(title=short(res.target))
            for col in ("layer", "kind", "predicted", "measured", "error"):
                detail.add_column(col, justify="left" if col in ("layer", "kind") else "right")
            for r in res.rows:
                detail.add_row(r.module, r.kind, _fmt(r.predicted), _fmt(r.measured), _fmt(r.error))
            console.print(detail)

    everything = [e for res in results for e in res.errors]
    med, p80 = percentile(everything, 50), percentile(everything, 80)
    console.print(f"\n[bold]Summary[/bold]: {len(results)} models, {len(everything)} layers compared "
                  f"(+{sum(r.mismatched_zeros for r in results)} where only one side is zero/non-finite)")
    console.print(f"  median |error| = {med:.3f} decades (goal <= 0.25: {'met' if med <= 0.25 else 'NOT met'})")
    console.print(f"  p80    |error| = {p80:.3f} decades (goal <= 0.5:  {'met' if p80 <= 0.5 else 'NOT met'})")
    worst_models = sorted(results, key=lambda r: -percentile(r.errors, 50) if r.errors else 0)[:10]
    console.print("  worst 10 models by median |error|: " + ", ".join(
        f"{short(r.target)} ({percentile(r.errors, 50):.2f})" for r in worst_models))
    unknown: dict[str, list[str]] = {}
    for res in results:
        for op in res.unknown_ops:
            unknown.setdefault(op, []).append(short(res.target))
    console.print("  estimate.unknown_ops seen: " + ("; ".join(
        f"{op} ({len(ms)} models, e.g. {ms[0]})" for op, ms in sorted(unknown.items())) or "none"))
    if skipped:
        console.print(f"  skipped {len(skipped)} models:")
        for target, reason in skipped:
            console.print(f"    {short(target)}: {reason}", markup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="zoo, failures, healthy and a 6x4 MLP grid instead of the full grid")
    parser.add_argument("--verbose", action="store_true", help="per-layer tables")
    opts = parser.parse_args()
    console = Console(width=170)
    progress = Console(stderr=True)
    results: list[ModelResult] = []
    skipped: list[tuple[str, str]] = []
    for target in targets(opts.quick):
        try:
            results.append(compare(target))
            progress.print(f"{short(target)}: median |error| {percentile(results[-1].errors, 50):.2f}", markup=False, highlight=False)
        except Exception as exc:  # one broken fixture must not hide the others
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            if opts.verbose:
                reason += "\n" + traceback.format_exc()
            skipped.append((target, reason))
    report(results, skipped, opts.verbose, console)


if __name__ == "__main__":
    main()
