"""What does a gradlint check cost, next to what PyTorch itself needs to look at the same model?

For each zoo model, runs `gradlint check --format json` (with and without the probe) in a fresh
subprocess and reads the per-stage seconds from the report, and measures, also in fresh subprocesses,
the floors: `import torch`, model construction + torch.fx.symbolic_trace, and one forward+backward at
the probe batch. Wall time and peak RSS come from /usr/bin/time -v (or getrusage in a wrapper).

    python3 bench/speed.py [--quick] [--markdown [FILE]]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from bench._fixtures import ROOT, zoo_targets

# Real sizes, by zoo file; files not listed run at their defaults. --input keeps the images at 64x64
# (224x224 for ViT-B/16, whose patch grid needs it) so a probe fits on 2 cores.
REAL_SIZE: dict[str, tuple[str, list[str]]] = {
    "resnet": ("ResNet(depth=50, width=64, num_classes=1000)", ["float32[8,3,64,64]"]),
    "vit": ("ViT(image_size=224, patch_size=16, dim=768, depth=12, heads=12, mlp_dim=3072)", ["float32[2,3,224,224]"]),
    "gpt2": ("GPT2(vocab_size=50257, block_size=1024, n_embd=768, n_layer=12, n_head=12)", []),
    "bert": ("BERT(vocab_size=30522, hidden=768, num_layers=12, num_heads=12, intermediate=3072, max_positions=512)", []),
    "llama": ("llama7b_meta", []),
    "vgg": ("VGG(cfg='D', width_div=1, num_classes=1000)", ["float32[8,3,64,64]"]),
    "densenet": ("DenseNet(growth_rate=32, num_init_features=64, num_classes=1000)", ["float32[8,3,64,64]"]),
    "mobilenetv2": ("MobileNetV2(width_mult=1.0, num_classes=1000)", ["float32[8,3,64,64]"]),
    "efficientnet": ("EfficientNet(width_mult=1.0, num_classes=1000)", ["float32[8,3,64,64]"]),
    "unet": ("UNet(base_width=64)", ["float32[8,3,64,64]"]),
    "t5": ("T5(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)", []),
    "lstm_lm": ("LSTMLanguageModel(vocab_size=10000, embed_dim=650, hidden=650, num_layers=2)", []),
}
META_TARGET = "fixtures/zoo/llama.py:llama7b_meta"
QUICK = ("resnet", "vit", "gpt2", "bert")

# Runs in a fresh interpreter: construct the model from its file without gradlint, then trace it or
# run one forward+backward. Prints JSON with the seconds of each step.
FLOOR = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
import torch
t_import = time.perf_counter() - t0
path, expr, mode, specs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("floor_target", path)
module = importlib.util.module_from_spec(spec)
sys.modules["floor_target"] = module
spec.loader.exec_module(module)
model = eval(expr if "(" in expr else expr + "()", vars(module))
t_construct = time.perf_counter() - t0
out = {"import": t_import, "construct": t_construct}
t0 = time.perf_counter()
if mode == "trace":
    try:
        torch.fx.symbolic_trace(model)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    out["trace"] = time.perf_counter() - t0
else:
    from gradlint.inputs import InputSpec, resolve_inputs
    args = resolve_inputs(model, [InputSpec.parse(s) for s in specs] or None).args
    model.train()
    t0 = time.perf_counter()
    y = model(*args)
    y = y if isinstance(y, torch.Tensor) else next(t for t in (y.values() if isinstance(y, dict) else y) if isinstance(t, torch.Tensor))
    (y * torch.randn_like(y)).sum().backward()
    out["fwdbwd"] = time.perf_counter() - t0
print(json.dumps(out))
"""


@dataclass
class Run:
    """One fresh subprocess: wall seconds, peak RSS in MB, its stdout."""

    wall: float
    rss_mb: float
    stdout: str
    returncode: int
    stderr: str = ""


