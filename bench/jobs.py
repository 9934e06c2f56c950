"""`--jobs`: wall time of one `gradlint check` over 10 small targets, serial against parallel workers.

Runs `gradlint check --no-cache --format json` in fresh processes, alternating serial and parallel runs so
that machine noise hits both alike, and prints each setting's median of `--repeat` runs and its ratio to
the serial one (the issue's goal: `--jobs 2` at most 0.65x of serial on 2 cores). Also checks that the
parallel report equals the serial one, timings aside.

    python3 bench/jobs.py [--repeat 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

TARGETS = [
    "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP",
    "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP(depth=10)",
    "fixtures/workers/healthy.py:HeMLP",
    "fixtures/workers/healthy.py:HeMLP(depth=8)",
    "fixtures/zoo/lstm_lm.py:LSTMLanguageModel",
    "fixtures/zoo/mobilenetv2.py:MobileNetV2",
    "fixtures/zoo/vgg.py:VGG",
    "fixtures/zoo/resnet.py:ResNet",
    "fixtures/zoo/gpt2.py:GPT2",
    "fixtures/zoo/bert.py:BERT",
]


def _strip(entry: Any) -> Any:
    if isinstance(entry, dict):
        return {k: _strip(v) for k, v in entry.items() if k != "seconds"}
    if isinstance(entry, list):
        return [_strip(v) for v in entry]
    return entry


def _run(jobs: int) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", *TARGETS, "--no-cache", "--jobs", str(jobs),
                           "--format", "json"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return seconds, [_strip(t) for t in json.loads(proc.stdout)["targets"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    os.chdir(os.path.join(os.path.dirname(__file__), ".."))
    times: dict[int, list[float]] = {1: [], args.jobs: []}
    reports: dict[int, list[Any]] = {}
    for _ in range(args.repeat):
        for jobs in (1, args.jobs):
            seconds, reports[jobs] = _run(jobs)
            times[jobs].append(seconds)
    serial = statistics.median(times[1])
    print(f"{len(TARGETS)} targets, {os.cpu_count()} cores, median of {args.repeat} alternating runs")
    print(f"{'jobs':>4} {'seconds':>8} {'ratio':>6}")
    for jobs, values in times.items():
        median = statistics.median(values)
        print(f"{jobs:>4} {median:>8.2f} {median / serial:>6.2f}")
    print("parallel report equals serial:", reports[1] == reports[args.jobs])


if __name__ == "__main__":
    main()
