"""`gradlint.check(model)` with the probe leaves the user's model and the process state exactly as they were."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradlint


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.bn = nn.BatchNorm1d(12)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(12, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.fc1(x))))
        return self.head(torch.tanh(self.fc2(h)))


def _hook(module: nn.Module, args: Any, output: Any) -> None:
    return None


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "params": {k: p.detach().clone() for k, p in model.named_parameters()},
        "buffers": {k: b.detach().clone() for k, b in model.named_buffers()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "grad_ids": {k: id(p.grad) for k, p in model.named_parameters()},
        "param_ids": {k: id(p) for k, p in model.named_parameters()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": {k: (list(m._forward_hooks.items()), list(m._forward_pre_hooks.items()),
                      list(m._backward_hooks.items()), list(m._state_dict_hooks.items()))
                  for k, m in model.named_modules()},
        "torch_rng": torch.random.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
        "dtype": torch.get_default_dtype(),
        "grad_mode": torch.is_grad_enabled(),
        "global_hooks": (len(torch.nn.modules.module._global_forward_hooks),
                         len(torch.nn.modules.module._global_forward_pre_hooks)),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for group in ("params", "buffers"):
        assert before[group].keys() == after[group].keys()
        for key in before[group]:
            assert torch.equal(before[group][key], after[group][key]), f"{group} {key} changed"
    for key, grad in before["grads"].items():
        if grad is None:
            assert after["grads"][key] is None, f"{key}.grad appeared"
        else:
            assert torch.equal(grad, after["grads"][key]), f"{key}.grad changed"
    for key in ("grad_ids", "param_ids", "requires_grad", "training", "hooks", "python_rng", "dtype", "grad_mode",
                "global_hooks"):
        assert before[key] == after[key], key
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"])


def _model(train: bool, with_grads: bool) -> nn.Module:
    torch.manual_seed(3)
    model = _Net()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    model.bn.num_batches_tracked.fill_(7)
    model.fc2.weight.requires_grad_(False)
    model.fc2.register_forward_hook(_hook)
    model.register_forward_pre_hook(lambda m, a: None)
    if with_grads:
        model.head(torch.randn(4, 12)).sum().backward()  # head has .grad; the rest stay None
    model.train(train)
    return model


@pytest.mark.parametrize("train, with_grads", [(True, True), (False, False)], ids=["train-grads", "eval-nograd"])
def test_check_leaves_model_and_process_untouched(train: bool, with_grads: bool) -> None:
    model = _model(train, with_grads)
    random.seed(11)
    np.random.seed(11)
    before = _snapshot(model)
    assert (before["grads"]["head.weight"] is not None) is with_grads
    report = gradlint.check(model, probe_timeout=30)
    assert report.ok, report.error and report.error.message
    assert report.probe is not None and report.probe.skipped is None  # the probe really ran
    _assert_same(before, _snapshot(model))


def test_no_grad_mode_and_default_dtype_restored() -> None:
    model = _model(True, False)
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        with torch.no_grad():
            before = _snapshot(model)
            report = gradlint.check(model, inputs=torch.randn(8, 6, generator=torch.Generator().manual_seed(0)).float())
            after = _snapshot(model)
        assert report.ok, report.error and report.error.message
        assert report.probe is not None and report.probe.skipped is None
        _assert_same(before, after)
        assert after["grad_mode"] is False and after["dtype"] is torch.float64
    finally:
        torch.set_default_dtype(old)
