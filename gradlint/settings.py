"""Configuration the way ruff treats it: paths relative to the file that wrote them, and every name a
user can misspell (keys, rule codes, threshold options) checked, with the nearest valid one suggested."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gradlint.pysource import relative
from gradlint.types import ErrorKind, GradlintError


def nearest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean `x`?' for the closest valid name, or '' when nothing is close."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" Did you mean `{lowered[match[0]]}`?" if match else ""


def unknown(path: Path | str | None, what: str, word: str, choices: Iterable[str]) -> GradlintError:
    where = f"{path}: " if path else ""
    options = sorted(set(choices))
    return GradlintError(ErrorKind.LOAD, f"{where}unknown {what} `{word}`.{nearest(word, options)} Valid: {', '.join(options)}.")


def relocate_target(target: str, base: Path) -> str:
    """A configured target with its file made relative to the working directory instead of `base` (the
    configuration's folder), so `cd models && gradlint check` and `--config ../pyproject.toml` find it.
    A dotted target whose module lives under `base` becomes a file target when the folders differ."""
    if base.resolve() == Path.cwd().resolve():
        return target
    head, paren, rest = target.partition("(")
    location, colon, name = head.rpartition(":")
    if not colon or not location:
        return target
    if location.endswith(".py"):
        file = Path(location)
        if not file.is_absolute():
            return f"{relative(base / file)}:{name}{paren}{rest}"
        return target
    parts = location.split(".")
    for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return f"{relative(candidate)}:{name}{paren}{rest}"
    return target


def relocate_path(value: str, base: Path) -> str:
    """A configured file or folder (baseline, rule directory) made absolute against the configuration's folder."""
    return os.fspath((base / value).resolve()) if not Path(value).is_absolute() else value


_CODE = re.compile(r"^[A-Za-z]+\d+$")


def check_rule_names(config: Any, rules: Sequence[Any]) -> None:
    """Every code or name the configuration mentions (thresholds, per-module-ignores) names a rule, and
    every threshold option is one the rule has. Selectors (`select`, `ignore`) are checked by the registry."""
    where = config.path
    keys = {r.code for r in rules} | {r.name for r in rules}
    by_key = {**{r.code: r for r in rules}, **{r.name: r for r in rules}}
    for key_name in ("select", "ignore", "extend-select", "extend-ignore"):
        for selector in getattr(config, key_name.replace("-", "_"), None) or []:
            if selector not in keys and selector.lower() not in keys and not _prefix(selector, rules):
                raise unknown(where, f"rule in [tool.gradlint] {key_name}", selector, keys)
    for key, options in config.thresholds.items():
        rule = by_key.get(key) or by_key.get(key.upper()) or by_key.get(key.lower())
        if rule is None:
            raise unknown(where, "rule in [tool.gradlint.thresholds]", key, keys)
        for option in options:
            if option not in rule.options:
                valid = sorted(rule.options) or ["(none: this rule has no options)"]
                raise unknown(where, f"option of {rule.code} in [tool.gradlint.thresholds.{key}]", option, valid)
            expects = _same_kind(rule.options[option], options[option])
            if expects:
                value = options[option]
                raise GradlintError(ErrorKind.LOAD, f"{where}: [tool.gradlint.thresholds.{key}] `{option}` must be {expects} "
                                                    f"(default {rule.options[option]!r}); got {describe(value)}.")
    for pattern, codes in config.per_module_ignores.items():
        for code in codes:
            if code not in keys and code.upper() not in keys and code.lower() not in keys and not _prefix(code, rules):
                raise unknown(where, f"rule in [tool.gradlint.per-module-ignores] \"{pattern}\"", code, keys)
        if not pattern.strip() or any(c in pattern for c in "()\\ "):
            raise GradlintError(ErrorKind.LOAD, f"{where}: per-module-ignores pattern {pattern!r} is not a module path glob "
                                                "(dotted names with * and ?, e.g. \"encoder.layers.*\").")


def describe(value: Any) -> str:
    """A value as TOML would show it, with its TOML type, shortened."""
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), f"a {type(value).__name__}")
    shown = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{kind} ({shown[:60] + '...' if len(shown) > 60 else shown})"


def _same_kind(default: Any, value: Any) -> str:
    """'' when `value` can stand in for the option's `default`, else what the option expects: a number
    for a number (an integer for an integer), true/false for a flag, a string for a string."""
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else "true or false"
    if isinstance(default, (int, float)):
        integer = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return "an integer" if integer else "a number"
        return "" if math.isfinite(value) else "a finite number"
    if isinstance(default, str):
        return "" if isinstance(value, str) else "a string"
    if isinstance(default, (list, tuple)):
        return "" if isinstance(value, list) else "an array"
    return ""


def _prefix(code: str, rules: Sequence[Any]) -> bool:
    return code.upper() == "ALL" or (bool(_CODE.match(code) or code.isalpha()) and any(r.code.startswith(code.upper()) for r in rules))


def merge_selection(config: Any, select: list[str], ignore: list[str], extend_select: list[str],
                    extend_ignore: list[str]) -> tuple[list[str] | None, list[str], list[str]]:
    """ruff's merge of the command line with the configuration: `--select` replaces the configured
    selection (and the configured `extend-select` with it), `--ignore`, `--extend-ignore` and
    `--extend-select` add to what the configuration says. Returns (select, ignore, extend_select)."""
    chosen = select or config.select
    extended = list(extend_select) if select else [*config.extend_select, *extend_select]
    ignored = [*config.ignore, *getattr(config, "extend_ignore", []), *ignore, *extend_ignore]
    return chosen, ignored, extended
