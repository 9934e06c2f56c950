"""The famous healthy architectures, at small widths: captured, estimated for every weighted layer, and
never flagged (a false alarm on a trusted architecture is what makes people switch a linter off)."""

from __future__ import annotations

import math

import pytest

from gradlint.pipeline import CheckOptions, check_target
from gradlint.registry import all_rules
from gradlint.types import Severity

HEALTHY = [
    "fixtures/zoo/resnet.py:ResNet", "fixtures/zoo/vgg.py:VGG", "fixtures/zoo/densenet.py:DenseNet",
    "fixtures/zoo/mobilenetv2.py:MobileNetV2", "fixtures/zoo/efficientnet.py:EfficientNet", "fixtures/zoo/unet.py:UNet",
    "fixtures/zoo/vit.py:ViT", "fixtures/zoo/gpt2.py:GPT2", "fixtures/zoo/bert.py:BERT", "fixtures/zoo/t5.py:T5",
    "fixtures/zoo/lstm_lm.py:LSTMLanguageModel", "fixtures/zoo/llama.py:Llama",
]


@pytest.mark.parametrize("target", HEALTHY, ids=[t.split(":")[-1] for t in HEALTHY])
def test_healthy_architecture_is_not_flagged(target: str) -> None:
    report = check_target(target, CheckOptions(rules=all_rules(), probe=True))
    assert report.ok, report.error and report.error.message
    assert report.estimate is not None and report.graph is not None
    assert len(report.estimate.profile) == len(report.graph.weighted_layers) > 0
    assert all(p.log10_grad_rms is not None and math.isfinite(p.log10_grad_rms) for p in report.estimate.profile)
    serious = [f"{f.rule} {f.message}" for f in report.findings if f.severity.rank >= Severity.WARNING.rank]
    assert serious == []


def test_llama_7b_shape_on_meta_is_estimated_without_weights() -> None:
    report = check_target("fixtures/zoo/llama.py:llama7b_meta", CheckOptions(rules=all_rules(), probe=True))
    assert report.ok, report.error and report.error.message
    assert report.parameters > 6_000_000_000
    assert len(report.estimate.profile) == 226
    assert all(p.log10_grad_rms is not None for p in report.estimate.profile)
    assert report.probe is not None and "meta device" in (report.probe.skipped or "")
    assert [f.rule for f in report.findings if f.severity.rank >= Severity.WARNING.rank] == []
