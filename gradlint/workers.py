"""Model code runs in worker processes, never in the process that writes the report.

Each target is checked in a child forked from this process (torch and gradlint already imported, nothing
of the user's yet), so it starts from pristine interpreter and torch state and nothing it does reaches the
next target. The child's file descriptor 1 is a pipe whose lines are echoed to stderr marked with the
target, so stdout holds only the report. The child tells each stage as it starts with the report as it
stands; when it ends without a final report (os._exit, a signal, SystemExit, a hang past a limit) the
parent says so in words, for that target only, and keeps the stage's partial report where one is useful
(a probe stopped for its time limit still leaves the estimate's findings).

Where fork is not safe or not available (anything but Linux), each target runs in a fresh
`gradlint check --in-process` process instead (gradlint.isolate)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gradlint.report.entry import Entry, failed
from gradlint.types import ErrorKind

# what the target was doing when its process ended, by the stage it last announced
STAGES = {
    "start": ("while starting", ErrorKind.INTERNAL),
    "load": ("while importing the target's file or building the model", ErrorKind.LOAD),
    "capture": ("while running the model's forward on the example input to capture it", ErrorKind.CAPTURE),
    "estimate": ("while estimating its gradients", ErrorKind.INTERNAL),
    "probe": ("during the probe's forward and backward pass", ErrorKind.PROBE),
    "fixes": ("while checking the suggested fixes on copies of the model", ErrorKind.PROBE),
}
# stages whose partial report stands when the process ends there: only an optional step is lost
PARTIAL_OK = {"probe", "fixes"}
SIGNALS = {"SIGSEGV": "a segmentation fault", "SIGABRT": "an abort", "SIGBUS": "a bus error",
           "SIGFPE": "a floating-point trap", "SIGILL": "an illegal instruction",
           "SIGKILL": "SIGKILL, likely the kernel's out-of-memory killer"}
PROBE_GRACE = 5.0  # seconds past --probe-timeout before the probe's process is stopped from outside


def fork_available() -> bool:
    """Forking is safe on Linux while no other Python thread may hold a lock the child would need (torch's
    own OpenMP pool is handled by `_start`)."""
    import threading

    return (sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1
            and os.environ.get("GRADLINT_WORKERS") != "spawn")


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


@dataclass(frozen=True)
class Limits:
    """`--isolate`'s limits per target: wall time and address space (bytes); None is no limit."""

    timeout: float | None = None
    memory: int | None = None


@dataclass
class Job:
    index: int
    target: str
    options: Any  # CheckOptions
    run: Callable[[str, Any], Any] | None = None  # (target, options) -> report; default pipeline.check_target


@dataclass
class _Running:
    job: Job
    pid: int
    results: int
    output: int
    started: float
    stage: str = "start"
    stage_started: float = 0.0
    partial: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    raised: str | None = None
    traceback: str | None = None
    stopped: str | None = None  # why the parent stopped it
    sources: list[str] = field(default_factory=list)  # the user files its answer depends on (gradlint.cache)
    buffers: dict[int, bytes] = field(default_factory=dict)


