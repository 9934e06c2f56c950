"""User code never runs where the report is written: hostile models (fixtures/workers/), checked through the
CLI beside healthy neighbours in one call, leave a valid report on stdout, each its own clear error, the
neighbours' results as they are alone, and no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

W = "fixtures/workers"
HEALTHY = f"{W}/healthy.py:HeMLP"
SICK = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP(in_features=64)"
INPUT = ["--input", "float32[8,64]"]
FORWARD = f"{W}/forwards.py"
HOSTILE = [
    f"{W}/prints_at_import.py:Net", f"{W}/exits_at_import.py:Net", f"{W}/default_dtype_at_import.py:Net",
    f"{W}/meta_device_at_import.py:Net", f"{W}/patches_torch_at_import.py:Net",
    f"{FORWARD}:PrintsInForward", f"{FORWARD}:ReplacesStdout", f"{FORWARD}:ClosesStdout", f"{FORWARD}:ClosesFd1",
    f"{FORWARD}:ExitsInForward",
    f"{FORWARD}:SysExitInForward", f"{FORWARD}:SysExitInProbe", f"{FORWARD}:RaisesBaseException",
    f"{FORWARD}:RaisesGeneratorExit", f"{FORWARD}:RaisesKeyboardInterrupt", f"{FORWARD}:SwallowsAlarm",
    f"{FORWARD}:SpawnsChildren",
]


def _gradlint(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "check", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _comparable(entry: Any) -> Any:
    """The entry without its timings."""
    if isinstance(entry, dict):
        return {k: _comparable(v) for k, v in entry.items() if k != "seconds"}
    if isinstance(entry, list):
        return [_comparable(v) for v in entry]
    return entry


@pytest.fixture(scope="module")
def pids_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pids") / "pids.txt"


@pytest.fixture(scope="module")
def hostile_run(pids_file: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    targets = [SICK, *HOSTILE[:8], HEALTHY, *HOSTILE[8:], SICK]
    proc = _gradlint(*targets, *INPUT, "--probe-timeout", "2", "--format", "json",
                     env={"GRADLINT_TEST_PIDS": str(pids_file)})
    return proc, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def alone() -> dict[str, dict[str, Any]]:
    out = {}
    for target in (SICK, HEALTHY):
        proc = _gradlint(target, *INPUT, "--probe-timeout", "2", "--format", "json")
        out[target] = json.loads(proc.stdout)["targets"][0]
    return out


def _entries(report: dict[str, Any], target: str) -> list[dict[str, Any]]:
    return [t for t in report["targets"] if t["target"] == target]


def test_the_report_on_stdout_is_valid_and_complete(hostile_run: Any, report_schema: dict[str, Any]) -> None:
    import jsonschema

    proc, report = hostile_run
    jsonschema.validate(report, report_schema)
    assert [t["target"] for t in report["targets"]] == [SICK, *HOSTILE[:8], HEALTHY, *HOSTILE[8:], SICK]
    assert proc.returncode == 2  # some targets could not be analysed
    assert "Traceback" not in proc.stderr


def test_model_output_goes_to_stderr_marked_with_its_target(hostile_run: Any) -> None:
    proc, _ = hostile_run
    lines = proc.stderr.splitlines()
    assert f"{W}/prints_at_import.py:Net | raw bytes on fd 1 at import" in lines
    assert f"{FORWARD}:PrintsInForward | raw bytes on fd 1 in forward" in lines
    assert f"{FORWARD}:PrintsInForward | late print from a thread" in lines


@pytest.mark.parametrize("target, kind, words", [
    (f"{W}/exits_at_import.py:Net", "load", "exit status 0 before writing its report (the model called os._exit(0)"),
    (f"{FORWARD}:ExitsInForward", "capture", "os._exit(0)"),
    (f"{FORWARD}:SysExitInForward", "capture", "raised SystemExit(3) (sys.exit)"),
    (f"{FORWARD}:RaisesBaseException", "capture", "raised Custom('not an Exception')"),
    (f"{FORWARD}:RaisesGeneratorExit", "capture", "raised GeneratorExit"),
    (f"{FORWARD}:RaisesKeyboardInterrupt", "capture", "raised KeyboardInterrupt"),
])
def test_each_hostile_target_is_its_own_clear_error(hostile_run: Any, target: str, kind: str, words: str) -> None:
    _, report = hostile_run
    (entry,) = _entries(report, target)
    assert entry["status"] == "error" and entry["error"]["kind"] == kind
    assert words in entry["error"]["message"] and "bug in gradlint" not in entry["error"]["message"]


def test_a_probe_that_ends_the_process_costs_only_the_probe(hostile_run: Any) -> None:
    _, report = hostile_run
    (entry,) = _entries(report, f"{FORWARD}:SysExitInProbe")
    assert entry["status"] == "ok" and entry["estimate"]["profile"]
    assert entry["probe"] is None and "SystemExit: 4" in entry["probe_skipped"]


def test_a_probe_that_swallows_its_alarm_is_stopped_from_outside(hostile_run: Any) -> None:
    _, report = hostile_run
    (entry,) = _entries(report, f"{FORWARD}:SwallowsAlarm")
    assert entry["status"] == "ok" and entry["probe"] is None
    assert "longer than 2 s" in entry["probe_skipped"] and "--probe-timeout" in entry["probe_skipped"]


def test_stdout_corrupters_still_get_their_own_report(hostile_run: Any) -> None:
    _, report = hostile_run
    for name in ("PrintsInForward", "ReplacesStdout", "ClosesStdout", "ClosesFd1"):
        (entry,) = _entries(report, f"{FORWARD}:{name}")
        assert entry["status"] == "ok" and entry["probe"] is not None, name


def test_global_state_never_reaches_the_neighbours(hostile_run: Any, alone: dict[str, dict[str, Any]]) -> None:
    _, report = hostile_run
    for target in (SICK, HEALTHY):
        for entry in _entries(report, target):
            assert _comparable(entry) == _comparable(alone[target]), target
    assert alone[SICK]["status"] == alone[HEALTHY]["status"] == "ok"
    assert {f["rule"] for f in alone[SICK]["findings"]} & {"GL101", "GL103"}  # a neighbour worth comparing
    assert not [f for f in alone[HEALTHY]["findings"] if f["severity"] != "info"]


def test_no_process_is_left_behind(hostile_run: Any, pids_file: Path) -> None:
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) >= 2  # the model did start its children
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]


@pytest.mark.parametrize("fmt", ["sarif", "junit", "github", "concise", "text"])
def test_every_format_survives_hostile_models(fmt: str) -> None:
    targets = [f"{W}/prints_at_import.py:Net", f"{FORWARD}:PrintsInForward", f"{FORWARD}:ExitsInForward", HEALTHY]
    proc = _gradlint(*targets, *INPUT, "--no-probe", "--format", fmt)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fake" not in proc.stdout and "raw bytes" not in proc.stdout
    if fmt == "sarif":
        notes = json.loads(proc.stdout)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
        assert [n["message"]["text"] for n in notes if "ExitsInForward" in n["message"]["text"]]
    elif fmt == "junit":
        assert len(list(ET.fromstring(proc.stdout).iter("testcase"))) == len(targets)
    else:
        assert "ExitsInForward" in proc.stdout


def test_jobs_give_the_serial_report_in_the_same_order() -> None:
    targets = [SICK, HEALTHY, f"{FORWARD}:ExitsInForward", f"{FORWARD}:PrintsInForward", HEALTHY]
    serial = json.loads(_gradlint(*targets, *INPUT, "--jobs", "1", "--format", "json").stdout)
    parallel = json.loads(_gradlint(*targets, *INPUT, "--jobs", "2", "--format", "json").stdout)
    assert [t["target"] for t in parallel["targets"]] == targets
    assert [_comparable(t) for t in parallel["targets"]] == [_comparable(t) for t in serial["targets"]]


def test_shards_partition_the_targets() -> None:
    targets = [SICK, HEALTHY, f"{FORWARD}:ExitsInForward", f"{FORWARD}:SysExitInForward", f"{FORWARD}:RaisesGeneratorExit"]
    seen: list[str] = []
    for index in (1, 2, 3):
        proc = _gradlint(*targets, "--shard", f"{index}/3", "--no-probe", "--format", "json", *INPUT)
        seen += [t["target"] for t in json.loads(proc.stdout)["targets"]]
    assert sorted(seen) == sorted(targets)
    again = _gradlint(*targets, "--shard", "2/3", "--no-probe", "--format", "json", *INPUT)
    proc = _gradlint(*targets, "--shard", "2/3", "--no-probe", "--format", "json", *INPUT)
    assert [t["target"] for t in json.loads(again.stdout)["targets"]] == [t["target"] for t in json.loads(proc.stdout)["targets"]]


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x", "1/0"])
def test_a_bad_shard_is_a_usage_error(bad: str) -> None:
    proc = _gradlint(HEALTHY, "--shard", bad)
    assert proc.returncode == 2 and "--shard" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_stops_every_worker_with_status_130(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    proc = subprocess.Popen([sys.executable, "-m", "gradlint.cli", "check", f"{FORWARD}:SpawnsChildren",
                             f"{FORWARD}:SwallowsAlarm", *INPUT, "--probe-timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GRADLINT_TEST_PIDS": str(pids)})
    deadline = time.monotonic() + 120
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # SwallowsAlarm is in its endless probe by now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and out == ""
    time.sleep(0.5)
    assert not [int(p) for p in pids.read_text().split() if _alive(int(p))]


def test_without_fork_each_target_runs_in_a_fresh_process() -> None:
    proc = _gradlint(f"{FORWARD}:PrintsInForward", f"{FORWARD}:ExitsInForward", HEALTHY, *INPUT, "--no-probe",
                     "--format", "json", env={"GRADLINT_WORKERS": "spawn"})
    report = json.loads(proc.stdout)
    assert [t["status"] for t in report["targets"]] == ["ok", "error", "ok"]
    assert "fake" not in proc.stdout
