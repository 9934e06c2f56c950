"""Report stage: the JSON contract first; every other format is a view of the same document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradlint import __version__
from gradlint.types import Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport


def report_dict(targets: list[TargetReport]) -> dict[str, Any]:
    counts = {s.value: 0 for s in Severity}
    for t in targets:
        for f in t.findings:
            counts[f.severity.value] += 1
    return {
        "tool": {"name": "gradlint", "version": __version__},
        "targets": [t.to_dict() for t in targets],
        "summary": {
            "targets": len(targets),
            "errors": sum(1 for t in targets if not t.ok),
            "findings": counts,
        },
    }


def exit_code(targets: list[TargetReport], fail_on: Severity) -> int:
    """0 clean, 1 a finding at or above `fail_on`, 2 a target that could not be analysed."""
    if any(not t.ok for t in targets):
        return 2
    if any(f.severity.rank >= fail_on.rank for t in targets for f in t.findings):
        return 1
    return 0
