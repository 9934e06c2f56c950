"""`[tool.gradlint]` in the nearest pyproject.toml: plain data, never evaluated."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlint.types import ErrorKind, GradlintError, Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_KNOWN = {
    "targets", "inputs", "select", "ignore", "extend-select", "fail-on", "thresholds", "probe", "probe-batch",
    "probe-timeout", "probe-max-params", "rule-dirs", "per-module-ignores", "format",
    "exclude", "baseline", "extend-ignore", "output-format",
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

    def check_options(self, target: str, rules: list[Any], *, inputs: list[str] | None = None, no_probe: bool = False,
                      probe_batch: int | None = None, probe_timeout: float | None = None,
                      probe_max_params: int | None = None, device: str | None = None, verbose: bool = False) -> Any:
        """The `CheckOptions` for one target: command-line values where given, this configuration elsewhere."""
        from gradlint.inputs import InputSpec
        from gradlint.pipeline import CheckOptions

        specs = inputs or self.inputs.get(target)
        return CheckOptions(
            rules=rules, thresholds=self.thresholds, inputs=[InputSpec.parse(s) for s in specs] if specs else None,
            probe=self.probe and not no_probe,
            probe_batch=probe_batch if probe_batch is not None else self.probe_batch,
            probe_timeout=probe_timeout if probe_timeout is not None else self.probe_timeout,
            probe_max_params=probe_max_params if probe_max_params is not None else self.probe_max_params,
            device=device, per_module_ignores=self.per_module_ignores, verbose=verbose,
        )


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None = None) -> Config:
    path = path or find_pyproject()
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GradlintError(ErrorKind.LOAD, f"{path}: cannot read configuration: {exc}") from exc
    section = data.get("tool", {}).get("gradlint")
    if section is None:
        return Config(path=None)
    unknown = set(section) - _KNOWN
    if unknown:
        from gradlint.settings import unknown as unknown_error

        raise unknown_error(path, "[tool.gradlint] key", sorted(unknown)[0], _KNOWN)
    base = path.parent
    from gradlint.settings import relocate_path, relocate_target
    try:
        fail_on = Severity(section.get("fail-on", "warning"))
    except ValueError:
        raise GradlintError(ErrorKind.LOAD, f"{path}: fail-on must be one of error, warning, info.") from None
    inputs = section.get("inputs", {})
    return Config(
        targets=[relocate_target(t, base) for t in section.get("targets", [])],
        inputs={relocate_target(k, base): ([v] if isinstance(v, str) else list(v)) for k, v in inputs.items()},
        select=list(section["select"]) if "select" in section else None,
        ignore=list(section.get("ignore", [])),
        extend_select=list(section.get("extend-select", [])),
        fail_on=fail_on,
        thresholds={k: dict(v) for k, v in section.get("thresholds", {}).items()},
        probe=bool(section.get("probe", True)),
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
    )
