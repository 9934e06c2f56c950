"""`[tool.gradlint]` in the nearest pyproject.toml: plain data, never evaluated."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlint.settings import describe
from gradlint.types import ErrorKind, GradlintError, Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_KNOWN = {
    "targets", "inputs", "select", "ignore", "extend-select", "fail-on", "thresholds", "probe", "probe-batch",
    "probe-timeout", "probe-max-params", "rule-dirs", "per-module-ignores", "format",
    "exclude", "baseline", "extend-ignore", "output-format", "cache-dir",
}


@dataclass
class Config:
    targets: list[str] = field(default_factory=list)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    fail_on: Severity = Severity.WARNING
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe: bool = True
    probe_batch: int | None = None
    probe_timeout: float = 60.0
    probe_max_params: int = 200_000_000
    rule_dirs: list[str] = field(default_factory=list)
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    exclude: list[str] = field(default_factory=list)  # globs, relative to the configuration's folder
    baseline: str | None = None  # absolute, resolved against the configuration's folder
    extend_ignore: list[str] = field(default_factory=list)
    output_format: str | None = None
    cache_dir: str | None = None  # absolute, resolved against the configuration's folder

    def check_options(self, target: str, rules: list[Any], *, inputs: list[str] | None = None, no_probe: bool = False,
                      probe_batch: int | None = None, probe_timeout: float | None = None,
                      probe_max_params: int | None = None, device: str | None = None, verbose: bool = False) -> Any:
        """The `CheckOptions` for one target: command-line values where given, this configuration elsewhere."""
        from gradlint.inputs import InputSpec
        from gradlint.pipeline import CheckOptions

        positive_option("--probe-batch", probe_batch, integer=True)
        positive_option("--probe-timeout", probe_timeout)
        positive_option("--probe-max-params", probe_max_params, integer=True)
        for key, values in self.inputs.items():  # every configured input, so the first target already fails
            for text in values:
                try:
                    InputSpec.parse(text)
                except GradlintError as exc:
                    raise GradlintError(ErrorKind.INPUT, f"{self.path}: [tool.gradlint.inputs] {key!r}: {exc.message}") from None
        specs = inputs or self.inputs.get(target)
        return CheckOptions(
            rules=rules, thresholds=self.thresholds, inputs=[InputSpec.parse(s) for s in specs] if specs else None,
            probe=self.probe and not no_probe,
            probe_batch=probe_batch if probe_batch is not None else self.probe_batch,
            probe_timeout=probe_timeout if probe_timeout is not None else self.probe_timeout,
            probe_max_params=probe_max_params if probe_max_params is not None else self.probe_max_params,
            device=device, per_module_ignores=self.per_module_ignores, verbose=verbose,
        )


def positive_option(option: str, value: float | None, *, integer: bool = False) -> None:
    """A command-line number that must be positive (timeouts, batch, budgets): None passes (not given)."""
    if value is not None and not _is_positive(value, integer):
        what = "a positive integer" if integer else "a positive number of seconds"
        raise GradlintError(ErrorKind.INPUT, f"{option} must be {what}; got {value!r}.")


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None = None) -> Config:
    """The `[tool.gradlint]` section of `path` (or the nearest pyproject.toml), every value checked for its
    type and range here, before anything runs: a wrong value is one line naming the key and what it expects."""
    path = path or find_pyproject()
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise GradlintError(ErrorKind.LOAD, f"{path}:{line}: cannot read configuration: the file is not UTF-8 text "
                                            f"(byte {exc.object[exc.start:exc.start + 1]!r}); TOML files are UTF-8.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GradlintError(ErrorKind.LOAD, f"{path}: cannot read configuration: {exc}") from exc
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise _expected(path, "tool", "a table ([tool.gradlint] and other tools' sections)", tool, prefix="")
    section = tool.get("gradlint")
    if section is None:
        return Config(path=None)
    if not isinstance(section, dict):
        raise _expected(path, "tool.gradlint", "a table: a [tool.gradlint] section with keys such as targets, "
                                               "select, output-format", section, prefix="")
    unknown = set(section) - _KNOWN
    if unknown:
        from gradlint.settings import unknown as unknown_error

        raise unknown_error(path, "[tool.gradlint] key", sorted(unknown)[0], _KNOWN)
    for key, value in section.items():
        _VALIDATORS[key](path, key, value)
    if "format" in section and "output-format" in section and section["format"] != section["output-format"]:
        raise GradlintError(ErrorKind.LOAD, f"{path}: [tool.gradlint] sets both `output-format` "
                                            f"({section['output-format']!r}) and its old name `format` "
                                            f"({section['format']!r}); keep `output-format`.")
    base = path.parent
    from gradlint.settings import relocate_path, relocate_target
    inputs = section.get("inputs", {})
    return Config(
        targets=[relocate_target(t, base) for t in section.get("targets", [])],
        inputs={relocate_target(k, base): ([v] if isinstance(v, str) else list(v)) for k, v in inputs.items()},
        select=list(section["select"]) if "select" in section else None,
        ignore=list(section.get("ignore", [])),
        extend_select=list(section.get("extend-select", [])),
        fail_on=Severity(section.get("fail-on", "warning")),
        thresholds={k: dict(v) for k, v in section.get("thresholds", {}).items()},
        probe=section.get("probe", True),
        probe_batch=section.get("probe-batch"),
        probe_timeout=float(section.get("probe-timeout", 60.0)),
        probe_max_params=int(section.get("probe-max-params", 200_000_000)),
        rule_dirs=[str((base / d).resolve()) for d in section.get("rule-dirs", [])],
        per_module_ignores={k: list(v) for k, v in section.get("per-module-ignores", {}).items()},
        path=path,
        exclude=list(section.get("exclude", [])),
        baseline=relocate_path(section["baseline"], base) if "baseline" in section else None,
        extend_ignore=list(section.get("extend-ignore", [])),
        output_format=section.get("output-format", section.get("format")),
        cache_dir=relocate_path(section["cache-dir"], base) if "cache-dir" in section else None,
    )


def _expected(path: Path, key: str, expects: str, value: Any, prefix: str = "[tool.gradlint] ") -> GradlintError:
    return GradlintError(ErrorKind.LOAD, f"{path}: {prefix}`{key}` must be {expects}; got {describe(value)}.")


def _strings(example: str) -> Any:
    def check(path: Path, key: str, value: Any) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            hint = f" (one item: {key} = [{json.dumps(value)}])" if isinstance(value, str) else ""
            raise _expected(path, key, f"an array of strings, e.g. {key} = {example}{hint}", value)
    return check


def _table_of(what: str, example: str, inner: Any) -> Any:
    def check(path: Path, key: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise _expected(path, key, f"a table of {what}, e.g. [tool.gradlint.{key}] {example}", value)
        for name, item in value.items():
            if not inner(item):
                raise _expected(path, f"{key}.{name}" if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'{key}."{name}"',
                                what.split(" to ", 1)[-1], item)
    return check


def _is_positive(value: Any, integer: bool) -> bool:
    """A positive, finite int (or, unless `integer`, float); never a boolean."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value) and value > 0


