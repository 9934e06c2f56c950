"""The probe says when the contract's quantity cannot be measured as asked, and measures what can be."""

from __future__ import annotations

import torch
from torch import nn

import gradlint
from gradlint.measurable import MIN_BATCH_NORM_VALUES


class ZeroHead(nn.Module):
    """A zero-initialised classifier, as torchvision's ViT heads are: every gradient before it is exactly 0."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU())
        self.head = nn.Linear(32, 10)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ShrinkingBN(nn.Module):
    """Five stride-2 conv-BN-ReLU blocks: a 32x32 input ends as a 1x1 map, so at batch 2 the last batch
    norm normalises 2 values per channel."""

    def __init__(self) -> None:
        super().__init__()
        blocks = [m for i in range(5) for m in (nn.Conv2d(8 if i else 3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())]
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def test_zero_head_is_measured_past_and_said() -> None:
    model = ZeroHead()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = gradlint.check(model)
    assert report.error is None, report.error
    assert any("zero-initialised" in n and "head.weight" in n for n in report.notes)
    estimate = {p.module: p.log10_grad_rms for p in report.estimate.profile}
    probe = {p.module: p.log10_grad_rms for p in report.probe.profile}
    assert estimate["body.0"] is not None and probe["body.0"] is not None
    assert abs(estimate["body.0"] - probe["body.0"]) < 0.25
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's head stays zero


def test_zero_layer_that_is_not_the_only_path_is_left_alone() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    nn.init.zeros_(model[0].weight)  # the output layer still gets a gradient: nothing to work around
    report = gradlint.check(model)
    assert not any("zero-initialised" in n for n in report.notes)


def test_small_probe_batch_is_enlarged_for_batch_norm() -> None:
    from gradlint.pipeline import CheckOptions, TargetReport, analyse
    from gradlint.registry import all_rules

    report = analyse(ShrinkingBN(), TargetReport("bn"), CheckOptions(rules=list(all_rules()), probe_batch=2), None)
    assert report.probe is not None and report.probe.skipped is None
    assert report.probe.batch >= MIN_BATCH_NORM_VALUES
    assert any("2 values per channel" in n and "features.13" in n for n in report.probe.notes)
    assert report.to_dict()["probe"]["notes"] == report.probe.notes
    estimate = {p.module: p.log10_grad_rms for p in report.estimate.profile}
    probe = {p.module: p.log10_grad_rms for p in report.probe.profile}
    assert abs(estimate["features.0"] - probe["features.0"]) < 0.25


def test_given_small_batch_is_kept_but_flagged() -> None:
    report = gradlint.check(ShrinkingBN(), inputs=torch.randn(2, 3, 32, 32))
    assert report.probe is not None and report.probe.batch == 2
    assert any("give a larger batch" in n for n in report.probe.notes)
