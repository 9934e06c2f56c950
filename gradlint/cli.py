"""The command line. It parses, delegates and prints; it never computes."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from gradlint import __version__
from gradlint.config import Config, load_config
from gradlint.types import GradlintError, Severity

FORMATS = ("text", "concise", "json", "sarif", "github", "junit")


class UsageError(click.ClickException):
    """gradlint's own error type: exit status 2, like ruff (click's default would be 1)."""

    exit_code = 2


def _split(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for v in values for item in v.split(",") if item.strip()]


if TYPE_CHECKING:  # click >= 8.2 makes ParamType generic in its value; older ones cannot be subscripted
    _ShardBase = click.ParamType[tuple[int, int]]
else:
    _ShardBase = click.ParamType


class _ShardType(_ShardBase):
    name = "I/N"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        parts = str(value).split("/")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            index, count = int(parts[0]), int(parts[1])
            if 1 <= index <= count:
                return index, count
        self.fail(f"{value!r} is not I/N with 1 <= I <= N, e.g. 1/4.", param, ctx)


_SHARD = _ShardType()


def _config(path: str | None) -> Config:
    try:
        return load_config(Path(path) if path else None)
    except GradlintError as exc:
        raise UsageError(exc.message) from None


def _expand(targets: tuple[str, ...], config: Config, affected: bool = False, exclude: tuple[str, ...] = ()) -> Any:
    """Paths on the command line -> targets (gradlint.discover); the configured targets when none are given."""
    from gradlint import discover

    base = config.path.parent if config.path else Path.cwd()
    try:
        found = discover.expand(list(targets), config.targets, [*config.exclude, *_split(exclude)], base, affected)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.args[0]}: no such file or directory (a path target names a .py file or a folder; "
                         "FILE.py:NAME names one model).") from None
    if not targets:
        found.targets = list(config.targets)
    elif not found.targets and not found.broken and not found.skipped and found.paths_given:
        what = "configured target is defined in or imports them" if config.targets else "nn.Module is defined there"
        Console(stderr=True).print(f"No targets in the given paths: no {what}.", highlight=False)
        sys.exit(0)
    return found


def _skipped(found: Any, console: Console, verbose: bool) -> None:
    """The definitions discovery found but did not check, and why: a count by reason, each one with --verbose."""
    if not found.skipped:
        return
    if verbose:
        console.print(f"Skipped {len(found.skipped)} definition{'s' if len(found.skipped) != 1 else ''}:", highlight=False)
        for item in found.skipped:
            console.print(f"  {item.target}: {item.reason}", highlight=False, soft_wrap=True)
        return
    reasons: dict[str, int] = {}
    for item in found.skipped:
        key = item.reason.split(":", 1)[0]
        reasons[key] = reasons.get(key, 0) + 1
    listed = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    console.print(f"Skipped {len(found.skipped)} definition{'s' if len(found.skipped) != 1 else ''} ({listed}); "
                  "--verbose lists them.", highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradlint")
def main() -> None:
    """Find vanishing and exploding gradients in PyTorch models before training."""


def _check_run_options(input_specs: tuple[str, ...], isolate_timeout: float | None, device: str | None) -> None:
    """Options that are usage errors before any target runs: a bad --input (its dtypes are torch's), a
    non-positive --isolate-timeout, an unknown or absent --device."""
    from gradlint.config import positive_option

    if input_specs:
        from gradlint.inputs import InputSpec

        for spec in input_specs:
            InputSpec.parse(spec)
    positive_option("--isolate-timeout", isolate_timeout)
    if device is not None:
        from gradlint.devices import check_device

        check_device(device)


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--output-format", "--format", "fmt", type=click.Choice(FORMATS), help="Output format (default: text, or `output-format` in the configuration).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the report to FILE instead of stdout.")
@click.option("--select", multiple=True, help="Rules to enable: codes, prefixes, names or ALL (comma-separated).")
@click.option("--ignore", "--extend-ignore", "ignore", multiple=True, help="Rules to disable, on top of the configuration's ignore.")
@click.option("--extend-select", multiple=True, help="Rules to enable on top of the selection.")
@click.option("--fail-on", type=click.Choice([s.value for s in Severity]), help="Lowest severity that fails the run (default: warning).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings are reported (errors still exit 2).")
@click.option("--input", "input_specs", multiple=True, help='Example input as DTYPE[d0,d1,...], e.g. "float32[16,3,224,224]", repeated for several positional arguments; NAME=DTYPE[...] for a keyword argument, e.g. "attention_mask=int64[16,128]".')
@click.option("--data", help="A real batch as the example input: FILE.py:NAME naming a batch, a function returning one, or a DataLoader (its first batch).")
@click.option("--no-probe", is_flag=True, help="Skip the confirming forward/backward pass (static estimate only).")
@click.option("--probe-batch", type=int, help="Batch size of the probe's inferred input (default 16).")
@click.option("--probe-timeout", type=float, help="Seconds the probe may take per target (default 60).")
@click.option("--probe-max-params", type=int, help="Largest model, in parameters, that is probed in full.")
@click.option("--device", help="Device for the probe's copy of the model, e.g. cuda:0 (default: where the model is).")
@click.option("--rule-dir", multiple=True, type=click.Path(file_okay=False), help="Load extra rules from this directory.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="pyproject.toml to read [tool.gradlint] from.")
@click.option("--statistics", is_flag=True, help="Print a count of findings per rule.")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False), help="Report only findings not recorded in this baseline FILE.")
@click.option("--write-baseline", type=click.Path(dir_okay=False, writable=True), help="Record the current findings in baseline FILE; later runs with --baseline report only new ones.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for target errors, and each definition a path target skipped, with why.")
@click.option("--isolate", is_flag=True, help="Limit each target's time (--isolate-timeout) and memory (--isolate-memory). Every target always runs in a worker process of its own.")
@click.option("--isolate-timeout", type=float, default=300.0, show_default=True, help="Seconds each target may take under --isolate.")
@click.option("--isolate-memory", help='Address-space limit per isolated target, e.g. "4G" (default: none).')
@click.option("--exclude", "exclude", multiple=True, help="Glob patterns of files and folders that path targets skip (added to the configured exclude).")
@click.option("--affected", is_flag=True, help="The path targets are changed files: also check the targets in files that import them (the pre-commit hook).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Targets checked at once, each in its own worker process (default: the number of cores, capped by memory at about 3 GiB per target).")
@click.option("--shard", type=_SHARD, help="Check only shard I of N (I/N, e.g. 2/4): a stable share of the targets, for a CI matrix.")
@click.option("--no-cache", is_flag=True, help="Check every target again, ignoring and not updating .gradlint_cache/.")
@click.option("--in-process", is_flag=True, hidden=True, help="Run the targets in this process (what a spawned worker does).")
@click.option("-q", "--quiet", is_flag=True, help="Print the findings and nothing else (no chart, summary or progress).")
@click.option("--color", type=click.Choice(("auto", "always", "never")), default="auto", show_default=True, help="Colour the text output.")
def check(targets: tuple[str, ...], fmt: str, output: str | None, select: tuple[str, ...], ignore: tuple[str, ...],
          extend_select: tuple[str, ...], fail_on: str | None, exit_zero: bool, input_specs: tuple[str, ...],
          no_probe: bool, probe_batch: int | None, probe_timeout: float | None, probe_max_params: int | None,
          device: str | None, rule_dir: tuple[str, ...], config_path: str | None, statistics: bool, verbose: bool,
          baseline_path: str | None = None, write_baseline: str | None = None, isolate: bool = False,
          isolate_timeout: float | None = 300.0, isolate_memory: str | None = None, exclude: tuple[str, ...] = (),
          affected: bool = False, jobs: int | None = None, shard: tuple[int, int] | None = None, no_cache: bool = False,
          in_process: bool = False,
          quiet: bool = False, color: str = "auto", data: str | None = None) -> None:
    """Check TARGETS: FILE.py:NAME, package.module:NAME, NAME(args...), or files and folders, whose nn.Module
    classes and factories are discovered; default: the [tool.gradlint] targets."""
    from gradlint import discover, settings

    config = _config(config_path)
    found = _expand(targets, config, affected, exclude)  # before torch is imported: a commit without models costs nothing

    if _answered_from_cache(found, config, fmt, output, locals()):
        return
    from gradlint.registry import all_rules, select_rules
    from gradlint import baseline, workers
    from gradlint import isolate as isolation
    names = found.targets
    if not names and not found.broken and not found.skipped:
        raise UsageError("No targets given and none configured. Pass FILE.py:NAME or a path (`gradlint check .`), or set `targets` in [tool.gradlint] of pyproject.toml.")
    fmt = fmt or _configured_format(config)
    baseline_path = baseline_path or (config.baseline if not write_baseline else None)  # `baseline = "..."` in the config
    if in_process:  # a worker of another gradlint process: that process reads and writes the baseline
        baseline_path = write_baseline = None
    try:
        rules = all_rules([*config.rule_dirs, *rule_dir])
        settings.check_rule_names(config, rules)
        chosen = select_rules(rules, *settings.merge_selection(config, _split(select), _split(ignore), _split(extend_select), []))
        _check_run_options(input_specs, isolate_timeout, device)
        known = baseline.load(baseline_path) if baseline_path else None
        limits = isolation.Limits(isolate_timeout, isolation.parse_size(isolate_memory) if isolate_memory else None)
    except GradlintError as exc:
        raise UsageError(exc.message) from None
    forwarded = isolation.child_arguments(click.get_current_context().params)
    err = Console(stderr=True, quiet=quiet, soft_wrap=True)
    if shard:
        names, found.broken = _shard(names, shard), [b for b in found.broken if _in_shard(str(b[0]), shard)]
        err.print(f"Shard {shard[0]}/{shard[1]}: {len(names)} target{'s' if len(names) != 1 else ''}.", highlight=False)
    try:
        per_target = [config.check_options(name, chosen, inputs=list(input_specs), no_probe=no_probe,
                                           probe_batch=probe_batch, probe_timeout=probe_timeout,
                                           probe_max_params=probe_max_params, device=device, verbose=verbose)
                      for name in names]
    except GradlintError as exc:
        raise UsageError(exc.message) from None
    for options in per_target:
        options.data = data
    progress = err.is_terminal and len(names) > 1 and not in_process

    def started(index: int, name: str) -> None:
        if progress:
            err.print(f"[dim][{index + 1}/{len(names)}] {name}[/dim]")

    store = _cache(config, no_cache or in_process)
    key = _cache_key(forwarded, config, isolate, isolate_timeout, isolate_memory)
    cached = {i: store.lookup(name, key) for i, name in enumerate(names)} if store is not None else {}
    todo = [i for i in range(len(names)) if cached.get(i) is None]
    try:
        fresh = _check_all([names[i] for i in todo], [per_target[i] for i in todo], forwarded,
                           limits if isolate else isolation.Limits(None, None),
                           jobs or workers.default_jobs(len(todo)), in_process, started)
    except KeyboardInterrupt:
        err.print("Interrupted: every worker was stopped; no report was written.", highlight=False)
        sys.exit(130)
    from gradlint.report.entry import Entry

    by_index = dict(zip(todo, fresh))
    reports = [by_index[i] if i in by_index else Entry(cached[i]) for i in range(len(names))]
    if store is not None:
        for i, report in by_index.items():
            if report.ok and report.sources:
                store.store(names[i], key, report.to_dict(), report.sources)
        from gradlint.report.bands import bands, to_data

        store.put_run(key, {"bands": to_data(bands(chosen, config.thresholds))})
        if cached and any(v is not None for v in cached.values()) and not quiet:
            hits = sum(1 for v in cached.values() if v is not None)
            err.print(f"[dim]{hits} of {len(names)} target{'s' if len(names) != 1 else ''} unchanged since the last run, "
                      "answered from the cache (--no-cache checks them again).[/dim]")
    for report in reports:
        if report.error is not None and (fmt != "text" or output):
            err.print(Text("error", style="bold red") + Text(f" ({report.error.kind.value}) {report.target}: {report.error.message}"))
        if report.error is not None and verbose and report.traceback:
            err.print(report.traceback, markup=False, highlight=False)
    reports = discover.settle(reports, found) + _broken(found)
    root = config.path.parent if config.path else Path.cwd()  # baselines name files relative to the project
    if write_baseline:
        try:
            written = baseline.write(write_baseline, reports, root)
        except OSError as exc:
            raise UsageError(f"Cannot write the baseline to {write_baseline}: {exc.strerror}.") from None
        err.print(f"Wrote {written} finding{'s' if written != 1 else ''} to baseline {write_baseline}.")
        known = baseline.load(write_baseline)
    if known is not None:
        dropped = baseline.apply(reports, known, root)
        err.print(f"{dropped} finding{'s' if dropped != 1 else ''} baselined ({write_baseline or baseline_path}); reporting only new ones.")
    from gradlint.report.bands import bands

    threshold = Severity(fail_on) if fail_on else config.fail_on
    _finish(reports, found, fmt, output, chosen, threshold, bands(chosen, config.thresholds), err,
            quiet=quiet, color=color, verbose=verbose, exit_zero=exit_zero, statistics=statistics)


def _finish(reports: list[Any], found: Any, fmt: str, output: str | None, rules: list[Any], threshold: Severity,
            lines: Any, err: Console, *, quiet: bool, color: str, verbose: bool, exit_zero: bool,
            statistics: bool = False) -> None:
    """Write the report (or the statistics), say what discovery skipped, and exit with the run's status."""
    from gradlint.report import exit_code

    if statistics:  # as in ruff --statistics, the counts replace the findings
        _statistics(reports, fmt, output)
    else:
        _emit(reports, fmt, output, rules, threshold, quiet=quiet, color=color, lines=lines)
    _skipped(found, err, verbose)
    code = exit_code(reports, threshold)
    sys.exit(0 if exit_zero and code == 1 else code)




def _in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Stable across machines and runs, and a target keeps its shard when others are added."""
    import hashlib

    return int(hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest(), 16) % shard[1] == shard[0] - 1


def _shard(names: list[str], shard: tuple[int, int]) -> list[str]:
    return [name for name in names if _in_shard(name, shard)]


def _check_all(names: list[str], options: list[Any], forwarded: list[str], limits: Any, jobs: int, in_process: bool,
               started: Any, run: Any = None) -> list[Any]:
    """Every target's report entry, in the targets' order. Model code runs in worker processes (forked, or
    fresh `--in-process` ones where fork is unsafe), never here; `--in-process` is that worker's own mode."""
    from gradlint import isolate as isolation
    from gradlint import workers
    from gradlint.report.entry import as_entry

    if in_process:
        from gradlint.pipeline import check_target

        workers.seed_everything()
        out = []
        for index, (name, opts) in enumerate(zip(names, options)):
            started(index, name)
            out.append(as_entry((run or check_target)(name, opts)))
        return out
    if workers.fork_available():
        jobs_list = [workers.Job(i, name, opts, run) for i, (name, opts) in enumerate(zip(names, options))]
        return workers.run(jobs_list, jobs, workers.Limits(limits.timeout, limits.memory),
                           started=lambda job: started(job.index, job.target))
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[int, str]) -> Any:
        started(*item)
        return isolation.check_isolated(item[1], forwarded, limits)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, enumerate(names)))


