"""Baselines: adopt gradlint on a model zoo that already has findings, and fail only on new ones.

A baseline records findings by target, rule and module path, never by line number, so editing the
file above a layer does not resurrect its baselined finding; only a new rule hit or a new module does.
It also records each finding's magnitude (how many decades the gradient falls or grows, from the
finding's evidence), and a baselined finding is reported again once it is materially worse: at least
`WORSE_BY` decades (a factor of ten in gradient) beyond the recorded value. File targets are keyed by
their path relative to the project root (the configuration's folder), so a run from a subfolder or with
`--config ../pyproject.toml` matches the same entries."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradlint.grouping import flatten, group
from gradlint.types import ErrorKind, Finding, GradlintError

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport

VERSION = 1

Key = tuple[str, str]  # (rule code, module path)

WORSE_BY = 1.0  # decades: a baselined finding this much worse than recorded is reported again
# Evidence fields that hold a finding's size in decades of gradient (or activation) change, first found wins.
MAGNITUDE_FIELDS = ("estimated_log10", "estimated_decades", "estimated_std_decades", "estimated_layer_decades")


def magnitude(finding: Finding) -> float | None:
    """The finding's size in decades (absolute log10), from its evidence; None when it has none."""
    for key in MAGNITUDE_FIELDS:
        value = finding.evidence.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return abs(float(value))
    return None


def stable_target(target: str, root: str | Path | None) -> str:
    """`target` with its file path relative to `root` (how the baseline names it)."""
    if root is None:
        return target
    head, paren, rest = target.partition("(")
    location, colon, name = head.rpartition(":")
    if not colon or not location.endswith(".py"):
        return target
    rel = os.path.relpath(os.path.abspath(location), os.path.abspath(root))
    if rel.startswith(".."):  # outside the project: its absolute path is as stable as it gets
        rel = os.path.abspath(location)
    return f"{rel.replace(os.sep, '/')}:{name}{paren}{rest}"


def _key(finding: Finding) -> Key:
    return finding.rule, finding.module


def build(reports: list[TargetReport], root: str | Path | None = None) -> dict[str, Any]:
    """The baseline document: per target, per rule, how many findings each module has, and (under
    "magnitudes", which older readers ignore) the largest magnitude among them."""
    targets: dict[str, dict[str, dict[str, int]]] = {}
    sizes: dict[str, dict[str, dict[str, float]]] = {}
    for report in reports:
        if not report.ok:
            continue  # a target that could not be analysed has nothing to baseline
        counts = Counter(_key(f) for primary in report.findings for f in primary.members())
        rules: dict[str, dict[str, int]] = {}
        for (rule, module), n in sorted(counts.items()):
            rules.setdefault(rule, {})[module] = n
        key = stable_target(report.target, root)
        targets[key] = rules
        for f in flatten(report.findings):
            size = magnitude(f)
            if size is not None:
                entry = sizes.setdefault(key, {}).setdefault(f.rule, {})
                entry[f.module] = round(max(size, entry.get(f.module, 0.0)), 3)
    return {"gradlint_baseline": VERSION, "targets": targets, "magnitudes": sizes}


def write(path: str | Path, reports: list[TargetReport], root: str | Path | None = None) -> int:
    """Write the baseline of `reports` to `path`; the number of findings recorded."""
    document = build(reports, root)
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sum(n for rules in document["targets"].values() for modules in rules.values() for n in modules.values())


class Known(dict[str, Counter[Key]]):
    """Per target, the baselined (rule, module) counts, and the recorded magnitudes."""

    magnitudes: dict[str, dict[Key, float]]


def load(path: str | Path) -> Known:
    """Per target, the baselined (rule, module) counts. Raises GradlintError on a missing or foreign file."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GradlintError(ErrorKind.LOAD, f"Cannot read baseline {path}: {exc}. Create one with --write-baseline {path}.") from exc
    if not isinstance(document, dict) or document.get("gradlint_baseline") != VERSION:
        raise GradlintError(ErrorKind.LOAD, f"{path} is not a gradlint baseline (version {VERSION}); recreate it with --write-baseline.")
    return load_document(document)


def load_document(document: dict[str, Any]) -> Known:
    """The counts of an already parsed baseline document (what `build` returns)."""
    known = Known({
        target: Counter({(rule, module): int(n) for rule, modules in rules.items() for module, n in modules.items()})
        for target, rules in document.get("targets", {}).items()
    })
    known.magnitudes = {
        target: {(rule, module): float(v) for rule, modules in rules.items() for module, v in modules.items()}
        for target, rules in document.get("magnitudes", {}).items()
    }
    return known


def apply(reports: list[TargetReport], baseline: dict[str, Counter[Key]], root: str | Path | None = None) -> int:
    """Drop baselined findings from each report in place; the number dropped. A module with more
    findings of a rule than were baselined keeps the extra ones, and a finding materially worse than
    its recorded magnitude is kept, with the recorded value in its message and evidence."""
    dropped = 0
    sizes = getattr(baseline, "magnitudes", {})
    for report in reports:
        key = stable_target(report.target, root)
        allowance = Counter(baseline.get(key, baseline.get(report.target, {})))
        recorded = sizes.get(key, sizes.get(report.target, {}))
        kept = []
        for finding in flatten(report.findings):  # members one by one: a new one keeps its group's other new ones
            if allowance[_key(finding)] > 0:
                allowance[_key(finding)] -= 1
                before, now = recorded.get(_key(finding)), magnitude(finding)
                if before is not None and now is not None and now >= before + WORSE_BY:
                    finding.message += (f" (Baselined at {before:.1f} decades; now {now:.1f}, at least {WORSE_BY:g} "
                                        "decade worse, so it is reported again.)")
                    finding.evidence["baseline_magnitude"] = before
                    kept.append(finding)
                    continue
                dropped += 1
            else:
                kept.append(finding)
        report.findings = group(kept)
    return dropped
