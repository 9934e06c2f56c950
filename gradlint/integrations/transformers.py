"""A transformers `TrainerCallback` that watches `Trainer.train` with `gradlint.monitor`: findings are
logged as they appear on transformers' logger, and the report is written (text, JSON, HTML) at the end.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[GradlintTrainerCallback(every=50)])

Needs the `hf` extra (`pip install "gradlint[hf]"`: transformers and accelerate, which Trainer needs)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
import logging
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('gradlint.integrations.transformers needs transformers: pip install "gradlint[hf]"') from exc

from gradlint.monitoring import FORMATS, Monitor, MonitorReport, log_finding
from gradlint.types import Finding

log = logging.getLogger("transformers.gradlint")  # hf_logging.get_logger's: under transformers' handler and verbosity  # under transformers' logger and its verbosity


class GradlintTrainerCallback(TrainerCallback):
    """Measure every `every` optimizer steps (`on_pre_optimizer_step`: after backward and clipping, before
    the step); write the report to `output_dir` (default `<args.output_dir>/gradlint`) when training ends.
    Other keyword options go to `gradlint.monitor` (select, ignore, thresholds, per_module_ignores)."""

    def __init__(self, every: int = 50, output_dir: str | Path | None = None, formats: Iterable[str] = FORMATS,
                 **options: Any) -> None:
        self.every = every
        self.output_dir = output_dir
        self.formats = tuple(formats)
        self.options = options
        self.monitor: Monitor | None = None
        self.written: list[Path] = []
        self.report: MonitorReport | None = None
        self._main = True

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, **kwargs: Any) -> None:
        self._main = state.is_world_process_zero
        if model is not None:
            self.monitor = Monitor(model, self.every, on_finding=self._emit, **self.options)

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                              **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.step()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        monitor.close()
        self.report = monitor.report()
        if state.is_world_process_zero:
            folder = Path(self.output_dir) if self.output_dir is not None else Path(args.output_dir or ".") / "gradlint"
            self.written = monitor.save(folder, self.formats)
            log.info("gradlint: training report written to %s", ", ".join(str(p) for p in self.written))

    def _emit(self, finding: Finding) -> None:
        if self._main:
            log_finding(finding, log)