def _cache(config: Config, off: bool = False) -> Any:
    """The project's cache (`cache-dir`, default .gradlint_cache/ beside the configuration), or None when
    it is off (`--no-cache`, or GRADLINT_NO_CACHE set, as the test suite does)."""
    if off or os.environ.get("GRADLINT_NO_CACHE"):
        return None
    return _cache_at(config)


def _cache_key(forwarded: list[str], config: Config, isolate: bool, timeout: float | None, memory: str | None) -> dict[str, Any]:
    return {"args": forwarded, "config": _digest(config.path), "isolate": [isolate, timeout, memory]}


def _answered_from_cache(found: Any, config: Config, fmt: str | None, output: str | None, params: dict[str, Any]) -> bool:
    """A run whose every target is unchanged since the last run, answered without importing torch (or running
    a worker): the entries and the charts' lines come from the cache. False when anything needs a fresh look."""
    from gradlint import discover
    from gradlint import isolate as isolation

    fmt = fmt or config.output_format or "text"
    wanted = (params["no_cache"] or params["in_process"] or params["write_baseline"] or params["baseline_path"]
              or config.baseline or params["statistics"] or params["shard"] or fmt not in ("text", "concise", "json", "github", "junit"))
    store = None if wanted else _cache(config, False)
    names = found.targets
    if store is None or not names or found.broken:
        return False
    key = _cache_key(isolation.child_arguments(click.get_current_context().params), config, params["isolate"],
                     params["isolate_timeout"], params["isolate_memory"])
    run = store.get_run(key)
    entries = [store.lookup(name, key) for name in names]
    if run is None or any(e is None for e in entries):
        return False
    from gradlint.report.bands import from_data
    from gradlint.report.entry import Entry

    reports = discover.settle([Entry(e) for e in entries if e is not None], found)
    err = Console(stderr=True, quiet=params["quiet"], soft_wrap=True)
    err.print(f"[dim]{len(names)} of {len(names)} target{'s' if len(names) != 1 else ''} unchanged since the last run, "
              "answered from the cache (--no-cache checks them again).[/dim]")
    threshold = Severity(params["fail_on"]) if params["fail_on"] else config.fail_on
    _finish(reports, found, fmt, output, [], threshold, from_data(run["bands"]), err, quiet=params["quiet"],
            color=params["color"], verbose=params["verbose"], exit_zero=params["exit_zero"])
    return True


