"""Capture: which method follows which model, what node records carry, and that the model is untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gradlint.capture import capture
from gradlint.capture.eager import capture_eager
from gradlint.capture.export import capture_export
from gradlint.pipeline import CheckOptions, TargetReport, check_target

MODELS = "fixtures/tests/core_models.py"


def _check(target: str) -> TargetReport:
    report = check_target(target, CheckOptions(rules=[], probe=False))
    assert report.ok, report.error and report.error.message
    return report


def test_plain_model_uses_torch_export() -> None:
    graph = _check(f"{MODELS}:TinyMLP").graph
    assert graph.method == "torch.export"
    assert graph.fallback is False and graph.notes == []
    assert [r.op for r in graph.ops()] == ["linear", "relu", "linear", "relu", "linear"]


def test_value_dependent_branch_falls_back_with_note() -> None:
    graph = _check(f"{MODELS}:Branchy").graph
    assert graph.method == "eager-recording"
    assert graph.fallback is True
    assert any("torch.export" in n and "eager-recording" in n for n in graph.notes)
    assert any("branches on tensor values" in n and "core_models.py:" in n for n in graph.notes)
    assert [l.module for l in graph.weighted_layers] == ["fc1", "fc2"]


@pytest.mark.parametrize("name", ["TinyMLP", "Branchy"])
def test_node_records_carry_module_and_user_location(name: str) -> None:
    graph = _check(f"{MODELS}:{name}").graph
    linears = [r for r in graph.ops() if r.op == "linear"]
    assert linears
    for record in linears:
        assert record.module and record.module_type == "Linear"
        assert record.location is not None
        assert record.location.path == MODELS  # the user's file, relative to the repo, never torch's
        assert record.location.line > 0
    first = linears[0]
    assert first.module in ("net.0", "fc1")
    assert first.shape == (16, 8)


def test_branchy_location_lines_point_at_forward() -> None:
    graph = _check(f"{MODELS}:Branchy").graph
    source = Path(MODELS).read_text().splitlines()
    fc1 = next(r for r in graph.ops() if r.module == "fc1")
    assert "self.fc1(x)" in source[fc1.location.line - 1]


class _BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.fc(x)))))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", [capture, capture_export, capture_eager], ids=["capture", "export", "eager"])
def test_capture_leaves_model_unchanged(method) -> None:
    torch.manual_seed(0)
    model = _BNNet()
    model.bn.running_mean.fill_(0.3)
    model.eval()
    model.head.train()  # mixed flags must survive exactly
    before = _state(model)
    flags = {n: m.training for n, m in model.named_modules()}
    x = torch.randn(8, 4) + 5.0
    graph = method(model, (x,))
    assert graph.records
    after = _state(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert int(model.bn.num_batches_tracked) == 0
    assert {n: m.training for n, m in model.named_modules()} == flags


def test_capture_runs_in_training_mode() -> None:
    model = _BNNet().eval()
    graph = capture(model, (torch.randn(8, 4),))
    dropout = next(r for r in graph.ops() if r.op == "dropout")
    assert dropout.arg(2, "train") is True  # traced in eval mode it would be False
    assert not model.training and not model.drop.training


class NoGradAngles(nn.Module):
    """A rotary-style helper under `@torch.no_grad()`: torch.export wraps it in a higher-order op around a
    subgraph, whose ops must be inlined and whose outputs must pass no gradient back."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.register_buffer("inv", torch.arange(4.0))

    @torch.no_grad()
    def angles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(x.shape[1], dtype=torch.float32)[:, None] * self.inv[None]
        return t.cos(), t.sin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = self.angles(x)
        return self.fc(x) * torch.cat([cos, sin], -1)


def test_no_grad_region_is_inlined_and_detached() -> None:
    from gradlint.estimate import estimate
    from gradlint.estimate.weights import WeightTable

    model = NoGradAngles()
    inputs = (torch.randn(2, 5, 8),)
    graph = capture(model, inputs)
    assert graph.method == "torch.export"
    names = set(graph.order)
    assert all(src in names for name in graph.order for src in graph[name].inputs)
    detached = [name for name in graph.order if name.startswith("wrap_with_set_grad_enabled__detach")]
    assert len(detached) == 2  # the region returns cos and sin
    upstream, frontier = set(), list(detached)
    while frontier:
        for src in graph[frontier.pop()].inputs:
            if src not in upstream:
                upstream.add(src)
                frontier.append(src)
    assert {"cos", "sin"} <= {graph[name].op for name in upstream}
    est = estimate(graph, WeightTable(model, None), inputs)
    assert all(not est.gains.get(name) for name in detached)