def default_jobs(targets: int) -> int:
    """The number of cores, capped by memory (about 3 GiB per concurrent target) and the number of targets."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, _available_memory() // (3 * 2**30) or 1, targets))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2**40


def run(jobs: list[Job], parallel: int = 1, limits: Limits = Limits(),
        echo: Callable[[str, str], None] | None = None, started: Callable[[Job], None] | None = None) -> list[Entry]:
    """Check every job in a forked child, at most `parallel` at a time; entries in the jobs' order."""
    echo = echo or _echo
    pending = list(jobs)
    running: dict[int, _Running] = {}
    done: dict[int, Entry] = {}
    threads = max(1, (os.cpu_count() or 1) // max(parallel, 1)) if parallel > 1 else None
    selector = selectors.DefaultSelector()
    _become_subreaper()
    ours_before = set(_children())  # never touch a child this process had before the run
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                if started is not None:
                    started(job)
                child = _start(job, limits, threads)
                running[child.pid] = child
                selector.register(child.results, selectors.EVENT_READ, child)
                selector.register(child.output, selectors.EVENT_READ, child)
            for key, _ in selector.select(timeout=0.05):
                _read(key.data, key.fd, echo)
            now = time.monotonic()
            for pid, child in list(running.items()):
                _enforce(child, limits, now)
                finished, status = _reaped(pid)
                if not finished:
                    continue
                for fd in (child.results, child.output):
                    _drain(child, fd, echo)
                    selector.unregister(fd)
                    os.close(fd)
                _end_group(pid)
                done[child.job.index] = _entry(child, status, limits)
                del running[pid]
                _reap_orphans(set(running) | ours_before)
    except BaseException:  # Ctrl-C or a bug here: no child outlives the run
        for pid in running:
            _end_group(pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        raise
    finally:
        selector.close()
        _become_subreaper(False)
    return [done[job.index] for job in jobs]


def _start(job: Job, limits: Limits, threads: int | None) -> _Running:
    if threads is None and _native_threads() > 1:
        # this process has run torch ops (an OpenMP pool exists, e.g. gradlint called from a script or a test):
        # libgomp's pool does not survive fork, so the child computes on one thread and never enters it
        threads = 1
    results_r, results_w = os.pipe()
    output_r, output_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # nothing buffered here may be written twice
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(results_r)
        os.close(output_r)
        _child(job, results_w, output_w, limits, threads)
    os.close(results_w)
    os.close(output_w)
    os.set_blocking(results_r, False)
    os.set_blocking(output_r, False)
    with contextlib.suppress(OSError):  # also done by the child: whichever runs first
        os.setpgid(pid, pid)
    now = time.monotonic()
    return _Running(job, pid, results_r, output_r, now, stage_started=now)


def _child(job: Job, results: int, output: int, limits: Limits, threads: int | None) -> None:
    """Check one target and report through `results`; leave by os._exit so no parent state is torn down."""
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # its own process group: whatever the model starts is ended with it
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output, 1)  # the model's stdout, Python or file descriptor 1, from any thread
        os.close(output)
        if limits.memory:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        seed_everything()
        send = _sender(results)

        from gradlint.cache import user_sources

        sources: set[str] = set()

        def progress(stage: str, report: Any) -> None:
            if stage != "load":  # the target's modules are imported (and gone again once check_target returns)
                sources.update(user_sources())
            send({"stage": stage, "entry": report.to_dict()})

        options = dataclasses.replace(job.options, progress=progress)
        try:
            if job.run is None:
                from gradlint.pipeline import check_target

                report = check_target(job.target, options)
            else:
                report = job.run(job.target, options)
            send({"final": report.to_dict(), "traceback": report.traceback, "sources": sorted(sources)})
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit... raised by the model's code
            send({"raised": _describe(exc), "traceback": traceback.format_exc()})
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(0)


def seed_everything(seed: int = 0) -> None:
    """A worker builds every model from the same RNG state, so a report is the same on every run and machine
    (torch otherwise seeds itself from the OS: the weights, and so the estimate, changed between runs)."""
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(seed)


def _sender(fd: int) -> Callable[[dict[str, Any]], None]:
    def send(message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=str) + "\n").encode("utf-8", "surrogatepass")
        while data:
            written = os.write(fd, data)
            data = data[written:]

    return send


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"
    text = str(exc)
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")


def _read(child: _Running, fd: int, echo: Callable[[str, str], None]) -> None:
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""
    if chunk:
        _consume(child, fd, chunk, echo)


def _drain(child: _Running, fd: int, echo: Callable[[str, str], None]) -> None:
    """What the child wrote before it ended; a grandchild may keep the pipe open, so never wait for EOF."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        _consume(child, fd, chunk, echo)
    rest = child.buffers.pop(fd, b"")
    if rest:
        _line(child, fd, rest, echo)


def _consume(child: _Running, fd: int, chunk: bytes, echo: Callable[[str, str], None]) -> None:
    data = child.buffers.get(fd, b"") + chunk
    *lines, rest = data.split(b"\n")
    child.buffers[fd] = rest
    for line in lines:
        _line(child, fd, line, echo)


def _line(child: _Running, fd: int, line: bytes, echo: Callable[[str, str], None]) -> None:
    if fd == child.output:
        echo(child.job.target, line.decode("utf-8", "replace"))
        return
    try:
        message = json.loads(line.decode("utf-8", "surrogatepass"))
    except ValueError:
        return
    if "stage" in message:
        child.stage, child.stage_started = message["stage"], time.monotonic()
        child.partial = message.get("entry")
    elif "final" in message:
        child.final, child.traceback = message["final"], message.get("traceback")
        child.sources = list(message.get("sources") or [])
    elif "raised" in message:
        child.raised, child.traceback = message["raised"], message.get("traceback")


def _enforce(child: _Running, limits: Limits, now: float) -> None:
    """Limits held from outside the model's code: a swallowed alarm or an ignored signal cannot hang a run."""
    if child.stopped is not None or child.final is not None:
        return
    probe_timeout = getattr(child.job.options, "probe_timeout", None)
    if child.stage == "probe" and probe_timeout and now - child.stage_started > probe_timeout + PROBE_GRACE:
        child.stopped = (f"the probe's forward and backward pass took longer than {probe_timeout:g} s and was stopped "
                         "(--probe-timeout); raise it, lower --probe-batch, or use --no-probe for a static-only check")
    elif limits.timeout and now - child.started > limits.timeout:
        child.stopped = f"took longer than {limits.timeout:g} s (--isolate-timeout)"
    if child.stopped is not None:
        _end_group(child.pid)


