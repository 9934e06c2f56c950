"""Baselines: adopt gradlint on a model zoo that already has findings, and fail only on new ones.

A baseline records findings by target, rule and module path, never by line number, so editing the
file above a layer does not resurrect its baselined finding; only a new rule hit or a new module does."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from gradlint.grouping import flatten, group
from gradlint.pipeline import TargetReport
from gradlint.types import ErrorKind, Finding, GradlintError

VERSION = 1

Key = tuple[str, str]  # (rule code, module path)


def _key(finding: Finding) -> Key:
    return finding.rule, finding.module


def build(reports: list[TargetReport]) -> dict[str, Any]:
    """The baseline document: per target, per rule, how many findings each module has."""
    targets: dict[str, dict[str, dict[str, int]]] = {}
    for report in reports:
        if not report.ok:
            continue  # a target that could not be analysed has nothing to baseline
        counts = Counter(_key(f) for primary in report.findings for f in primary.members())
        rules: dict[str, dict[str, int]] = {}
        for (rule, module), n in sorted(counts.items()):
            rules.setdefault(rule, {})[module] = n
        targets[report.target] = rules
    return {"gradlint_baseline": VERSION, "targets": targets}


def write(path: str | Path, reports: list[TargetReport]) -> int:
    """Write the baseline of `reports` to `path`; the number of findings recorded."""
    document = build(reports)
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sum(n for rules in document["targets"].values() for modules in rules.values() for n in modules.values())


def load(path: str | Path) -> dict[str, Counter[Key]]:
    """Per target, the baselined (rule, module) counts. Raises GradlintError on a missing or foreign file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GradlintError(ErrorKind.LOAD, f"Cannot read baseline {path}: {exc}. Create one with --write-baseline {path}.") from exc
    if not isinstance(document, dict) or document.get("gradlint_baseline") != VERSION:
        raise GradlintError(ErrorKind.LOAD, f"{path} is not a gradlint baseline (version {VERSION}); recreate it with --write-baseline.")
    return load_document(document)


def load_document(document: dict[str, Any]) -> dict[str, Counter[Key]]:
    """The counts of an already parsed baseline document (what `build` returns)."""
    return {
        target: Counter({(rule, module): int(n) for rule, modules in rules.items() for module, n in modules.items()})
        for target, rules in document.get("targets", {}).items()
    }


def apply(reports: list[TargetReport], baseline: dict[str, Counter[Key]]) -> int:
    """Drop baselined findings from each report in place; the number dropped. A module with more
    findings of a rule than were baselined keeps the extra ones."""
    dropped = 0
    for report in reports:
        allowance = Counter(baseline.get(report.target, {}))
        kept = []
        for finding in flatten(report.findings):  # members one by one: a new one keeps its group's other new ones
            if allowance[_key(finding)] > 0:
                allowance[_key(finding)] -= 1
                dropped += 1
            else:
                kept.append(finding)
        report.findings = group(kept)
    return dropped
