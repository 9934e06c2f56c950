"""Workers where fork is unsafe or unavailable: each target in a fresh `gradlint check --in-process`
process, under `--isolate`'s time and memory limits, read back through its JSON report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from gradlint.report.entry import Entry, failed
from gradlint.types import ErrorKind, GradlintError

# check options a child process repeats as given; output, baseline and exit-status options stay with the parent
FORWARDED = {
    "select": "--select", "ignore": "--ignore", "extend_select": "--extend-select", "input_specs": "--input",
    "no_probe": "--no-probe", "probe_batch": "--probe-batch", "probe_timeout": "--probe-timeout",
    "probe_max_params": "--probe-max-params", "device": "--device", "rule_dir": "--rule-dir", "config_path": "--config",
    "data": "--data",
}
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIGNALS = {"SIGSEGV": "a segmentation fault", "SIGABRT": "an abort", "SIGBUS": "a bus error", "SIGFPE": "a floating-point trap",
            "SIGILL": "an illegal instruction", "SIGKILL": "SIGKILL, likely the kernel's out-of-memory killer"}


@dataclass(frozen=True)
class Limits:
    timeout: float | None = 300.0
    memory: int | None = None  # bytes of address space (RLIMIT_AS)


def parse_size(text: str) -> int:
    """"4G", "512M", "1.5G" or a plain byte count."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise GradlintError(ErrorKind.INPUT, f"--isolate-memory {text!r} is not a size such as 4G, 512M or 1073741824.")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def child_arguments(params: dict[str, Any]) -> list[str]:
    """The command-line options, from click's parsed `params`, that a child needs to check one target the same way."""
    args: list[str] = []
    for name, flag in FORWARDED.items():
        value = params.get(name)
        if value is None or value is False or value == ():
            continue
        if value is True:
            args.append(flag)
        else:
            for item in value if isinstance(value, tuple) else (value,):
                args += [flag, str(item)]
    return args


def check_isolated(target: str, forwarded: list[str], limits: Limits) -> Entry:
    """Run `gradlint check TARGET --format json` in a fresh interpreter under `limits` and read its entry."""
    with tempfile.TemporaryDirectory(prefix="gradlint-isolate-") as folder:
        out = os.path.join(folder, "report.json")
        command = [sys.executable, "-m", "gradlint.cli", "check", target, "--in-process", "--format", "json", "-o", out, "-v", *forwarded]
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True, preexec_fn=_limiter(limits.memory))  # noqa: PLW1509 -- setrlimit must run in the child; see _limiter
        try:
            _, err = child.communicate(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the whole session: a model may have started processes of its own
            _, err = child.communicate()
            return failed(target, ErrorKind.LOAD,
                           f"{target}: checking this target took longer than {limits.timeout:g} s (--isolate-timeout) and its "
                           "process was killed; the model probably hangs in its constructor or forward. Check it alone "
                           "without --isolate and interrupt it (Ctrl-C) to see where, or raise --isolate-timeout.",
                           _text(err))
        stderr = _text(err)
        entry = _entry(out)
        if entry is not None:
            report = Entry(entry, stderr or None)
            if report.error is not None and limits.memory and "allocate" in report.error.message.lower():
                report.error.message += f" (--isolate-memory limits each target to {limits.memory / 2**30:.3g} GiB.)"
            return report
        return failed(target, ErrorKind.LOAD, _crash_message(target, child.returncode, stderr, limits), stderr or None)


def _limiter(memory: int | None) -> Any:
    if not memory:
        return None

    def limit() -> None:  # runs in the child between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return limit


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _entry(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            targets = json.load(handle)["targets"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return targets[0] if targets else None


def _crash_message(target: str, code: int, stderr: str, limits: Limits) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = f"was killed by {name} ({_SIGNALS.get(name, 'a fatal signal')})"
    else:
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        cause = f"exited with status {code} without a report" + (f"; its last words: {last}" if last else "")
    memory = f" It ran under a {limits.memory / 2**30:.3g} GiB memory limit (--isolate-memory)." if limits.memory else ""
    return (f"{target}: the process checking this target {cause}. The model's code, or a library it calls, crashed "
            f"the interpreter; the other targets were checked in their own processes.{memory} Check this target alone "
            "without --isolate, with --verbose, to see where it fails.")
