"""Input resolution, in the contract's order (spec/report.md, "Inputs")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradlint.inputs import InputSpec, resolve_inputs
from gradlint.types import ErrorKind, GradlintError


@pytest.mark.parametrize("text, dtype, shape", [
    ("float32[16,3,32,32]", torch.float32, (16, 3, 32, 32)),
    ("int64[8,128]", torch.int64, (8, 128)),
    (" float64[ 2, 5 ] ", torch.float64, (2, 5)),
])
def test_input_spec_parse(text: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    spec = InputSpec.parse(text)
    assert spec.dtype is dtype and spec.shape == shape


@pytest.mark.parametrize("text", ["float32", "float32(16,3)", "complex999[2]", "[16,3]", "float32[16,-3]", "float32[16,a]"])
def test_bad_input_spec(text: str) -> None:
    with pytest.raises(GradlintError) as info:
        InputSpec.parse(text)
    assert info.value.kind is ErrorKind.INPUT


def test_cli_specs_win_over_example_input_array() -> None:
    model = nn.Linear(7, 2)
    model.example_input_array = torch.zeros(1, 7)
    resolved = resolve_inputs(model, [InputSpec.parse("float32[4,7]"), InputSpec.parse("int64[4]")])
    assert resolved.source == "--input"
    assert [tuple(a.shape) for a in resolved.args] == [(4, 7), (4,)]
    assert [a.dtype for a in resolved.args] == [torch.float32, torch.int64]


def test_example_input_array_used_as_given() -> None:
    model = nn.Linear(7, 2)
    example = torch.arange(42.0).reshape(3, 2, 7)
    model.example_input_array = example
    resolved = resolve_inputs(model)
    assert resolved.source == "example_input_array"
    assert len(resolved.args) == 1 and torch.equal(resolved.args[0], example)


def test_example_input_array_tuple() -> None:
    model = nn.Bilinear(3, 4, 2)
    model.example_input_array = (torch.ones(2, 3), torch.ones(2, 4))
    assert [tuple(a.shape) for a in resolve_inputs(model).args] == [(2, 3), (2, 4)]


class _Wrapped(nn.Module):
    def __init__(self, first: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)  # parameters, but 1-D: not a weighted layer
        self.first = first
        self.tail = nn.Linear(2, 2)


@pytest.mark.parametrize("layer, shape, dtype", [
    (nn.Linear(11, 2), (16, 11), torch.float32),
    (nn.Conv1d(5, 2, 3), (16, 5, 64), torch.float32),
    (nn.Conv2d(3, 2, 3), (16, 3, 32, 32), torch.float32),
    (nn.Conv3d(2, 2, 3), (16, 2, 16, 16, 16), torch.float32),
    (nn.Embedding(50, 4), (16, 32), torch.int64),
])
def test_inferred_from_first_weighted_layer(layer: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    resolved = resolve_inputs(_Wrapped(layer))
    (arg,) = resolved.args
    assert tuple(arg.shape) == shape and arg.dtype == dtype
    assert "first" in resolved.source and type(layer).__name__ in resolved.source


def test_embedding_indices_in_range_and_floats_standard_normal() -> None:
    (ids,) = resolve_inputs(nn.Embedding(7, 3)).args
    assert int(ids.min()) >= 0 and int(ids.max()) < 7 and len(ids.unique()) > 1
    (x,) = resolve_inputs(nn.Linear(256, 2)).args
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1.0) < 0.1


def test_lstm_first_is_an_input_error_that_says_how() -> None:
    model = nn.Sequential(nn.LSTM(5, 8), nn.Linear(8, 2))
    with pytest.raises(GradlintError) as info:
        resolve_inputs(model)
    assert info.value.kind is ErrorKind.INPUT
    assert "--input" in info.value.message and "example_input_array" in info.value.message
    assert "LSTM" in info.value.message


def test_global_rng_not_consumed() -> None:
    linear, embedding = nn.Linear(5, 2), nn.Embedding(9, 2)  # construction draws; resolution must not
    before = torch.random.get_rng_state()
    resolve_inputs(linear)
    resolve_inputs(embedding)
    resolve_inputs(linear, [InputSpec.parse("float32[2,5]"), InputSpec.parse("int64[2]")])
    assert torch.equal(torch.random.get_rng_state(), before)


def test_draws_are_deterministic() -> None:
    a = resolve_inputs(nn.Linear(5, 2)).args[0]
    b = resolve_inputs(nn.Linear(5, 2)).args[0]
    assert torch.equal(a, b)
