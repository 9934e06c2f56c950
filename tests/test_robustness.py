"""Every way a target can fail ends in that target's own one-paragraph error (or a skipped probe), never a
traceback without --verbose, and never hides the other targets. Models are in fixtures/bad/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gradlint.cli import main

BAD = "fixtures/bad/models.py"
HEALTHY = "fixtures/cases/mlp.py:MLP(depth=3)"


def _cli(*args: str) -> tuple[int, dict[str, Any], str]:
    """In-process run with --format json: (exit status, report, stderr)."""
    result = CliRunner().invoke(main, ["check", *args, "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout), result.stderr


def _process(*args: str) -> subprocess.CompletedProcess[str]:
    """A real process: torch's own logging writes to the real stderr, which CliRunner cannot see."""
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "check", *args], capture_output=True, text=True, timeout=300)


def _line(text: str) -> str:
    """`path:line` of the first line of fixtures/bad/models.py containing `text`."""
    lines = Path(BAD).read_text().splitlines()
    return f"{BAD}:{next(i for i, line in enumerate(lines, start=1) if text in line)}"


def _entry(report: dict[str, Any], target: str) -> dict[str, Any]:
    return next(t for t in report["targets"] if t["target"] == target)


def test_import_error_in_user_file_is_a_load_error_and_others_still_run() -> None:
    target = "fixtures/bad/import_error.py:Net"
    code, report, stderr = _cli(target, HEALTHY, "--no-probe")
    assert code == 2
    error = _entry(report, target)["error"]
    assert error["kind"] == "load"
    assert "fixtures/bad/import_error.py" in error["message"]
    assert "No module named 'gradlint_fixture_missing_dependency'" in error["message"]
    assert "install" in error["message"]
    assert _entry(report, HEALTHY)["status"] == "ok" and _entry(report, HEALTHY)["estimate"]["profile"]
    assert "gradlint_fixture_missing_dependency" in stderr and "Traceback" not in stderr


@pytest.fixture(scope="module")
def capture_failures() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One real process for both capture failures (the wrong shape reaches RejectsEveryCapture's raise first)."""
    proc = _process(f"{BAD}:TwoLayer", f"{BAD}:RejectsEveryCapture", "--input", "float32[16,7]", "--no-probe",
                    "--format", "json")
    return proc, json.loads(proc.stdout)


def test_wrong_input_shape_names_the_layer_and_the_shape(capture_failures: Any) -> None:
    proc, report = capture_failures
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr  # torch logs one for the failed fake-tensor propagation
    error = _entry(report, f"{BAD}:TwoLayer")["error"]
    assert error["kind"] == "capture"
    message = error["message"]
    assert "`fc1`" in message and "in_features=10" in message, message
    assert "float32[16, 7]" in message
    assert "mat1 and mat2 shapes cannot be multiplied (16x7 and 10x8)" in message
    assert _line("self.fc2(torch.relu(self.fc1(x)))") in message  # the user's line that called the layer
    assert "--input" in message and "\n" not in message


def test_forward_that_always_raises_is_a_capture_error_with_the_users_text(capture_failures: Any) -> None:
    proc, report = capture_failures
    error = _entry(report, f"{BAD}:RejectsEveryCapture")["error"]
    assert error["kind"] == "capture"
    assert "gradlint-fixture: this forward always fails" in error["message"]
    assert _line("raise RuntimeError") in error["message"]  # the raise in the user's forward
    stderr = " ".join(proc.stderr.split())
    assert f"error (capture) {BAD}:RejectsEveryCapture" in stderr and "Traceback" not in stderr


def test_verbose_shows_the_traceback_in_text_mode() -> None:
    result = CliRunner().invoke(main, ["check", f"{BAD}:RejectsEveryCapture", "--no-probe", "--verbose"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert "gradlint-fixture: this forward always fails" in result.stderr


def test_infinite_gradients_are_null_and_flagged_not_an_error() -> None:
    target = f"{BAD}:DividesByZero"
    code, report, stderr = _cli(target)
    entry = _entry(report, target)
    assert entry["status"] == "ok" and "error" not in entry
    probe = entry["probe"]
    assert probe["nonfinite"] is True and probe["log10_grad_ratio"] is None
    assert [(p["module"], p["log10_grad_rms"], p.get("nonfinite")) for p in probe["profile"]] == [
        ("fc1", None, True), ("fc2", None, True)]
    assert all(f["confirmed"] is not False for f in entry["findings"])  # a blown-up probe refutes nothing
    assert code in (0, 1) and "Traceback" not in stderr


def test_nan_forward_nulls_only_the_layers_it_reaches() -> None:
    target = f"{BAD}:LogOfNegative"
    _, report, _ = _cli(target)
    probe = _entry(report, target)["probe"]
    assert probe["nonfinite"] is True
    fc1, fc2 = probe["profile"]
    assert fc1["log10_grad_rms"] is not None and "nonfinite" not in fc1  # its output and gradient are finite
    assert fc2["log10_grad_rms"] is None and fc2["nonfinite"] is True  # its output is NaN


def test_probe_that_raises_is_skipped_with_the_users_error() -> None:
    target = f"{BAD}:FailsOnRealTensors"
    code, report, stderr = _cli(target)
    entry = _entry(report, target)
    assert entry["status"] == "ok" and entry["probe"] is None and entry["estimate"]["profile"]
    assert "ValueError: gradlint-fixture: no real data please" in entry["probe_skipped"]
    assert "--no-probe" in entry["probe_skipped"]
    assert code == 0 and "Traceback" not in stderr


def test_probe_timeout_skips_the_probe_and_keeps_the_estimate() -> None:
    target = f"{BAD}:SlowOnRealTensors(seconds=30)"
    code, report, stderr = _cli(target, "--probe-timeout", "0.5")
    entry = _entry(report, target)
    assert entry["status"] == "ok" and entry["probe"] is None
    assert "0.5 s" in entry["probe_skipped"] and "--probe-timeout" in entry["probe_skipped"]
    assert entry["seconds"]["probe"] < 5  # really stopped, not waited out
    assert entry["estimate"]["profile"][0]["module"] == "fc"
    assert code == 0 and "Traceback" not in stderr


def test_parameter_budget_skips_the_probe_with_a_reason() -> None:
    target = f"{BAD}:Wide"
    code, report, _ = _cli(target, "--probe-max-params", "1000")
    entry = _entry(report, target)
    assert entry["status"] == "ok" and entry["probe"] is None
    assert "1,083,392 parameters" in entry["probe_skipped"] and "--probe-max-params" in entry["probe_skipped"]
    assert entry["capture"]["parameters"] == 1_083_392
    assert code == 0


@pytest.mark.parametrize("size, expected", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("1000", 1000)])
def test_isolate_memory_sizes(size: str, expected: int) -> None:
    from gradlint.isolate import parse_size

    assert parse_size(size) == expected


def test_bad_isolate_memory_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check", HEALTHY, "--isolate", "--isolate-memory", "lots"])
    assert result.exit_code == 2
    assert "'lots'" in result.stderr and "Traceback" not in result.stderr