def _digest(path: Path | None) -> str | None:
    from gradlint.cache import file_digest

    return file_digest(str(path)) if path else None


def _broken(found: Any) -> list[Any]:
    """A discovered file that cannot be parsed is a target error (exit 2), as importing it would be."""
    from gradlint.report.entry import failed
    from gradlint.types import ErrorKind

    return [failed(f"{file}:*", ErrorKind.LOAD, why) for file, why in found.broken]


def _configured_format(config: Config) -> str:
    value = config.output_format or "text"
    if value not in FORMATS:
        from gradlint.settings import unknown

        raise UsageError(unknown(config.path, "output-format", value, FORMATS).message)
    return value


def console_for(stream: Any = None, color: str = "auto", quiet: bool = False) -> Console:
    """A rich console that hard-wraps only on a terminal (ruff's behaviour): piped output, CI logs and
    report files keep one line per line, however long, so `grep` and annotations see whole messages."""
    probe = Console(file=stream) if stream is not None else Console()
    terminal = probe.is_terminal and stream is None
    return Console(file=stream, soft_wrap=not terminal, force_terminal=True if color == "always" else None,
                   no_color=color == "never" or (color == "auto" and not terminal), quiet=quiet,
                   width=None if terminal else 10_000, highlight=False)


def _emit(reports: list[Any], fmt: str, output: str | None, rules: list[Any], fail_on: Severity = Severity.WARNING,
          quiet: bool = False, color: str = "auto", lines: Any = None) -> None:
    import importlib

    def view(name: str) -> Any:  # only the one asked for: SARIF needs the rule set, the others need no torch
        return importlib.import_module(f"gradlint.report.{name}")

    try:
        stream = open(output, "w", encoding="utf-8") if output else None  # noqa: SIM115 -- closed below, where a full disk fails
    except OSError as exc:
        raise UsageError(f"Cannot write the report to {output}: {exc.strerror}.") from None
    try:
        if fmt == "text":
            view("text").render(reports, console_for(stream, color), show_profile=not quiet, quiet=quiet, lines=lines)
        else:
            body = {"json": lambda: view("json_format").render(reports), "github": lambda: view("github").render(reports),
                    "concise": lambda: view("concise").render(reports, quiet),
                    "sarif": lambda: view("sarif").render(reports, rules),
                    "junit": lambda: view("junit").render(reports, fail_on)}[fmt]()
            print(body, file=stream or sys.stdout)
        if stream is not None:
            stream.close()  # flushes: a full disk or a /proc file fails here, not at open
    except OSError as exc:
        if stream is None:
            raise
        raise UsageError(f"Cannot write the report to {output}: {exc.strerror or exc}.") from None
    finally:
        if stream is not None and not stream.closed:
            with contextlib.suppress(OSError):
                stream.close()


