"""Does gradlint flag the fixtures that have a gradient problem and leave the healthy ones alone?

Runs every zoo and case fixture through gradlint.pipeline.check_target with every rule that exists
right now and the probe, and prints a confusion table: expected problem vs flagged (a finding at
warning or above, after the probe's confirmation).

    python3 bench/verdicts.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table

from bench._fixtures import case_targets, zoo_targets
from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.registry import all_rules, builtin_rules_dir, load_rule_dir
from gradlint.rule import Rule
from gradlint.types import GradlintError, Severity

# MLP configurations whose verdict the literature settles (fixtures/cases/mlp.py docstring).
MLP_EXPECTED: dict[str, bool] = {
    "MLP(depth=10, act='relu', init='kaiming')": False,  # He et al. 2015
    "MLP(depth=10, act='tanh', init='xavier')": False,  # Glorot & Bengio 2010, moderate depth
    "MLP(depth=10, act='selu', init='lecun')": False,  # Klambauer et al. 2017
    "MLP(depth=30, act='sigmoid')": True,  # vanishing (Glorot & Bengio 2010)
    "MLP(depth=20, act='tanh', init='large')": True,  # chaotic phase (Poole et al. 2016)
    "MLP(depth=20, act='relu', init='small')": True,  # each layer multiplies the gradient by ~0.006
}


# Broken-looking fixtures that bench/trainability.py measured training under both plain SGD and Adam: by the
# one meaning of severity they must not get a warning (their finding stays, at info).
TRAINS_ANYWAY = {
    "UnscaledAttention": "q and k get more relative update than v at init; trains with SGD and Adam (GL402: info)",
}


def expectations(quick: bool) -> list[tuple[str, bool]]:
    """(target, expected problem) for every fixture; --quick leaves out the zoo."""
    pairs: list[tuple[str, bool]] = []
    if not quick:
        pairs += [(t, "deep_sigmoid" in t) for t in zoo_targets()]
    pairs += [(t, t.split(":")[-1] not in TRAINS_ANYWAY) for t in case_targets("failures")]
    pairs += [(t, False) for t in case_targets("healthy")]
    pairs += [(f"fixtures/cases/mlp.py:{call}", problem) for call, problem in MLP_EXPECTED.items()]
    return pairs


def available_rules() -> tuple[list[type[Rule]], list[str]]:
    """Every rule that imports right now. Rules are being written while this runs: when one file is
    broken, load the others one by one (each from a directory holding only that file) and name it."""
    try:
        return all_rules(), []
    except GradlintError:
        pass
    rules: list[type[Rule]] = []
    broken: list[str] = []
    for file in sorted(builtin_rules_dir().glob("*.py")):
        if file.name.startswith("_"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(file, tmp)
            try:
                rules.extend(load_rule_dir(tmp))
            except GradlintError as exc:
                broken.append(f"{file.name}: {exc.message[:120]}")
    return sorted(rules, key=lambda r: r.code), broken


def flagged(report: TargetReport) -> bool:
    return any(f.severity.rank >= Severity.WARNING.rank for f in report.findings)


def codes(report: TargetReport) -> str:
    """Codes that fired, with severity initial and probe verdict (+ confirmed, - refuted)."""
    marks = {True: "+", False: "-", None: ""}
    counts = Counter(f"{f.rule}:{f.severity.value[0].upper()}{marks[f.confirmed]}" for f in report.findings)
    return " ".join(f"{c}x{n}" if n > 1 else c for c, n in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="case fixtures and MLP configurations only (no zoo)")
    opts = parser.parse_args()
    console = Console(width=170)
    progress = Console(stderr=True)
    rules, broken = available_rules()
    for line in broken:
        console.print(f"rule file skipped: {line}", markup=False, highlight=False)
    options = CheckOptions(rules=rules, probe=True)
    table = Table(title=f"Verdicts with {len(rules)} rules ({', '.join(r.code for r in rules)}) and the probe")
    for col in ("fixture", "expected", "flagged", "", "codes (W/E/I, +confirmed -refuted)", "s"):
        table.add_column(col)
    confusion: Counter[tuple[bool, bool]] = Counter()
    false_alarms, misses, errors = [], [], []
    for target, problem in expectations(opts.quick):
        start = time.perf_counter()
        report = check_target(target, options)
        seconds = time.perf_counter() - start
        name = target.removeprefix("fixtures/").replace(".py:", ":")
        if report.error is not None:
            errors.append(f"{name}: ({report.error.kind.value}) {report.error.message[:150]}")
            table.add_row(name, "problem" if problem else "healthy", "error", "?", "", f"{seconds:.1f}")
            continue
        hit = flagged(report)
        confusion[(problem, hit)] += 1
        verdict = "ok" if hit == problem else ("FALSE ALARM" if hit else "miss")
        if verdict == "FALSE ALARM":
            false_alarms.append(name)
        elif verdict == "miss":
            misses.append(name)
        table.add_row(name, "problem" if problem else "healthy", "yes" if hit else "no", verdict, codes(report), f"{seconds:.1f}")
        progress.print(f"{name}: {verdict} {codes(report)}", markup=False, highlight=False)
    console.print(table)

    matrix = Table(title="Confusion")
    matrix.add_column("expected \\ gradlint")
    matrix.add_column("flagged", justify="right")
    matrix.add_column("not flagged", justify="right")
    matrix.add_row("problem", str(confusion[(True, True)]), str(confusion[(True, False)]))
    matrix.add_row("healthy", str(confusion[(False, True)]), str(confusion[(False, False)]))
    console.print(matrix)
    console.print(f"Summary: {len(false_alarms)} false alarms (healthy flagged){': ' + ', '.join(false_alarms) if false_alarms else ''}; "
                  f"{len(misses)} misses (problem not flagged){': ' + ', '.join(misses) if misses else ''}; "
                  f"{len(errors)} targets ended in an error", highlight=False)
    for line in errors:
        console.print("  " + line, markup=False, highlight=False)


if __name__ == "__main__":
    main()
