"""The real-world zoo through gradlint: does every torchvision, timm and transformers model built at its
library's defaults get read, estimated and probed, and how close is the estimate to the probe?

    python3 bench/zoo.py [--only SUBSTRING ...] [--library torchvision|timm|transformers ...] [--json PATH]

One row per model: status or error kind, capture method, weighted layers, layers with an estimate, layers
that estimate and probe both find exactly zero (behind zero-initialised gains; left out of the median), median
|estimate - probe| in decades over the other layers, findings (code and severity) and wall seconds. The last line sums up: models, errors, median of the per-model medians, models warned.
Models come from fixtures/real/catalog.py; libraries that are not installed are left out (and said so).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures" / "real"))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from catalog import ZooModel, all_models, both_zero, is_estimated, layer_gaps, options_for, seeded  # noqa: E402
from gradlint.pipeline import check_target  # noqa: E402
from gradlint.types import GradlintError  # noqa: E402

LIBRARIES = ("torchvision", "timm", "transformers")


@dataclass
class ZooResult:
    id: str
    target: str
    inputs: list[str]
    status: str  # "ok" or the contract's error kind
    error: str | None = None  # the first line of the error message
    method: str | None = None
    fallback: bool | None = None
    parameters: int = 0
    weighted: int = 0
    estimated: int = 0
    compared: int = 0  # layers with a non-zero gradient on at least one side
    both_zero: int = 0  # layers both find exactly zero (left out of the median)
    median_error: float | None = None  # decades; inf when a layer is zero on one side and finite on the other
    probe_skipped: str | None = None
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # gradlint's own split: load, capture, estimate, rules, probe
    layers: dict[str, list[float | None]] = field(default_factory=dict)  # module -> [estimate, probe]
    traceback: str | None = None

    @property
    def warned(self) -> bool:
        return any(f.endswith(("[warning]", "[error]")) for f in self.findings)


def run_one(model: ZooModel) -> ZooResult:
    started = time.perf_counter()
    result = ZooResult(model.id, model.target, list(model.inputs), "ok")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seeded()
            report = check_target(model.target, options_for(model))
    except GradlintError as exc:  # an --input string the installed gradlint cannot parse
        result.status, result.error = exc.kind.value, exc.message.splitlines()[0]
        result.seconds = time.perf_counter() - started
        return result
    result.seconds = time.perf_counter() - started
    result.parameters = report.parameters
    result.stages = {k: round(v, 2) for k, v in report.seconds.items()}
    if report.error is not None:
        result.status = report.error.kind.value
        result.error = report.error.message.strip().splitlines()[0]
        result.traceback = report.traceback
    if report.graph is not None:
        result.method, result.fallback = report.graph.method, report.graph.fallback
        result.weighted = len(report.graph.weighted_layers)
        result.notes = list(report.graph.notes)
    if report.estimate is not None:
        result.estimated = sum(is_estimated(p) for p in report.estimate.profile)
    if report.probe is not None and report.probe.skipped:
        result.probe_skipped = report.probe.skipped.splitlines()[0]
    gaps = layer_gaps(report)
    result.compared = len(gaps)
    result.both_zero = len(both_zero(report))
    if report.estimate is not None and report.probe is not None and report.probe.skipped is None:
        measured = {p.module: p.log10_grad_rms for p in report.probe.profile}
        result.layers = {e.module: [e.log10_grad_rms, measured.get(e.module)] for e in report.estimate.profile}
    if gaps:
        result.median_error = statistics.median(gaps.values())
    result.findings = [f"{f.rule} [{f.severity.value}]" for f in report.findings]
    del report
    return result


def summary(results: list[ZooResult]) -> dict[str, Any]:
    medians = [r.median_error for r in results if r.median_error is not None]
    return {
        "models": len(results),
        "errors": sum(r.status != "ok" for r in results),
        "median_of_medians": statistics.median(medians) if medians else None,
        "within_0.25": sum(m <= 0.25 for m in medians),
        "compared": len(medians),
        "warned": sum(r.warned for r in results),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else ("inf" if math.isinf(value) else f"{value:.2f}")


def _short_findings(findings: list[str]) -> str:
    counts: dict[str, int] = {}
    for f in findings:
        if not f.endswith("[info]"):
            counts[f] = counts.get(f, 0) + 1
    info = sum(f.endswith("[info]") for f in findings)
    parts = [f"{k}x{v}" if v > 1 else k for k, v in counts.items()]
    return " ".join(parts + ([f"+{info} info"] if info else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="run models whose id contains one of these")
    parser.add_argument("--library", nargs="*", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--json", type=Path, help="write the rows and the summary to this file")
    parser.add_argument("--traceback", action="store_true", help="print each error's traceback")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine, 2 OpenMP threads run 10x slower)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Keep the table readable: torch.export's data-dependent-shape warnings print whole graphs, and transformers
    # says on every Mamba that its CUDA kernels are absent. The JSON keeps each model's own notes.
    logging.getLogger("torch.fx.experimental.symbolic_shapes").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    console = Console(width=220)
    models = all_models(tuple(args.library))
    missing = [lib for lib in args.library if not any(m.library == lib for m in models)]
    if missing:
        console.print(f"not installed, left out: {', '.join(missing)} (pip install -e '.[zoo]')")
    if args.only:
        models = [m for m in models if any(s in m.id for s in args.only)]
    results = []
    for model in models:
        result = run_one(model)
        results.append(result)
        console.print(f"{result.id:40s} {result.status:9s} {_fmt(result.median_error):>5s} {result.seconds:6.1f}s "
                      f"{' '.join(f'{k}={v:.1f}' for k, v in result.stages.items())} {result.error or ''}"[:218], highlight=False)
        if args.traceback and result.traceback:
            console.print(result.traceback, highlight=False, markup=False)
        if args.json:  # written after every model, so a long run can be read while it goes
            args.json.write_text(json.dumps({"rows": [asdict(r) for r in results], "summary": summary(results)}, indent=1))
    table = Table(title="gradlint on the real-world zoo (fixtures/real)")
    numeric = ("weighted", "estimated", "both 0", "median err", "s")
    for column in ("model", "status", "captured by", "weighted", "estimated", "both 0", "median err", "findings", "s"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for r in results:
        method = (r.method or "-") + (" (fallback)" if r.fallback else "")
        status = r.status if r.status == "ok" else f"{r.status}: {(r.error or '')[:70]}"
        if r.status == "ok" and r.probe_skipped:
            status = f"ok, probe skipped: {r.probe_skipped[:50]}"
        table.add_row(r.id, status, method, str(r.weighted), str(r.estimated), str(r.both_zero), _fmt(r.median_error),
                      _short_findings(r.findings), f"{r.seconds:.1f}")
    console.print(table)
    s = summary(results)
    console.print(f"{s['models']} models, {s['errors']} errors, median of medians {_fmt(s['median_of_medians'])} decades "
                  f"({s['within_0.25']}/{s['compared']} within 0.25), {s['warned']} warned", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
