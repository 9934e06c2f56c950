"""A Lightning callback that watches `Trainer.fit` with `gradlint.monitor`: findings are logged as they
appear on Lightning's own logger, and the report is written (text, JSON, HTML) when fitting ends.

    trainer = lightning.Trainer(callbacks=[GradlintCallback(every=50)])

Needs the `lightning` extra (`pip install "gradlint[lightning]"`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('gradlint.integrations.lightning needs Lightning: pip install "gradlint[lightning]"') from exc

from gradlint.monitoring import FORMATS, Monitor, MonitorReport, log_finding
from gradlint.types import Finding

log = logging.getLogger("lightning.pytorch.callbacks.gradlint")  # under Lightning's logger: its handler prints it


class GradlintCallback(pl.Callback):
    """Measure every `every` optimizer steps (after backward, before clipping and the step); write the
    report to `dirpath` (default `<default_root_dir>/gradlint`) at the end of `fit`. Other keyword options
    go to `gradlint.monitor` (select, ignore, thresholds, per_module_ignores)."""

    def __init__(self, every: int = 50, dirpath: str | Path | None = None, formats: Iterable[str] = FORMATS,
                 **options: Any) -> None:
        super().__init__()
        self.every = every
        self.dirpath = dirpath
        self.formats = tuple(formats)
        self.options = options
        self.monitor: Monitor | None = None
        self.written: list[Path] = []
        self.report: MonitorReport | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor = Monitor(pl_module, self.every, on_finding=self._log(trainer), **self.options)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self.monitor is not None:
            self.monitor.step()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._finish(trainer)

    def _log(self, trainer: pl.Trainer) -> Any:
        def emit(finding: Finding) -> None:
            if trainer.is_global_zero:
                log_finding(finding, log)

        return emit

    def _finish(self, trainer: pl.Trainer) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        monitor.close()
        self.report = monitor.report()
        if trainer.is_global_zero:
            folder = Path(self.dirpath) if self.dirpath is not None else Path(trainer.default_root_dir) / "gradlint"
            self.written = monitor.save(folder, self.formats)
            log.info("gradlint: training report written to %s", ", ".join(str(p) for p in self.written))
