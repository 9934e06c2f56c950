"""A transfer rule that raises is recorded as a typed note and reported by GL001 with the op and the
error; the estimate falls back for that op only and says what it used."""

from __future__ import annotations

import pytest
import torch
from gradlint.rules.GL001_capture_incomplete import CaptureIncomplete
from torch import nn

import gradlint.estimate as estimator
from gradlint.capture import capture
from gradlint.estimate import estimate
from gradlint.estimate.notes import TransferFailure
from gradlint.estimate.table import TABLE, Entry, Family
from gradlint.estimate.weights import WeightTable
from gradlint.rule import RuleContext


def _model() -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)), (torch.randn(4, 8),)


def _gl001(model: nn.Module, args: tuple[torch.Tensor]) -> tuple[list[TransferFailure], list[str]]:
    graph = capture(model, args)
    est = estimate(graph, WeightTable(model), args)
    findings = list(CaptureIncomplete().check(RuleContext(graph, est, model, None)))
    return est.failures, [f.message for f in findings]


def _broken(node: object, ctx: object) -> object:
    raise ZeroDivisionError("a bug in this rule")


def test_a_raising_transfer_rule_is_a_gl001_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    model, args = _model()
    assert _gl001(model, args) == ([], [])
    monkeypatch.setitem(TABLE, "linear", Entry(Family.WEIGHTED, _broken))
    failures, messages = _gl001(model, args)
    assert [(f.op, f.stage, f.error) for f in failures] == [("linear", "transfer rule", "ZeroDivisionError: a bug in this rule")] * 2
    assert len(messages) == 2 and all("`linear`" in m and "ZeroDivisionError: a bug in this rule" in m for m in messages)


def test_a_failing_pointwise_composite_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    model, args = _model()

    def refuse(*_: object) -> object:
        raise RuntimeError("not on float64")

    monkeypatch.setattr(estimator, "pointwise_stat", refuse)
    failures, messages = _gl001(model, args)
    assert [(f.op, f.stage) for f in failures] == [("tanh", "pointwise composite")]
    assert "RuntimeError: not on float64" in messages[0] and "the generic rule" in messages[0]
