"""Target strings are parsed, never evaluated."""

from __future__ import annotations

import pytest

from gradlint.target import parse_target
from gradlint.types import ErrorKind, GradlintError


def test_file_target() -> None:
    spec = parse_target("models/net.py:Net")
    assert (spec.location, spec.name, spec.called, spec.args, spec.kwargs) == ("models/net.py", "Net", False, (), {})
    assert spec.is_file


def test_dotted_module_target_with_attribute_path() -> None:
    spec = parse_target("torchvision.models:resnet.ResNet")
    assert spec.location == "torchvision.models"
    assert spec.name == "resnet.ResNet"
    assert not spec.is_file


def test_call_with_literal_args_and_kwargs() -> None:
    spec = parse_target("fixtures/cases/mlp.py:MLP(12, act='tanh', sizes=[1, 2], opts={'a': (1, None)}, flag=True)")
    assert spec.called
    assert spec.name == "MLP"
    assert spec.args == (12,)
    assert spec.kwargs == {"act": "tanh", "sizes": [1, 2], "opts": {"a": (1, None)}, "flag": True}


def test_empty_call_is_called() -> None:
    spec = parse_target("m.py:Net()")
    assert spec.called and spec.args == () and spec.kwargs == {}


def test_negative_and_float_literals() -> None:
    assert parse_target("m.py:Net(-1.5, eps=1e-5)").args == (-1.5,)


@pytest.mark.parametrize("raw", [
    "m.py:Net(os.system('touch /tmp/gradlint_pwned'))",
    "m.py:Net(depth=__import__('os').getcwd())",
    "m.py:Net(x)",
    "m.py:Net(1 if True else 2)",
    "m.py:Net(**{'a': 1})",
    "m.py:Net(*[1, 2])",
])
def test_non_literal_arguments_are_rejected(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a) or 0)
    with pytest.raises(GradlintError) as info:
        parse_target(raw)
    assert info.value.kind is ErrorKind.LOAD
    assert called == []


@pytest.mark.parametrize("raw", ["Net", "m.py:", ":Net", "m.py:Net(", "m.py:1Net", "m.py:Net()()", "m.py:Net[0]"])
def test_malformed_targets(raw: str) -> None:
    with pytest.raises(GradlintError) as info:
        parse_target(raw)
    assert info.value.kind is ErrorKind.LOAD
    assert info.value.message
