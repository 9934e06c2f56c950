"""Every target runs in a worker process; `--isolate` adds its limits. A target that hangs, crashes the
interpreter or exhausts memory costs only its own entry, reported by the stage it was in (never as a
gradlint bug); the others are checked and merged into one report."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

BAD = "fixtures/bad/models.py"
SICK = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"


def _run(*args: str, fmt: str = "json") -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", *args, "--isolate", "--format", fmt],
                          capture_output=True, text=True, timeout=600)
    return proc, json.loads(proc.stdout) if fmt == "json" else {}


def _entry(report: dict[str, Any], target: str) -> dict[str, Any]:
    return next(t for t in report["targets"] if t["target"] == target)


@pytest.fixture(scope="module")
def crashes() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return _run(f"{BAD}:AbortsInConstructor", SICK, f"{BAD}:SegfaultsInForward", f"{BAD}:AllocatesHugeBuffer",
                "--isolate-memory", "2G", "--no-probe")


def test_abort_is_this_targets_error(crashes: Any) -> None:
    proc, report = crashes
    error = _entry(report, f"{BAD}:AbortsInConstructor")["error"]
    assert error["kind"] == "load"
    assert "SIGABRT" in error["message"] and "building the model" in error["message"]
    assert "on its own with --verbose" in error["message"]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_segfault_is_this_targets_error(crashes: Any) -> None:
    _, report = crashes
    error = _entry(report, f"{BAD}:SegfaultsInForward")["error"]
    assert error["kind"] == "capture" and "SIGSEGV" in error["message"] and "segmentation fault" in error["message"]
    assert "forward" in error["message"]


def test_memory_limit_stops_a_huge_allocation(crashes: Any) -> None:
    _, report = crashes
    error = _entry(report, f"{BAD}:AllocatesHugeBuffer")["error"]
    assert error["kind"] == "construct"
    assert "8589934592 bytes" in error["message"] and "--isolate-memory" in error["message"]


def test_healthy_targets_still_report_in_one_document(crashes: Any, report_schema: dict[str, Any]) -> None:
    import jsonschema

    _, report = crashes
    jsonschema.validate(report, report_schema)
    assert [t["target"] for t in report["targets"]] == [f"{BAD}:AbortsInConstructor", SICK, f"{BAD}:SegfaultsInForward",
                                                        f"{BAD}:AllocatesHugeBuffer"]
    sick = _entry(report, SICK)
    assert sick["status"] == "ok" and sick["capture"]["weighted_layers"] > 1
    assert {f["rule"] for f in sick["findings"]} & {"GL101", "GL103"}
    assert report["summary"]["errors"] == 3
    assert report["summary"]["findings"]["error"] + report["summary"]["findings"]["warning"] >= 1


def test_hang_is_killed_at_the_timeout() -> None:
    proc, _ = _run(f"{BAD}:HangsInConstructor", "--isolate-timeout", "6", "--no-probe", fmt="text")
    assert proc.returncode == 2
    out = " ".join(proc.stdout.split())
    assert f"{BAD}:HangsInConstructor" in out and "error (load)" in out and "internal" not in out
    assert "took longer than 6 s (--isolate-timeout) while importing the target's file or building the model" in out
    assert "stopped" in out
    assert "Traceback" not in proc.stdout + proc.stderr
