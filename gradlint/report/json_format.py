"""`--format json`: the report contract (docs/spec/report.md), exactly."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from gradlint.report import report_dict
from gradlint.report.escape import json_text

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport


def _finite(value: Any) -> Any:
    """Non-finite numbers as null (the contract), strings made interchangeable (gradlint.report.escape)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return json_text(value)
    if isinstance(value, dict):
        return {json_text(k) if isinstance(k, str) else k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render(targets: list[TargetReport]) -> str:
    return json.dumps(_finite(report_dict(targets)), indent=2, allow_nan=False)
