"""`gradlint.check` against hostile models (fixtures/hostile/): whatever the model raises becomes the
report's error (a real Ctrl-C still propagates), and whatever it does to the process (grad mode, RNGs,
default dtype and device, global and own hooks) is undone: the state after the check equals the state
before, and the check itself still succeeds."""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gradlint
from gradlint.cli import main
from gradlint.types import ErrorKind

HOSTILE = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"


def _fixture(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", HOSTILE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


raises = _fixture("raises")
state = _fixture("state")


def _hooks(owner: Any) -> dict[str, Any]:
    return {k: list(v.items()) if isinstance(v, dict) else v for k, v in vars(owner).items()
            if "hook" in k and (isinstance(v, dict) or k.endswith("is_full_backward_hook"))}


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
        "device": torch.get_default_device(),
        "anomaly": torch.is_anomaly_enabled(),
        "threads": torch.get_num_threads(),
        "torch_rng": torch.random.get_rng_state().tolist(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].tolist(),
        "global_hooks": _hooks(torch.nn.modules.module),
        "model_hooks": {name: _hooks(m) for name, m in model.named_modules()},
        "sigint": signal.getsignal(signal.SIGINT),
    }


def _check_untouched(model: nn.Module, **kwargs: Any) -> Any:
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    before = _snapshot(model)
    report = gradlint.check(model, **kwargs)
    after = _snapshot(model)
    for key in before:
        assert after[key] == before[key], f"{key} changed"
    return report


@pytest.mark.parametrize("name, shown", [
    ("SystemExitForward", "SystemExit(3) (sys.exit)"),
    ("BaseExceptionForward", "Custom('not an Exception')"),
    ("GeneratorExitForward", "GeneratorExit()"),
    ("KeyboardInterruptForward", "KeyboardInterrupt('raised by the model')"),
])
def test_what_the_forward_raises_is_the_reports_error(name: str, shown: str) -> None:
    report = _check_untouched(getattr(raises, name)())
    assert report.error is not None and report.error.kind is ErrorKind.CAPTURE
    assert f"the model's code raised {shown}" in report.error.message
    assert report.to_dict()["status"] == "error"


def test_exit_in_the_probe_costs_only_the_probe() -> None:
    report = _check_untouched(raises.SystemExitInProbe())
    assert report.ok and report.estimate is not None
    assert report.probe is not None and "SystemExit: 5" in (report.probe.skipped or "")


def test_exit_while_building_a_target_string() -> None:
    report = gradlint.check(f"{HOSTILE / 'raises.py'}:SystemExitInit", probe=False)
    assert report.error is not None and report.error.kind is ErrorKind.CONSTRUCT and "SystemExit" in report.error.message


def test_a_real_ctrl_c_propagates() -> None:
    """With Python's own SIGINT handler, as an interactive run has it (a background job, as CI may start the
    suite, inherits SIGINT ignored, and then no Ctrl-C arrives at all)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            gradlint.check(raises.RealInterruptForward())
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, inherited)


@pytest.mark.parametrize("name", ["GradOff", "Reseeds", "GlobalHooks", "SelfHooks", "DefaultDtype", "DefaultDevice"])
def test_state_the_forward_changes_is_restored(name: str) -> None:
    report = _check_untouched(getattr(state, name)())
    assert report.ok, report.error and report.error.message
    assert report.probe is not None and report.probe.skipped is None, report.probe and report.probe.skipped
    assert report.estimate is not None and report.estimate.profile


def test_grad_off_forward_under_no_grad_caller() -> None:
    """The caller's own grad mode (off) is what comes back, not gradlint's."""
    with torch.no_grad():
        report = _check_untouched(state.GradOff())
        assert not torch.is_grad_enabled()
    assert report.ok


@pytest.mark.parametrize("name", ["import_dtype", "import_device"])
def test_state_changed_at_import_is_restored(name: str) -> None:
    model = nn.Linear(2, 2)  # the snapshot's model part: any will do, the target builds its own
    before = _snapshot(model)
    report = gradlint.check(f"{HOSTILE / name}.py:Net")
    assert _snapshot(model) == before
    assert report.ok, report.error and report.error.message
    healthy = gradlint.check(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))  # the next check is unaffected
    assert healthy.ok and healthy.probe is not None and healthy.probe.skipped is None


def _entry(result_stdout: str, index: int) -> dict[str, Any]:
    entry = json.loads(result_stdout)["targets"][index]
    entry.pop("seconds", None)
    if entry.get("probe"):
        entry["probe"].pop("seconds", None)
    return entry


def test_cli_neighbours_are_unaffected() -> None:
    """In one in-process CLI run, a healthy model after each state-changing target gets the same result as alone."""
    healthy = "fixtures/cases/healthy.py:ReLUHe"
    alone = CliRunner().invoke(main, ["check", healthy, "--format", "json"])
    assert alone.exit_code == 0, alone.output
    hostile = [f"fixtures/hostile/{t}" for t in ("import_device.py:Net", "import_dtype.py:Net", "state.py:GlobalHooks",
                                                 "state.py:DefaultDevice", "state.py:Reseeds", "raises.py:SystemExitForward")]
    mixed = CliRunner().invoke(main, ["check", *[x for t in hostile for x in (t, healthy)], "--format", "json"])
    assert mixed.exit_code == 2, mixed.output  # SystemExitForward is an error, the run goes on
    assert "Traceback" not in mixed.output
    expected = _entry(alone.stdout, 0)
    for index in range(1, 2 * len(hostile), 2):
        assert _entry(mixed.stdout, index) == expected, hostile[index // 2]
    assert json.loads(mixed.stdout)["targets"][-2]["error"]["kind"] == "capture"
    assert sys.modules.get("torch") is torch
