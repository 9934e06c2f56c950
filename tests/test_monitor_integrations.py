"""The training monitor's callbacks, run inside the real libraries' training loops: Lightning's Trainer.fit
and transformers' Trainer.train, each for a few steps on generated data."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradlint.sources import import_file

ROOT = Path(__file__).resolve().parents[1]


def _fixture(relative: str) -> Any:
    """A fixture file imported under a name of its own: on sys.path as `models` it would shadow the
    `models` packages other tests build."""
    path = ROOT / relative
    return import_file(f"_monitor_fixture_{path.stem}", str(path))


DeepSigmoidMLP = _fixture("fixtures/zoo/deep_sigmoid.py").DeepSigmoidMLP
classification = _fixture("fixtures/monitor/models.py").classification


class Lines(logging.Handler):
    """Collects what a library logger emits (its own handlers may not propagate to pytest's)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_lightning_callback(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="the Lightning callback needs the lightning extra (pip install 'gradlint[lightning]')")
    from gradlint.integrations.lightning import GradlintCallback, log

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = DeepSigmoidMLP(depth=12)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    x, y = classification(n=256)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = GradlintCallback(every=2)
    lines = Lines()
    log.addHandler(lines)
    try:
        trainer = pl.Trainer(max_steps=8, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                             callbacks=[callback])
        model = Classifier()
        trainer.fit(model, loader)
    finally:
        log.removeHandler(lines)
    assert callback.report is not None
    assert [m.step for m in callback.report.timeline.measures] == [0, 2, 4, 6]
    assert any(f.rule == "GL103" and f.step == 0 for f in callback.report.findings)
    assert any(line.startswith("gradlint: step 0: GL103") for line in lines.lines)
    assert sorted(p.name for p in (tmp_path / "gradlint").iterdir()) == [
        "gradlint-monitor.html", "gradlint-monitor.json", "gradlint-monitor.txt"]
    doc = json.loads((tmp_path / "gradlint" / "gradlint-monitor.json").read_text())
    assert doc["targets"][0]["findings"][0]["step"] == 0
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0


def test_transformers_trainer_callback(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the Trainer callback needs the hf extra (pip install 'gradlint[hf]')")
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the hf extra)")
    from transformers import Trainer, TrainingArguments

    from gradlint.integrations.transformers import GradlintTrainerCallback, log

    class Classifier(nn.Module):
        """A plain module as transformers models behave: labels in, loss first in the output."""

        def __init__(self) -> None:
            super().__init__()
            self.net = DeepSigmoidMLP(depth=12)

        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out = {"loss": nn.functional.cross_entropy(logits, labels), **out}
            return out

    torch.manual_seed(0)
    x, y = classification(n=128)
    dataset = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    callback = GradlintTrainerCallback(every=2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=16, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
                             learning_rate=0.05, dataloader_num_workers=0)
    lines = Lines()
    log.addHandler(lines)
    try:
        Trainer(model=Classifier(), args=args, train_dataset=dataset, callbacks=[callback]).train()
    finally:
        log.removeHandler(lines)
    report = callback.report
    assert report is not None and [m.step for m in report.timeline.measures] == [0, 2, 4]
    vanishing = next(f for f in report.findings if f.rule == "GL103")
    assert vanishing.step == 0 and vanishing.module == "net.net.0"
    # the profile is relative to the logits' gradient (the loss the forward returns first is not y)
    assert report.timeline.measures[0].profile[-1].log10_grad_rms == pytest.approx(0.0)
    assert any(line.startswith("gradlint: step 0: GL103") for line in lines.lines)
    assert (tmp_path / "gradlint" / "gradlint-monitor.html").is_file()
