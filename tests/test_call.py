"""Whatever a forward takes (positional, keyword, nested dicts) and returns (tuples, dicts, dataclasses,
objects holding caches), every stage follows the contract's y with the same call."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

import gradlint
from gradlint.call import Call, as_call, first_tensor, unwrap
from gradlint.inputs import InputSpec, resolve_inputs


class Cache:
    """Stands for a transformers DynamicCache: an object holding tensors that export cannot flatten."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors


@dataclasses.dataclass
class Output:
    loss: torch.Tensor | None
    logits: torch.Tensor
    cache: Cache


class ReturnsEverything(nn.Module):
    """Keyword-only mask, a dict batch, and an output with None, a dataclass and a cache object."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, batch: dict[str, torch.Tensor], *, mask: torch.Tensor) -> tuple[Any, ...]:
        hidden = torch.tanh(self.embed(batch["x"] * 4.0)) * mask.unsqueeze(-1)
        logits = self.head(hidden)
        return (None, Output(None, logits, Cache([hidden, logits])), {"hidden": hidden})


def _call() -> Call:
    generator = torch.Generator().manual_seed(0)
    return Call(({"x": torch.randn(16, 6, generator=generator)},), {"mask": torch.ones(16)})


def test_first_tensor_is_depth_first_and_skips_other_objects() -> None:
    a, b = torch.zeros(1), torch.ones(1)
    assert first_tensor((None, Output(None, a, Cache([b])), b)) is a
    assert first_tensor({"loss": None, "logits": b}) is b
    assert first_tensor([Cache([a]), (b,)]) is b
    assert first_tensor(Cache([a])) is None


@pytest.mark.parametrize("value, args, kwargs", [
    (torch.zeros(2), 1, []),
    ((torch.zeros(2), torch.zeros(3)), 2, []),
    ([torch.zeros(2)], 1, []),
    ({"input_ids": torch.zeros(2), "attention_mask": torch.ones(2)}, 0, ["input_ids", "attention_mask"]),
])
def test_as_call_reads_like_lightning(value: Any, args: int, kwargs: list[str]) -> None:
    call = as_call(value)
    assert len(call.args) == args and list(call.kwargs) == kwargs


def test_keyword_and_dict_inputs_through_every_stage() -> None:
    model = ReturnsEverything()
    report = gradlint.check(model, inputs=_call())
    assert report.error is None, report.error
    assert report.graph is not None and report.graph.method == "torch.export"
    est = {p.module: p.log10_grad_rms for p in report.estimate.profile}
    probe = {p.module: p.log10_grad_rms for p in report.probe.profile}
    assert list(est) == ["embed", "head"] and est.keys() == probe.keys()
    # the x4 scaled, tanh-saturated input must be seen by the estimator: embed gets clearly less than head
    assert est["embed"] < -0.3 and abs(est["embed"] - probe["embed"]) < 0.15


def test_api_takes_dict_inputs_for_a_target_string(tmp_path: Any) -> None:
    (tmp_path / "kw.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(5, 2)\n"
        "    def forward(self, *, features):\n        return self.fc(features)\n"
    )
    report = gradlint.check(f"{tmp_path / 'kw.py'}:Net", inputs={"features": torch.randn(4, 5)})
    assert report.error is None, report.error
    assert report.input_source == "given"
    assert report.probe is not None and report.probe.batch == 4


def test_example_input_array_dict_is_keyword_arguments() -> None:
    model = ReturnsEverything()
    model.example_input_array = {"batch": {"x": torch.randn(3, 6)}, "mask": torch.ones(3)}
    resolved = resolve_inputs(model)
    assert resolved.source == "example_input_array" and resolved.args == ()
    assert list(resolved.kwargs) == ["batch", "mask"]
    report = gradlint.check(model)
    assert report.error is None, report.error


def test_keyword_input_specs() -> None:
    spec = InputSpec.parse("attention_mask=int64[16,128]")
    assert (spec.name, spec.dtype, spec.shape) == ("attention_mask", torch.int64, (16, 128))
    assert str(spec) == "attention_mask=int64[16,128]"
    resolved = resolve_inputs(nn.Embedding(50, 4), [InputSpec.parse("int64[2,7]"), spec])
    assert resolved.args[0].shape == (2, 7) and int(resolved.args[0].max()) < 50
    assert resolved.kwargs["attention_mask"].shape == (16, 128)


class InputIds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Embedding(64, 8)
        self.tokens = nn.Embedding(500, 8)
        self.head = nn.Linear(8, 500)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tokens

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1])
        hidden = self.tokens(input_ids) + self.pos(positions)
        if decoder_input_ids is not None:
            hidden = hidden + self.tokens(decoder_input_ids)
        return self.head(hidden)


def test_inferred_token_ids_use_the_input_embedding_and_feed_the_decoder() -> None:
    resolved = resolve_inputs(InputIds())
    ids = resolved.kwargs["input_ids"]
    assert ids.dtype == torch.int64 and ids.shape == (16, 32) and int(ids.max()) >= 64  # not the position table's range
    assert int(ids.max()) < 500 and "decoder_input_ids" in resolved.kwargs


def test_pixel_values_sized_from_the_config() -> None:
    class Vision(nn.Module):
        config = type("Config", (), {"image_size": 48, "num_channels": 1})()

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 16, stride=16)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            assert pixel_values.shape[-1] == 48, "the model checks its image size"
            return self.stem(pixel_values).flatten(1)

    assert resolve_inputs(Vision()).kwargs["pixel_values"].shape == (16, 1, 48, 48)
    assert gradlint.check(Vision()).error is None


def test_uninferable_input_error_shows_the_input_lines() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 4)

        def forward(self, x: torch.Tensor, *, state: torch.Tensor) -> torch.Tensor:
            return self.cell(x, state)

    report = gradlint.check(Odd())
    assert report.error is not None and report.error.kind.value == "input"
    assert '--input "float32[16,...]" --input "state=float32[16,...]"' in report.error.message


def test_wrappers_are_checked_as_the_module_inside() -> None:
    inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    for wrapped in (nn.DataParallel(inner), torch.compile(inner)):
        model, note = unwrap(wrapped)
        assert model is inner and note is not None
        report = gradlint.check(wrapped)
        assert report.error is None, report.error
        assert [p.module for p in report.estimate.profile] == ["0", "2"]
        assert any("inside" in n for n in report.notes)
        assert "GL001" not in {f.rule for f in report.findings}
