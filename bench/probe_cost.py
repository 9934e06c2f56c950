"""What does the probe cost next to the forward+backward pass it is built on, and does it measure what
an independent measurement (bench/accuracy.py) measures?

    python3 bench/probe_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from bench.accuracy import SEEDS, measure, percentile, weighted_modules
from gradlint.inputs import resolve_inputs
from gradlint.load import load_target, restored_interpreter_state
from gradlint.probe import run_probe

MODELS = (
    "fixtures/zoo/resnet.py:ResNet",
    "fixtures/zoo/gpt2.py:GPT2",
    "fixtures/cases/mlp.py:MLP",
)


def layer_specs(model: nn.Module) -> list[tuple[str, str, str]]:
    """run_probe's (module path, kind, weight name) for every weighted layer; the weight is its first 2-D+ parameter."""
    specs = []
    for name in weighted_modules(model):
        module = model.get_submodule(name)
        weight = next(p for p, t in module.named_parameters(recurse=False) if t.dim() >= 2)
        specs.append((name, type(module).__name__, f"{name}.{weight}" if name else weight))
    return specs


def plain_step(model: nn.Module, args: tuple[Any, ...]) -> None:
    """The floor: one training-mode forward and backward of L = sum(y * g)."""
    out = model(*args)
    y = out if isinstance(out, torch.Tensor) else out[0]
    (y * torch.randn_like(y)).sum().backward()
    model.zero_grad(set_to_none=True)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cost(target: str, reps: int) -> dict[str, Any]:
    with restored_interpreter_state():
        model = load_target(target).model
    args = resolve_inputs(model).args
    layers = layer_specs(model)
    twin = copy.deepcopy(model).train()
    probe = lambda: run_probe(model, args, layers, timeout=None)  # noqa: E731
    plain = lambda: plain_step(twin, args)  # noqa: E731
    probe(), plain()  # warm-up
    probe_times, plain_times = [], []
    for _ in range(reps):  # interleaved, so load from other processes hits both alike
        probe_times.append(timed(probe))
        plain_times.append(timed(plain))
    result = run_probe(model, args, layers, timeout=None)
    independent = measure(model, SEEDS)
    diffs = [
        abs(p.log10_grad_rms - independent[p.module])
        for p in result.profile if p.log10_grad_rms is not None and independent.get(p.module) is not None
    ]
    return {
        "target": target, "layers": len(layers), "batch": result.batch,
        "probe": statistics.median(probe_times), "plain": statistics.median(plain_times), "diffs": diffs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 timed runs instead of 5")
    opts = parser.parse_args()
    reps = 3 if opts.quick else 5
    console = Console(width=150)
    rows = [cost(t, reps) for t in MODELS]
    table = Table(title=f"Probe cost: run_probe vs plain forward+backward (median of {reps} after warm-up)")
    for i, col in enumerate(("model", "layers", "batch", "probe s", "fwd+bwd s", "ratio", "median |probe - independent|", "max")):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(r["target"].removeprefix("fixtures/"), str(r["layers"]), str(r["batch"]), f"{r['probe']:.3f}",
                      f"{r['plain']:.3f}", f"{r['probe'] / r['plain']:.2f}x", f"{percentile(r['diffs'], 50):.3f}",
                      f"{max(r['diffs'], default=float('nan')):.3f}")
    console.print(table)
    worst = max(r["probe"] / r["plain"] for r in rows)
    diffs = [d for r in rows for d in r["diffs"]]
    med = percentile(diffs, 50)
    console.print(f"Summary: worst cost ratio {worst:.2f}x (goal <= 1.5x: {'met' if worst <= 1.5 else 'NOT met'}); "
                  f"median per-layer |probe - independent (median of {len(SEEDS)} seeds)| = {med:.3f} decades over "
                  f"{len(diffs)} layers (goal <= 0.1: {'met' if med <= 0.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