def _positive(kind: type, expects: str) -> Any:
    def check(path: Path, key: str, value: Any) -> None:
        if not _is_positive(value, kind is int):
            raise _expected(path, key, expects, value)
    return check


def _choice(choices: tuple[str, ...]) -> Any:
    def check(path: Path, key: str, value: Any) -> None:
        if not isinstance(value, str) or value not in choices:
            raise _expected(path, key, f"one of {', '.join(repr(c) for c in choices)}", value)
    return check


def _string(expects: str) -> Any:
    def check(path: Path, key: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise _expected(path, key, expects, value)
    return check


def _boolean(path: Path, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _expected(path, key, "true or false (a TOML boolean, unquoted)", value)


def _spec_list(item: Any) -> bool:
    return isinstance(item, str) or (isinstance(item, list) and all(isinstance(i, str) for i in item))


def _string_list(item: Any) -> bool:
    return isinstance(item, list) and all(isinstance(i, str) for i in item)


_VALIDATORS: dict[str, Any] = {
    "targets": _strings('["models/net.py:Net"]'),
    "inputs": _table_of("target to an input spec string or an array of them", '"models/net.py:Net" = "float32[16,3,32,32]"',
                        _spec_list),
    "select": _strings('["GL1", "GL201"]'),
    "ignore": _strings('["GL301"]'),
    "extend-select": _strings('["GL4"]'),
    "extend-ignore": _strings('["GL301"]'),
    "fail-on": _choice(tuple(s.value for s in Severity)),
    "thresholds": _table_of("rule code to a table of its options", "GL103 = { min_log10 = -4.0 }",
                            lambda item: isinstance(item, dict)),
    "probe": _boolean,
    "probe-batch": _positive(int, "a positive integer (the probe's batch size)"),
    "probe-timeout": _positive(float, "a positive number of seconds"),
    "probe-max-params": _positive(int, "a positive integer (parameters)"),
    "rule-dirs": _strings('["lint_rules"]'),
    "per-module-ignores": _table_of("module path glob to an array of rule codes", '"encoder.*" = ["GL301"]', _string_list),
    "format": _string('a format name such as "json" (`output-format` is its current name)'),
    "output-format": _string('a format name such as "json"'),
    "exclude": _strings('["build/*", "legacy/"]'),
    "baseline": _string('a file path, e.g. "gradlint-baseline.json"'),
    "cache-dir": _string('a folder path, e.g. ".gradlint_cache"'),
}
assert set(_VALIDATORS) == _KNOWN