def _statistics(reports: list[Any], fmt: str, output: str | None) -> None:
    """ruff's `--statistics`: per rule, its count (most frequent first), as text or, with json, a list."""
    import json

    from gradlint.report import concise

    body = json.dumps(concise.statistics(reports), indent=2) if fmt == "json" else concise.statistics_text(reports)
    try:
        if output:
            Path(output).write_text(body + "\n", encoding="utf-8")
        elif body:
            print(body)
    except OSError as exc:
        raise UsageError(f"Cannot write the statistics to {output}: {exc.strerror}.") from None


@main.command("report")
@click.argument("targets", nargs=-1)
@click.option("-o", "--output", default="gradlint-report.html", show_default=True, type=click.Path(dir_okay=False, writable=True), help="HTML file to write.")
@click.option("--select", multiple=True, help="Rules to enable: codes, prefixes, names or ALL (comma-separated).")
@click.option("--ignore", multiple=True, help="Rules to disable.")
@click.option("--input", "input_specs", multiple=True, help='Example input as DTYPE[d0,d1,...] (positional) or NAME=DTYPE[...] (keyword); repeat for several arguments.')
@click.option("--no-probe", is_flag=True, help="Skip the measured profile (static estimate only).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="pyproject.toml to read [tool.gradlint] from.")
def html_report(targets: tuple[str, ...], output: str, select: tuple[str, ...], ignore: tuple[str, ...],
                input_specs: tuple[str, ...], no_probe: bool, config_path: str | None) -> None:
    """Write one self-contained HTML report (profile chart, findings, model structure) for TARGETS."""
    from gradlint.registry import all_rules, select_rules
    from gradlint.report import html

    from gradlint import discover, settings

    config = _config(config_path)
    found = _expand(targets, config)
    names = found.targets
    if not names:
        raise UsageError("No targets given and none configured. Pass FILE.py:NAME or a path, or set `targets` in [tool.gradlint] of pyproject.toml.")
    try:
        rules = all_rules(config.rule_dirs)
        settings.check_rule_names(config, rules)
        chosen = select_rules(rules, *settings.merge_selection(config, _split(select), _split(ignore), [], []))
        per_target = [config.check_options(name, chosen, inputs=list(input_specs), no_probe=no_probe) for name in names]
    except GradlintError as exc:
        raise UsageError(exc.message) from None
    from gradlint import isolate as isolation
    from gradlint import workers

    forwarded = isolation.child_arguments(click.get_current_context().params)
    try:
        reports = _check_all(names, per_target, forwarded, isolation.Limits(None, None), workers.default_jobs(len(names)),
                             False, lambda index, name: None)
    except KeyboardInterrupt:
        Console(stderr=True).print("Interrupted: every worker was stopped; no report was written.", highlight=False)
        sys.exit(130)
    reports = discover.settle(reports, found)
    Path(output).write_text(html.render(reports, chosen, config.thresholds), encoding="utf-8")
    failed = [r for r in reports if not r.ok]
    for r in failed:
        Console(stderr=True).print(Text("error", style="bold red") + Text(f" ({r.error.kind.value}) {r.target}: {r.error.message}"))
    Console(stderr=True).print(f"Wrote {output} ({len(reports)} target{'s' if len(reports) != 1 else ''}).")
    sys.exit(2 if failed else 0)


@main.command("rules")
@click.option("--rule-dir", multiple=True, type=click.Path(file_okay=False))
@click.option("--output-format", "--format", "fmt", type=click.Choice(("table", "text", "markdown", "json")), default="table",
              show_default=True, help="A table (`text` is the same), a markdown index table, or JSON.")
@click.option("--full", is_flag=True, help="With --format markdown: every rule's full documentation after the index.")
def list_rules(rule_dir: tuple[str, ...], fmt: str, full: bool) -> None:
    """List every rule with its code, name, severity and risk."""
    from rich.table import Table

    from gradlint import docs
    from gradlint.registry import all_rules

    if full and fmt != "markdown":
        raise UsageError("--full needs --format markdown.")
    try:
        rules = all_rules(list(rule_dir))
    except GradlintError as exc:
        raise UsageError(exc.message) from None
    if fmt == "markdown":
        click.echo(docs.full_document(rules) if full else docs.index_table(rules), nl=False)
        return
    if fmt == "json":
        import json

        click.echo(json.dumps([{"code": r.code, "name": r.name, "severity": r.severity.value, "escalation": r.escalation or None,
                                "risk": r.risk.value, "summary": r.summary, "options": r.options} for r in rules], indent=2))
        return
    table = Table("code", "name", "severity", "risk", "summary", box=None)
    for r in rules:
        table.add_row(r.code, r.name, r.severity.value + (" (escalates)" if r.escalation else ""), r.risk.value, r.summary)
    console = console_for()
    console.print(table)
    escalating = [r for r in rules if r.escalation]
    if escalating:
        console.print("\nSeverities are defaults. " + "; ".join(f"{r.code}: {r.escalation}" for r in escalating)
                      + f"; {docs.PROBE_DOWNGRADE}.", soft_wrap=console.soft_wrap)


@main.command("explain")
@click.argument("rule")
@click.option("--plot", "plot_to", is_flag=False, flag_value="-", metavar="[FILE.png]",
              help="Draw the rule's activations and their derivatives in the terminal, or into FILE.png (needs matplotlib). "
                   "Put it after RULE: `gradlint explain GL101 --plot`.")
def explain(rule: str, plot_to: str | None) -> None:
    """Explain a rule (by code or name): why it matters, an example, the fix, references."""
    from rich.markdown import Markdown

    from gradlint import docs
    from gradlint.registry import all_rules, find_rule

    try:
        found = find_rule(all_rules(), rule)
    except GradlintError as exc:
        raise UsageError(exc.message) from None
    if found is None:
        raise UsageError(f"No rule {rule!r}. `gradlint rules` lists them.")
    if plot_to is None:
        Console().print(Markdown(docs.rule_markdown(found)))
        return
    from gradlint import plot

    acts = docs.plot_activations(found)
    if not acts:
        drawable = ", ".join(r.code for r in all_rules() if docs.plot_activations(r))
        raise UsageError(f"{found.code} {found.name} has no activation to plot; --plot works for {drawable}.")
    try:
        if plot_to == "-":
            Console().print(plot.terminal(acts))
        else:
            plot.write_png(acts, plot_to, f"{found.code} {found.name}")
            Console(stderr=True).print(f"Wrote {plot_to}.", highlight=False)
    except GradlintError as exc:
        raise UsageError(exc.message) from None


@main.command("clean")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="pyproject.toml to read [tool.gradlint] from.")
def clean(config_path: str | None) -> None:
    """Remove the cache of check results (.gradlint_cache/, or `cache-dir`)."""
    store = _cache_at(_config(config_path))
    removed = store.clear()
    Console(stderr=True).print(f"Removed {store.directory}." if removed else f"No cache at {store.directory}.", highlight=False)


def _cache_at(config: Config) -> Any:
    from gradlint.cache import DEFAULT_DIR, Cache

    return Cache(config.cache_dir or (config.path.parent if config.path else Path.cwd()) / DEFAULT_DIR)


main.add_command(explain, "rule")  # ruff's name: `gradlint rule GL101`


def run() -> None:
    """Console entry point. Once the report is written and flushed, leave without the interpreter's
    teardown of torch's compiler state (about a second after a capture), which does nothing for us."""
    try:
        main.main(prog_name="gradlint")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
