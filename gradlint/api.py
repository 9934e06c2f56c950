"""The Python API for notebooks and scripts: `gradlint.check(model_or_target)`."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

from torch import nn

from gradlint.call import as_call
from gradlint.inputs import InputSpec
from gradlint.pipeline import CheckOptions, TargetReport, analyse, check_target, model_raised
from gradlint.recorder import ConstructionRecord
from gradlint.state import preserved
from gradlint.types import ErrorKind, GradlintError


def check(model_or_target: nn.Module | str, inputs: Any = None, probe: bool = True, *,
          select: Iterable[str] | None = None, ignore: Iterable[str] = (), thresholds: dict[str, dict[str, Any]] | None = None,
          probe_timeout: float | None = 60.0, data: Any = None) -> TargetReport:
    """Check one model (an `nn.Module`, or a target string) and return its report.

    `inputs` is what the forward is called with, read as Lightning reads `example_input_array`: a tensor
    (the one argument), a tuple or list (positional arguments), a dict (keyword arguments); or shape
    strings like "float32[16,3,32,32]" / "attention_mask=int64[16,32]". Without it the contract's input
    resolution applies. `data` is a real batch instead (or a function returning one, or a DataLoader whose
    first batch is used; gradlint.data): the probe and the estimate then see your data's statistics.
    The report has `.findings` and `.to_dict()`.

    Whatever the model's code raises (SystemExit and other BaseExceptions included) becomes the report's
    error; only a real Ctrl-C propagates. Grad mode, the RNGs, default dtype and device, global module hooks
    and the hooks on the model's modules are as they were before the call (gradlint.state)."""
    from gradlint.registry import all_rules, select_rules

    rules = select_rules(all_rules(), select, ignore)
    specs = None
    if isinstance(inputs, str):
        specs = [InputSpec.parse(inputs)]
    elif isinstance(inputs, (list, tuple)) and inputs and all(isinstance(i, str) for i in inputs):
        specs = [InputSpec.parse(i) for i in inputs]
    options = CheckOptions(rules=rules, thresholds=thresholds or {}, inputs=specs, probe=probe, probe_timeout=probe_timeout,
                           data=data)
    given = as_call(inputs) if inputs is not None and specs is None else None
    from gradlint.notebook import NotebookReport

    model = model_or_target if isinstance(model_or_target, nn.Module) else None
    report = NotebookReport(model_or_target if isinstance(model_or_target, str) else type(model_or_target).__name__)
    with _ctrl_c() as pressed, preserved(model):
        try:
            if isinstance(model_or_target, str):
                return NotebookReport.of(check_target(model_or_target, options, given))
            analyse(model_or_target, report, options, _sites(model_or_target, sys._getframe(1)), given)
        except GradlintError as exc:
            report.error = exc
        except KeyboardInterrupt as exc:
            if pressed():
                raise
            report.error = model_raised(exc, report)  # raised by the model's code: no key was pressed
        except BaseException as exc:
            if isinstance(exc, Exception):  # a bug in gradlint must not escape into the user's notebook
                report.error = GradlintError(ErrorKind.INTERNAL, f"gradlint failed with {type(exc).__name__}: {exc}. "
                                             "This is a bug in gradlint; please report it.")
            else:  # SystemExit, GeneratorExit, a library's BaseException: the model ends only its own check
                report.error = model_raised(exc, report)
            report.traceback = traceback.format_exc()
    return report


def _sites(model: nn.Module, caller: FrameType | None) -> ConstructionRecord | None:
    """Where the instance's layers were built (gradlint.sites: read from the source, nothing re-run), so
    findings point at `nn.Linear(...)` in the user's class or notebook cell, as for a file target."""
    from gradlint.sites import construction_record

    try:
        return construction_record(model, caller)
    except Exception:  # source that cannot be read as expected: the findings keep their forward lines
        logging.getLogger("gradlint").debug("construction sites not found", exc_info=True)
        return None
    finally:
        del caller


@contextlib.contextmanager
def _ctrl_c() -> Iterator[Callable[[], bool]]:
    """Tell a real Ctrl-C (SIGINT, which still interrupts as before) from a KeyboardInterrupt the model raises.
    Outside the main thread no handler can be installed: every KeyboardInterrupt then counts as real."""
    seen = [threading.current_thread() is not threading.main_thread()]
    previous = signal.getsignal(signal.SIGINT) if not seen[0] else None

    def handler(signum: int, frame: Any) -> None:
        seen[0] = True
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    if not seen[0]:
        signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: seen[0]
    finally:
        if previous is not None and signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, previous)
