"""How fast do the commands that need no model answer? (Goal, issue 15: `gradlint --version` and `gradlint
rules` <= 0.3 s.) Each command runs in a fresh interpreter, the rounds interleaved so that a busy machine
slows every command alike; the table gives the median and the fastest wall time and the median CPU time, next to the floors
(`python -c pass`, and `import click, rich.console`, what any rich click CLI pays) and `import torch`.

    python3 bench/startup.py [--rounds 7]

Bytecode caches are allowed (as on any installed copy), so the first round, which may write them, is dropped.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ENTRY = "import sys; from gradlint.cli import run; sys.argv[0] = 'gradlint'; run()"
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("import click, rich.console", ["-c", "import click, rich.console"]),
    ("gradlint --version", ["-c", ENTRY, "--version"]),
    ("gradlint --help", ["-c", ENTRY, "--help"]),
    ("gradlint rules", ["-c", ENTRY, "rules"]),
    ("gradlint rules --output-format json", ["-c", ENTRY, "rules", "--output-format", "json"]),
    ("gradlint explain GL101", ["-c", ENTRY, "explain", "GL101"]),
    ("gradlint check --select GL999 (usage error)", ["-c", ENTRY, "check", "--select", "GL999", "fixtures/cases/mlp.py:MLP"]),
    ("import torch", ["-c", "import torch"]),
]
GOALS = {"gradlint --version": 0.3, "gradlint rules": 0.3}


def wall(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process: CPU time barely moves with the machine's load."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, timeout=120)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()
    for _, args in COMMANDS:  # warm-up: bytecode caches written, files in the page cache
        wall(args)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in COMMANDS}
    for _ in range(opts.rounds):
        for name, args in COMMANDS:
            times[name].append(wall(args))
    try:
        load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        load = ""
    print(f"Fresh-process wall time, seconds ({opts.rounds} interleaved rounds; {load})")
    print(f"{'command':<46} {'median':>7} {'fastest':>8} {'cpu':>6}  goal (median wall)")
    for name, _ in COMMANDS:
        walls = [w for w, _ in times[name]]
        med, best, cpu = statistics.median(walls), min(walls), statistics.median(c for _, c in times[name])
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<= {goal} s: {'met' if med <= goal else 'NOT met'}"
        print(f"{name:<46} {med:>7.3f} {best:>8.3f} {cpu:>6.3f}  {verdict}")


if __name__ == "__main__":
    main()
