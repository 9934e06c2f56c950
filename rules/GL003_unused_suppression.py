"""GL003 unused-suppression: a `# gradlint: ignore` comment that silenced nothing (ruff's RUF100)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from functools import lru_cache

from gradlint.registry import known_keys
from gradlint.rule import Rule, RuleContext
from gradlint.settings import nearest
from gradlint.sources import display_path, is_user_file
from gradlint.suppress import Suppression, Suppressor
from gradlint.types import Finding, Risk, Severity, SourceLocation


class UnusedSuppression(Rule):
    code = "GL003"
    name = "unused-suppression"
    severity = Severity.WARNING
    risk = Risk.OTHER
    summary = "A `# gradlint: ignore` comment in the model's source that silenced no finding."
    why = (
        "A suppression outlives the problem it was written for: once the model is fixed (or the rule improves), "
        "the stale comment keeps silencing that part of the model, so a later regression there goes unreported."
    )
    example = """
class Net(nn.Module):  # gradlint: ignore
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))  # nothing to silence
"""
    fix = "Delete the comment, or narrow it to the codes that still fire: `# gradlint: ignore[GL101]`."
    references = ("ruff RUF100 unused-noqa",)
    probe_criterion = "Not probed: whether a comment silenced a finding is known without running the model."
    VALID = ("fixtures/suppress/comments.py:ClassIgnoreCodes", "fixtures/suppress/comments.py:CreationLine")
    INVALID = ("fixtures/suppress/comments.py:HealthyWithStaleComment", "fixtures/suppress/comments.py:MisspeltCode")

    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        return ()  # everything happens once suppression has run, in `check_suppressions`

    def check_suppressions(self, ctx: RuleContext, suppressor: Suppressor, enabled: list[type[Rule]]) -> Iterator[Finding]:
        """Called by the pipeline after suppression, with the suppressor's used/unused state."""
        owners = _owners(ctx)
        keys = {r.code for r in enabled} | {r.name for r in enabled}
        existing = set(known_keys()) | keys
        for path in sorted({loc.path for loc in owners}):
            for entry in suppressor.scan_file(path):
                module = owners.get(entry.location)
                if module is None:
                    continue
                missing = sorted(c for c in entry.codes or () if c.upper() not in existing and c.lower() not in existing)
                if missing:  # a misspelt code silences nothing, however the rest of the comment fares
                    hints = "".join(nearest(c, existing) for c in missing)
                    yield Finding(
                        rule=self.code, name=self.name, severity=self.severity, risk=self.risk,
                        message=f"This `# gradlint: ignore` comment names {', '.join(missing)}, which "
                                f"{'is not a rule' if len(missing) == 1 else 'are not rules'}: it silences nothing "
                                f"for {'it' if len(missing) == 1 else 'them'}.{hints}",
                        module=module, path=entry.location.path, line=entry.location.line,
                        fix="Use a code or name that `gradlint rules` lists, or delete the comment.",
                        evidence={"codes": sorted(entry.codes or ()), "unknown": missing},
                    )
                if entry.used:
                    continue
                judged = _judged_codes(entry, keys)
                if judged is None:
                    continue
                what = "every rule" if entry.codes is None else ", ".join(judged)
                skipped = sorted(set(entry.codes or ()) - set(judged))
                note = f" ({', '.join(skipped)} not enabled in this run)" if skipped else ""
                yield Finding(
                    rule=self.code, name=self.name, severity=self.severity, risk=self.risk,
                    message=f"This `# gradlint: ignore` comment for {what} silenced no finding in "
                            f"{module or '<root>'}{note}; it would hide a future regression there.",
                    module=module, path=entry.location.path, line=entry.location.line, fix=self.fix,
                    evidence={"codes": None if entry.codes is None else sorted(entry.codes)},
                )


def _judged_codes(entry: Suppression, keys: set[str]) -> list[str] | None:
    """The comment's codes this run can judge (all rules for a bare comment, []); None if none."""
    if entry.codes is None:
        return []
    judged = sorted(c for c in entry.codes if c.upper() in keys or c.lower() in keys)  # unknown ones: reported above
    return judged or None


def _owners(ctx: RuleContext) -> dict[SourceLocation, str]:
    """Every user source line where a comment could silence something in this model, mapped to the
    module it would concern: the lines of the model's own classes, and where its layers were created."""
    owners: dict[SourceLocation, str] = {}
    for path, module in ctx.model.named_modules():
        site = ctx.record.site_of(module) if ctx.record is not None else None
        if site is not None:
            owners.setdefault(site, path)
        span = _class_span(type(module))  # type: ignore[arg-type]  # classes are hashable; mypy checks their unbound __hash__
        if span is not None:
            shown, start, count = span
            for line in range(start, start + count):
                owners.setdefault(SourceLocation(shown, line), path)
    return owners


@lru_cache(maxsize=1024)
def _class_span(cls: type) -> tuple[str, int, int] | None:
    """(display path, first line, line count) of a user class; None for torch's own and unknown ones.
    Cached per class: a model repeats a few classes hundreds of times and inspect re-reads the file."""
    try:
        source = inspect.getsourcefile(cls)
        if source is None or not is_user_file(source):
            return None
        lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return display_path(source), start, len(lines)
