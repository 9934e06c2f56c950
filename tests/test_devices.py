"""`--device` is a usage error before any work when torch cannot use it here; a model that asks for a
device this machine lacks is told so, with the way out."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

HEALTHY = "fixtures/workers/healthy.py:HeMLP"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing is absent")


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "check", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("device, says", [
    ("bogus", "is not a device torch knows"),
    ("meta", "--device meta cannot run the probe"),
    pytest.param("cuda:0", "this machine has no cuda device", marks=NO_CUDA),
])
def test_an_unusable_device_is_a_usage_error_before_any_work(device: str, says: str) -> None:
    proc = _check(HEALTHY, "--device", device, "--format", "json")
    assert proc.returncode == 2 and says in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""  # no target was checked


def test_cpu_is_accepted() -> None:
    proc = _check(HEALTHY, "--device", "cpu", "--input", "float32[8,64]", "--format", "json")
    assert proc.returncode == 0, proc.stderr


@NO_CUDA
@pytest.mark.parametrize("name, kind", [("BuildsOnCuda", "construct"), ("MovesInputToCuda", "capture")])
def test_a_model_that_wants_an_absent_device_gets_the_way_out(name: str, kind: str) -> None:
    import json

    proc = _check(f"fixtures/bad/wants_cuda.py:{name}", "--input", "float32[2,4]", "--format", "json")
    error = json.loads(proc.stdout)["targets"][0]["error"]
    assert proc.returncode == 2 and error["kind"] == kind
    assert "which this machine does not have" in error["message"] and "torch.cuda.is_available()" in error["message"]
