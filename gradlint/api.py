"""The Python API for notebooks and scripts: `gradlint.check(model_or_target)`."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Any

from torch import nn

from gradlint.call import as_call
from gradlint.inputs import InputSpec
from gradlint.pipeline import CheckOptions, TargetReport, analyse, check_target
from gradlint.types import ErrorKind, GradlintError


def check(model_or_target: nn.Module | str, inputs: Any = None, probe: bool = True, *,
          select: Iterable[str] | None = None, ignore: Iterable[str] = (), thresholds: dict[str, dict[str, Any]] | None = None,
          probe_timeout: float | None = 60.0) -> TargetReport:
    """Check one model (an `nn.Module`, or a target string) and return its report.

    `inputs` is what the forward is called with, read as Lightning reads `example_input_array`: a tensor
    (the one argument), a tuple or list (positional arguments), a dict (keyword arguments); or shape
    strings like "float32[16,3,32,32]" / "attention_mask=int64[16,32]". Without it the contract's input
    resolution applies. The report has `.findings` and `.to_dict()`."""
    from gradlint.registry import all_rules, select_rules

    rules = select_rules(all_rules(), select, ignore)
    specs = None
    if isinstance(inputs, str):
        specs = [InputSpec.parse(inputs)]
    elif isinstance(inputs, (list, tuple)) and inputs and all(isinstance(i, str) for i in inputs):
        specs = [InputSpec.parse(i) for i in inputs]
    options = CheckOptions(rules=rules, thresholds=thresholds or {}, inputs=specs, probe=probe, probe_timeout=probe_timeout)
    given = as_call(inputs) if inputs is not None and specs is None else None
    from gradlint.notebook import NotebookReport

    if isinstance(model_or_target, str):
        return NotebookReport.of(check_target(model_or_target, options, given))
    report = NotebookReport(type(model_or_target).__name__)
    try:
        analyse(model_or_target, report, options, None, given)
    except GradlintError as exc:
        report.error = exc
    except Exception as exc:  # a bug in gradlint must not escape into the user's notebook
        report.error = GradlintError(ErrorKind.INTERNAL, f"gradlint failed with {type(exc).__name__}: {exc}. This is a bug in gradlint; please report it.")
        report.traceback = traceback.format_exc()
    return report