def _reaped(pid: int) -> tuple[bool, int]:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True, 0
    return done == pid, status


def _end_group(pid: int) -> None:
    """SIGKILL the child's process group: the child and whatever it started that is still running."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _entry(child: _Running, status: int, limits: Limits) -> Entry:
    target = child.job.target
    if child.final is not None and child.stopped is None:
        entry = Entry(child.final, child.traceback)
        entry.sources = child.sources
        if entry.error is not None and limits.memory and "allocate" in entry.error.message.lower():
            entry.error.message += f" (--isolate-memory limits each target to {limits.memory / 2**30:.3g} GiB.)"
        return entry
    where, kind = STAGES.get(child.stage, STAGES["start"])
    if child.stopped is not None and child.stage == "probe" and child.partial is not None and "probe" in child.stopped:
        return _with_probe_skipped(child.partial, child.stopped[0].upper() + child.stopped[1:] + ".", child.traceback)
    if child.stopped is not None:
        cause = f"checking it {child.stopped} {where}, and its process was stopped"
        advice = ("The model probably hangs or is very slow there; check it alone and interrupt it (Ctrl-C) to see where, "
                  "or raise --isolate-timeout")
    elif child.raised is not None:
        cause = f"the model's code {child.raised} {where}"
        advice = "Only this target is affected; run it on its own with --verbose to see where"
    else:
        cause = f"the process checking it {_ending(status, limits)} {where}"
        advice = ("The model's code, or a library it calls, ended the interpreter; the other targets were not affected. "
                  "Run this target on its own with --verbose to see where")
    if child.stage in PARTIAL_OK and child.partial is not None:
        step = "probe" if child.stage == "probe" else "fix check"
        if child.stage == "probe":
            return _with_probe_skipped(child.partial, f"{cause[0].upper()}{cause[1:]}; the {step} did not finish.", child.traceback)
        entry = Entry(child.partial, child.traceback)
        entry.data.setdefault("notes", []).append(f"{cause}; the fixes were not verified")
        entry.notes = list(entry.data["notes"])
        return entry
    return failed(target, kind, f"{cause[0].upper()}{cause[1:]}. {advice}.", child.traceback)


def _with_probe_skipped(partial: dict[str, Any], why: str, trace: str | None) -> Entry:
    data = dict(partial)
    data["probe"] = None
    data["probe_skipped"] = why
    return Entry(data, trace)


def _ending(status: int, limits: Limits) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        memory = f" (it ran under a {limits.memory / 2**30:.3g} GiB --isolate-memory limit)" if limits.memory else ""
        return f"was killed by {name} ({SIGNALS.get(name, 'a fatal signal')}){memory}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return f"ended with exit status {code} before writing its report (the model called os._exit({code}), or native code exited)"


def _echo(target: str, line: str) -> None:
    sys.stderr.write(f"{target} | {line}\n")
    sys.stderr.flush()


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the process writing the report dies first."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _become_subreaper(on: bool = True) -> None:
    """Linux: processes a model detaches (setsid, double fork) become our children when their parent ends,
    so they can be ended too instead of outliving gradlint (only during the run)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1 if on else 0)  # PR_SET_CHILD_SUBREAPER


def _reap_orphans(keep: set[int]) -> None:
    """End and reap our children that are not in `keep` (orphans a model left behind)."""
    for pid in _children():
        if pid in keep:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _children() -> Iterator[int]:
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(me):
            yield int(name)
