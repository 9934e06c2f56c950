"""One cause, one finding: findings of the same risk about the same layers become one primary finding
with the others attached as `related`.

A deep tanh stack at default init trips the saturating-chain, init-mismatch, vanishing-gradient and
plain-stack rules at once; each is true, but people read the first and stop. Grouping is a pure function
of the findings (their risk, module and the module paths their evidence names), so it can be redone
after anything drops members (a baseline), and every member keeps its code for select, ignore,
suppression and baseline.
"""

from __future__ import annotations

from typing import Any

from gradlint.types import Finding, Risk

_GROUPED = (Risk.VANISHING, Risk.EXPLODING, Risk.DEAD_UNITS)


def flatten(findings: list[Finding]) -> list[Finding]:
    """Every finding, primaries and their related ones, with `related` emptied."""
    flat = []
    for finding in findings:
        for member in (finding, *finding.related):
            member.related = []
            flat.append(member)
    return flat


def group(findings: list[Finding]) -> list[Finding]:
    """Primaries in the order of `findings` (by the position of their first member), related attached."""
    flat = flatten(findings)
    parent = list(range(len(flat)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    names = [names_of(f) for f in flat]
    for i, a in enumerate(flat):
        if a.risk not in _GROUPED:
            continue
        for j in range(i):
            b = flat[j]
            if b.risk is a.risk and names[i] & names[j]:
                parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(flat)):
        members.setdefault(root(i), []).append(i)
    primaries = []
    for indices in sorted(members.values(), key=lambda ids: ids[0]):
        ranked = sorted(indices, key=lambda i: _rank(flat[i], i))
        primary = flat[ranked[0]]
        primary.related = [flat[i] for i in ranked[1:]]
        primaries.append(primary)
    return primaries


def _rank(finding: Finding, position: int) -> tuple[Any, ...]:
    """The primary: highest severity, then a fix shown to work, then the rule that was listed first."""
    return (-finding.severity.rank, finding.fix_check is None, position)


def names_of(finding: Finding) -> frozenset[str]:
    """Module paths a finding concerns: its own, and every string its evidence holds."""
    found = {finding.module} if finding.module else set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for value in finding.evidence.values():
        collect(value)
    return frozenset(found)
