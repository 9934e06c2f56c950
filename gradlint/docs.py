"""Rule documentation generated from the rule classes, so `gradlint explain`, `gradlint rules --format
markdown` and docs/rules.md say the same thing and cannot drift from the code.

Regenerate the committed page with `python -m gradlint.docs docs/rules.md`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gradlint.rule import SEVERITY_MEANING, Rule

HEADER = (
    "# gradlint rules\n\n"
    "<!-- Generated from the rule classes by `python -m gradlint.docs docs/rules.md`; do not edit by hand. -->\n\n"
)


def plot_activations(rule: type[Rule]) -> tuple[str, ...]:
    """The torch activations `gradlint explain RULE --plot` draws (empty for rules without a picture)."""
    return tuple(getattr(rule, "plot_activations", ()))


def rule_markdown(rule: type[Rule], level: int = 1) -> str:
    """One rule's page: summary, severity and risk, why, example, fix, probe criterion, options, references."""
    h1, h2 = "#" * level, "#" * (level + 1)
    refs = "\n".join(f"- {r}" for r in rule.references)
    options = "\n".join(f"- `{k}` = `{v!r}`" for k, v in rule.options.items())
    acts = plot_activations(rule)
    plot = (f"*Activations:* {', '.join(acts)}; `gradlint explain {rule.code} --plot` draws φ and φ'.\n\n"
            if acts else "")
    return (
        f"{h1} {rule.code} {rule.name}\n\n{rule.summary}\n\n*Severity:* {severity_text(rule)} · *risk:* {rule.risk.value}\n\n"
        f"{_severity_note(rule)}\n\n"
        f"{h2} Why is this bad?\n{rule.why}\n\n{plot}{h2} Example\n```python\n{rule.example.strip()}\n```\n\n"
        f"{h2} Fix\n{rule.fix}\n\n{h2} Probe criterion\n{rule.probe_criterion}\n\n"
        + (f"{h2} Options\n{options}\n\n" if options else "")
        + (f"{h2} References\n{refs}\n" if refs else "")
    )


PROBE_DOWNGRADE = "a finding the probe does not confirm at initialisation is downgraded to info"


def severity_text(rule: type[Rule]) -> str:
    """The default severity and, where the rule escalates, when: `warning (error when ...)`."""
    escalation = getattr(rule, "escalation", "")
    return f"{rule.severity.value} ({escalation})" if escalation else rule.severity.value


def _severity_note(rule: type[Rule]) -> str:
    """What the severity promises; judged rules take theirs from the model's measured training verdict."""
    note = f"*Severities mean:* {SEVERITY_MEANING}."
    if getattr(rule, "judged", False):
        note += (" This rule's severity is set per finding by the predicted (then measured) update lag across layers "
                 "and the forward signal, with thresholds fitted on bench/trainability.py.")
    return note


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(rule: type[Rule]) -> str:
    """GitHub's heading anchor for `## GL101 saturating-chain`."""
    return f"#{rule.code.lower()}-{rule.name}"


def index_table(rules: Sequence[type[Rule]], links: bool = False) -> str:
    """code | name | risk | severity | summary, one row per rule."""
    rows = ["| code | name | risk | severity | summary |", "| --- | --- | --- | --- | --- |"]
    for r in rules:
        code = f"[{r.code}]({_anchor(r)})" if links else r.code
        rows.append(f"| {code} | {r.name} | {r.risk.value} | {_cell(severity_text(r))} | {_cell(r.summary)} |")
    return "\n".join(rows) + f"\nSeverities are defaults; {PROBE_DOWNGRADE}.\n"


def full_document(rules: Sequence[type[Rule]]) -> str:
    """The index table linking to one section per rule."""
    sections = "\n".join(rule_markdown(r, level=2) for r in rules)
    return HEADER + index_table(rules, links=True) + "\n" + sections


def builtin_document() -> str:
    """docs/rules.md: the built-in rules only, so the page does not depend on installed plugins."""
    from gradlint.registry import builtin_rules_dir, load_rule_dir

    return full_document(load_rule_dir(str(builtin_rules_dir())))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gradlint.docs OUTPUT.md")
    Path(sys.argv[1]).write_text(builtin_document(), encoding="utf-8")
