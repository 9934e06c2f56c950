"""`# gradlint: ignore` and `# gradlint: ignore[GL101,saturating-chain]` comments, and
`per-module-ignores` globs. A comment on a module's `class` line silences its whole subtree; on the
line that created a layer or ran an op, that layer or op."""

from __future__ import annotations

import fnmatch
import io
import linecache
import re
import tokenize
from typing import Literal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradlint.types import Finding, SourceLocation

if TYPE_CHECKING:  # GL003 imports this module; `gradlint rules` must not import torch for it
    from torch import nn

    from gradlint.recorder import ConstructionRecord

_COMMENT = re.compile(r"#\s*gradlint:\s*ignore(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)


@dataclass
class Suppression:
    location: SourceLocation
    codes: frozenset[str] | None  # None: every rule
    used: bool = False


def comment_at(location: SourceLocation | None) -> frozenset[str] | Literal[False] | None:
    """The codes suppressed on that line, None for all, False when the line has no suppression."""
    if location is None:
        return False
    match = _COMMENT.search(linecache.getline(location.source or location.path, location.line))
    if not match:
        return False
    if match["codes"] is None:
        return None
    return frozenset(c.strip() for c in match["codes"].split(",") if c.strip())


def _applies(codes: frozenset[str] | None, finding: Finding) -> bool:
    return codes is None or finding.rule in {c.upper() for c in codes} or finding.name in {c.lower() for c in codes}


@dataclass
class Suppressor:
    model: nn.Module
    record: ConstructionRecord | None
    per_module_ignores: dict[str, list[str]] = field(default_factory=dict)
    seen: dict[SourceLocation, Suppression] = field(default_factory=dict)

    def _candidates(self, finding: Finding) -> list[SourceLocation]:
        from gradlint.recorder import class_location

        spots: list[SourceLocation] = []
        if finding.path and finding.line:
            spots.append(SourceLocation(finding.path, finding.line))
        parts = finding.module.split(".") if finding.module else []
        for depth in range(len(parts), -1, -1):
            path = ".".join(parts[:depth])
            try:
                module = self.model.get_submodule(path) if path else self.model
            except AttributeError:
                continue
            if self.record is not None:
                site = self.record.site_of(module)
                if site is not None and depth == len(parts):
                    spots.append(site)
            cls = class_location(module)
            if cls is not None:
                spots.append(cls)
        return spots

    def suppressed(self, finding: Finding) -> bool:
        parts = finding.module.split(".") if finding.module else []
        scopes = [".".join(parts[:depth]) for depth in range(len(parts), 0, -1)] or [""]
        for pattern, codes in self.per_module_ignores.items():
            # A glob names a module and, like a class-line comment, its whole subtree.
            if any(fnmatch.fnmatchcase(scope, pattern) for scope in scopes) and _applies(frozenset(codes), finding):
                return True
        hit = False
        for spot in self._candidates(finding):
            marked = comment_at(spot)
            if marked is False:
                continue
            entry = self.seen.setdefault(spot, Suppression(spot, marked))
            if _applies(entry.codes, finding):
                entry.used = True
                hit = True
        return hit

    def scan_file(self, path: str) -> list[Suppression]:
        """Every suppression comment in a file, so unused ones can be reported. Only real comments
        count: a docstring that shows the syntax is not a suppression."""
        found: list[Suppression] = []
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO("".join(linecache.getlines(path))).readline))
        except (tokenize.TokenError, SyntaxError):
            return found
        for token in tokens:
            if token.type == tokenize.COMMENT and _COMMENT.search(token.string):
                loc = SourceLocation(path, token.start[0])
                codes = comment_at(loc)
                found.append(self.seen.setdefault(loc, Suppression(loc, None if codes is None else codes)))  # type: ignore[arg-type]
        return found
