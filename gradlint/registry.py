"""Finding rules: the built-in rules directory, a user's rule directories and entry-point plugins are
loaded by one mechanism (`load_rule_dir`), then filtered by --select / --ignore / --extend-select."""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

from gradlint.rule import Rule
from gradlint.sources import import_file
from gradlint.types import ErrorKind, GradlintError

ENTRY_POINT_GROUP = "gradlint.rules"


def builtin_rules_dir() -> Path:
    import gradlint.rules as package

    return Path(next(iter(package.__path__)))


def _rules_in(module: ModuleType) -> list[type[Rule]]:
    return [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Rule) and obj is not Rule
        and obj.__module__ == module.__name__ and getattr(obj, "code", None)
    ]


@lru_cache(maxsize=32)
def load_rule_dir(directory: str) -> tuple[type[Rule], ...]:
    """Every Rule subclass defined in the `*.py` files of `directory` (files starting with `_` skipped)."""
    path = Path(directory)
    if not path.is_dir():
        raise GradlintError(ErrorKind.LOAD, f"Rule directory {directory} does not exist.")
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    found: list[type[Rule]] = []
    for file in sorted(path.glob("*.py")):
        if file.name.startswith("_"):
            continue
        name = f"gradlint_rules_{tag}.{file.stem}"
        module = sys.modules.get(name)
        if module is None:
            try:
                module = import_file(name, str(file))
            except Exception as exc:
                raise GradlintError(ErrorKind.LOAD, f"Rule file {file} failed to import: {type(exc).__name__}: {exc}") from exc
        found.extend(_rules_in(module))
    return tuple(sorted(found, key=lambda r: r.code))


def _entry_point_rules() -> list[type[Rule]]:
    found: list[type[Rule]] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise GradlintError(ErrorKind.LOAD, f"The rule plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}.") from exc
        if inspect.isclass(obj) and issubclass(obj, Rule):
            found.append(obj)
        elif isinstance(obj, ModuleType):
            if getattr(obj, "__path__", None):
                found.extend(load_rule_dir(str(next(iter(obj.__path__)))))
            else:
                found.extend(_rules_in(obj))
        elif isinstance(obj, (str, os.PathLike)):
            found.extend(load_rule_dir(str(obj)))
    return found


_SEEN: dict[str, type[Rule]] = {}  # every rule any all_rules() call of this process loaded


def known_keys() -> frozenset[str]:
    """Codes and names of every rule loaded so far (built-in, plugins, the run's rule directories), so a
    suppression can be told apart from a misspelt one even when its rule is not selected."""
    if not _SEEN:
        all_rules()
    return frozenset({r.code for r in _SEEN.values()} | {r.name for r in _SEEN.values()})


def all_rules(extra_dirs: Iterable[str] = ()) -> list[type[Rule]]:
    rules: dict[str, type[Rule]] = {}
    sources = [load_rule_dir(str(builtin_rules_dir()))] + [load_rule_dir(d) for d in extra_dirs]
    for group in (*sources, _entry_point_rules()):
        for rule in group:
            if rule.code in rules and rules[rule.code] is not rule:
                raise GradlintError(ErrorKind.LOAD, f"Two rules claim code {rule.code}: {rules[rule.code].__module__} and {rule.__module__}.")
            stray = sorted(set(rule.option_docs) - set(rule.options))
            if stray:
                raise GradlintError(ErrorKind.LOAD, f"Rule {rule.code} ({rule.__module__}) documents `{stray[0]}` in option_docs, "
                                                    f"which is not one of its options ({', '.join(sorted(rule.options)) or 'none'}).")
            rules[rule.code] = rule
    _SEEN.update(rules)
    return sorted(rules.values(), key=lambda r: r.code)


def matches(rule: type[Rule], selector: str) -> bool:
    """ALL, a code, a code prefix (GL1, GL10) or a kebab-case name."""
    s = selector.strip()
    return s.upper() == "ALL" or rule.code.startswith(s.upper()) or s.lower() == rule.name


def _specificity(selector: str, rule: type[Rule]) -> int:
    s = selector.strip()
    if s.upper() == "ALL":
        return 0
    return len(rule.code) if s.lower() == rule.name else len(s)  # a name is exactly as specific as its full code


def select_rules(rules: list[type[Rule]], select: Iterable[str] | None, ignore: Iterable[str] = (),
                 extend_select: Iterable[str] = ()) -> list[type[Rule]]:
    """ruff's semantics: the most specific selector wins; on a tie, ignore beats select."""
    select = list(select) if select is not None else ["ALL"]
    chosen = []
    for selector in [*select, *ignore, *extend_select]:
        if not any(matches(r, selector) for r in rules):
            from gradlint.settings import nearest

            hint = nearest(selector, [r.code for r in rules] + [r.name for r in rules])
            raise GradlintError(ErrorKind.LOAD, f"Unknown rule selector {selector!r}:{hint} Use a code (GL101), a prefix (GL1), a name (saturating-chain) or ALL. `gradlint rules` lists them.")
    for rule in rules:
        best_select = max((_specificity(s, rule) for s in [*select, *extend_select] if matches(rule, s)), default=-1)
        best_ignore = max((_specificity(s, rule) for s in ignore if matches(rule, s)), default=-1)
        if best_select >= 0 and best_select > best_ignore:
            chosen.append(rule)
    return chosen


def find_rule(rules: list[type[Rule]], key: str) -> type[Rule] | None:
    for rule in rules:
        if rule.code == key.upper() or rule.name == key.lower():
            return rule
    return None
