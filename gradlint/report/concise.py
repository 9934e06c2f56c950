"""`--output-format concise`: one line per finding, `path:line:col: CODE [severity] message`, as ruff's
concise format (gradlint has no columns: a finding points at a line, so the column is 1). Editors and
`grep` read it; a target that could not be analysed is one `target: error (kind) message` line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.types import Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport


def render(targets: list[TargetReport], quiet: bool = False) -> str:
    lines = []
    for t in targets:
        if t.error is not None:
            lines.append(f"{t.target}: error ({t.error.kind.value}) {' '.join(t.error.message.split())}")
            continue
        for f in t.findings:
            where = f"{f.path}:{f.line or 1}:1" if f.path else f"{t.target}:1:1"
            same = f" (same cause: {', '.join(r.rule for r in f.related)})" if f.related else ""
            lines.append(f"{where}: {f.rule} [{f.severity.value}] {' '.join(f.message.split())}{same}")
    found = sum(len(t.findings) for t in targets)
    if not quiet:
        failed = sum(1 for t in targets if not t.ok)
        tail = f"Found {found} finding{'s' if found != 1 else ''} in {len(targets)} target{'s' if len(targets) != 1 else ''}."
        lines.append(tail + (f" {failed} could not be analysed." if failed else ""))
    return "\n".join(lines)


def statistics(targets: list[TargetReport]) -> list[dict[str, object]]:
    """ruff's `--statistics`: per rule, how many findings, most frequent first."""
    counts: dict[tuple[str, str], int] = {}
    worst: dict[tuple[str, str], str] = {}
    for t in targets:
        for f in (member for primary in t.findings for member in primary.members()):  # every code counts
            key = (f.rule, f.name)
            counts[key] = counts.get(key, 0) + 1
            if key not in worst or f.severity.rank > Severity(worst[key]).rank:
                worst[key] = f.severity.value
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0]))
    return [{"code": code, "name": name, "count": n, "severity": worst[(code, name)]} for (code, name), n in ordered]


def statistics_text(targets: list[TargetReport]) -> str:
    """`count<TAB>code<TAB>name` rows, counts right-aligned and codes padded, as ruff prints them."""
    rows = statistics(targets)
    if not rows:
        return ""
    count_width = max(len(str(r["count"])) for r in rows)
    code_width = max(len(str(r["code"])) for r in rows)
    return "\n".join(f"{r['count']:>{count_width}}\t{r['code']:<{code_width}}\t{r['name']}" for r in rows)