def run(cmd: list[str], timeout: float = 900.0) -> Run:
    """Run `cmd` in a fresh process, measuring wall time and the peak RSS of the process tree's largest member."""
    time_bin = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if time_bin:
        wrapped = [time_bin, "-v", *cmd]
    else:
        wrapped = [sys.executable, "-c", (
            "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "sys.stderr.write('Maximum resident set size (kbytes): %d\\n' % "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)"), *cmd]
    start = time.perf_counter()
    proc = subprocess.run(wrapped, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(match.group(1)) / 1024 if match else float("nan")
    own_stderr = re.split(r"\n?Command exited with non-zero status|\n?\s*Command being timed:|\nMaximum resident set size", proc.stderr)[0]
    return Run(wall, rss, proc.stdout, proc.returncode, own_stderr)


def gradlint_cmd() -> list[str]:
    exe = shutil.which("gradlint")
    return [exe] if exe else [sys.executable, "-c", "from gradlint.cli import main; main()"]


@dataclass
class Row:
    target: str
    inputs: list[str]
    check: dict[str, Any] = field(default_factory=dict)  # with probe: wall, rss, seconds, layers
    static: dict[str, Any] = field(default_factory=dict)  # --no-probe
    trace: dict[str, Any] = field(default_factory=dict)
    fwdbwd: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check(target: str, inputs: list[str], probe: bool) -> tuple[dict[str, Any], str | None]:
    cmd = [*gradlint_cmd(), "check", target, "--format", "json", "--exit-zero", "--probe-timeout", "600"]
    cmd += [a for spec in inputs for a in ("--input", spec)]
    if not probe:
        cmd.append("--no-probe")
    r = run(cmd)
    try:
        entry = json.loads(r.stdout)["targets"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        last = (r.stderr.strip().splitlines() or ["no output"])[-1][:150]
        return {"wall": r.wall, "rss": r.rss_mb}, f"check exited {r.returncode}: {last}"
    profile = (entry.get("estimate") or {}).get("profile", [])
    result = {
        "wall": r.wall, "rss": r.rss_mb, "seconds": entry.get("seconds", {}),
        "layers": len(profile), "estimated": sum(p.get("log10_grad_rms") is not None for p in profile),
        "probe_skipped": entry.get("probe_skipped"),
    }
    problem = None
    if entry.get("status") != "ok":
        problem = f"check error: {entry.get('error', {}).get('message', '')[:150]}"
    elif probe and entry.get("probe_skipped"):
        problem = f"probe skipped: {entry['probe_skipped'][:120]}"
    return result, problem


def floor(target: str, inputs: list[str], mode: str) -> dict[str, Any]:
    path, expr = target.split(":", 1)
    r = run([sys.executable, "-c", FLOOR, path, expr, mode, json.dumps(inputs)])
    try:
        data = json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        data = {"error": (r.stderr.strip().splitlines() or ["no output"])[-1][:120]}
    data.update(wall=r.wall, rss=r.rss_mb)
    return data


def targets(quick: bool) -> list[tuple[str, list[str]]]:
    """(target, --input specs): real sizes, or with --quick the QUICK models at their defaults; LLaMA-7B on meta always."""
    chosen = []
    for default in zoo_targets():
        path, _ = default.split(":", 1)
        stem = Path(path).stem
        if stem == "llama" or (quick and stem not in QUICK):
            continue
        if quick or stem not in REAL_SIZE:
            chosen.append((default, []))
        else:
            expr, inputs = REAL_SIZE[stem]
            chosen.append((f"{path}:{expr}", inputs))
    chosen.append((META_TARGET, []))
    return chosen


def measure(target: str, inputs: list[str]) -> Row:
    row = Row(target, inputs)
    meta = target == META_TARGET
    row.static, problem = check(target, inputs, probe=False)
    row.problems += [problem] if problem else []
    if not meta:
        row.check, problem = check(target, inputs, probe=True)
        row.problems += [problem] if problem else []
        row.fwdbwd = floor(target, inputs, "fwdbwd")
    row.trace = floor(target, inputs, "trace")
    for data, what in ((row.trace, "fx trace"), (row.fwdbwd, "fwd/bwd")):
        if "error" in data:
            row.problems.append(f"{what}: {data['error']}")
    return row


def _s(x: Any) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.1f}"


def _ratio(num: Any, den: Any) -> str:
    return f"{num / den:.1f}x" if num and den and not math.isnan(num) and not math.isnan(den) else "—"


COLUMNS = ("model", "load", "capture", "estimate", "rules", "probe", "check --no-probe", "check",
           "peak MB", "import torch", "+ fx trace", "fwd/bwd", "no-probe / (import+trace)", "check / (import+trace+fwd/bwd)")


def cells(row: Row) -> list[str]:
    sec = row.check.get("seconds") or row.static.get("seconds") or {}
    trace_ok = "error" not in row.trace
    floor1 = row.trace.get("wall") if trace_ok else None
    fb = row.fwdbwd.get("fwdbwd")
    floor2 = floor1 + fb if floor1 is not None and fb is not None else None
    rss = max(row.check.get("rss", 0.0), row.static.get("rss", 0.0))
    name = row.target.removeprefix("fixtures/zoo/").replace(".py:", ":")
    return [
        name, _s(sec.get("load")), _s(sec.get("capture")), _s(sec.get("estimate")), _s(sec.get("rules")),
        _s(sec.get("probe")), _s(row.static.get("wall")), _s(row.check.get("wall")), f"{rss:.0f}",
        _s(row.trace.get("import")), _s(row.trace.get("wall")) + ("" if trace_ok else " (fails)"), _s(fb),
        _ratio(row.static.get("wall"), floor1), _ratio(row.check.get("wall"), floor2),
    ]


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ResNet, ViT, GPT-2 and BERT at their small default sizes (LLaMA-7B on meta still full size)")
    parser.add_argument("--markdown", nargs="?", const="-", metavar="FILE", help="also write the table as markdown (to FILE, or stdout)")
    opts = parser.parse_args()
    console = Console(width=220)
    imports = [run([sys.executable, "-c", "import torch"]) for _ in range(3)]
    import_wall = statistics.median(r.wall for r in imports)
    rows = []
    for target, inputs in targets(opts.quick):
        console.print(f"[dim]{target} {' '.join(inputs)}[/dim]", highlight=False)
        rows.append(measure(target, inputs))

    table = Table(title="gradlint check cost (seconds; stages from the report, walls from fresh subprocesses)")
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)
    console.print(f"python -c 'import torch' (fresh process, median of 3): {import_wall:.2f} s")
    console.print("'+ fx trace' is one fresh process: import torch + construct + torch.fx.symbolic_trace; "
                  "'fwd/bwd' is one forward+backward at the probe's input, excluding import and construction.")
    for row in rows:
        if row.target == META_TARGET:
            s = row.static
            secs, mb = s.get("wall", float("nan")), s.get("rss", float("nan"))
            console.print(f"\n[bold]LLaMA-7B on meta[/bold]: check --no-probe {secs:.1f} s (target < 10 s: "
                          f"{'met' if secs < 10 else 'NOT met'}), peak RSS {mb:.0f} MB (target < 1024 MB: "
                          f"{'met' if mb < 1024 else 'NOT met'}), {s.get('estimated', 0)} of {s.get('layers', 0)} "
                          "weighted layers with an estimate (expected 226)")
    problems = [(r.target, p) for r in rows for p in r.problems]
    if problems:
        console.print("\nNotes:")
        for target, p in problems:
            console.print(f"  {target}: {p}", markup=False, highlight=False)
    if opts.markdown:
        text = markdown(rows) + f"\n\n`import torch` alone: {import_wall:.2f} s.\n"
        if opts.markdown == "-":
            console.print("\n" + text, markup=False, highlight=False, soft_wrap=True)
        else:
            Path(opts.markdown).write_text(text)
            console.print(f"markdown table written to {opts.markdown}")


if __name__ == "__main__":
    main()
