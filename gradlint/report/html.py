"""`gradlint report -o report.html`: one self-contained HTML file per run (inline CSS and SVG, no
scripts, fonts or links to fetch), to attach to a CI run or a pull request."""

from __future__ import annotations

import linecache
import re
from collections.abc import Sequence
from html import escape
from typing import Any

import torch.nn.modules.activation as activations

from gradlint import __version__
from gradlint.pipeline import TargetReport
from gradlint.report.bands import Bands, bands, scale
from gradlint.report.svg import MINUS, profile_svg
from gradlint.report.timeline import timeline_html
from gradlint.types import Finding, Severity

# Activation module classes as torch defines them (MultiheadAttention lives in the same module).
ACTIVATIONS = frozenset(activations.__all__) - {"MultiheadAttention"}

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
.error{color:#b00020;font-weight:bold}.warning{color:#a15c00;font-weight:bold}.info{color:#1f5fbf}
code,pre{font:12px ui-monospace,monospace;background:#f6f6f6;padding:1px 4px}
ul.tree{list-style:none;padding-left:1.1em;margin:0}ul.tree li{white-space:nowrap;font:12px ui-monospace,monospace}
.tag{font-size:10px;border-radius:3px;padding:0 4px;margin-left:4px;color:#fff}
.tag.weighted{background:#1f5fbf}.tag.norm{background:#2e8b57}.tag.activation{background:#a15c00}
.legend span{margin-right:1.5em}
table.summary td.num{text-align:right}
"""

_CODE = re.compile(r"`([^`]+)`")
_POWER = re.compile(r"10\^\(?([-+]?\d+(?:\.\d+)?)\)?")


def inline(text: str) -> str:
    """A message as HTML: escaped, `code` spans as <code>, 10^-14.9 as 10 with a raised exponent."""
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escape(text, quote=False))
    return _POWER.sub(lambda m: f"10<sup>{m.group(1).replace('-', MINUS)}</sup>", out)


def severity_key(t: TargetReport) -> tuple[int, int, int, str]:
    """Worst first: targets that could not be analysed, then by their most severe finding, then by count."""
    worst = max((f.severity.rank for f in t.findings), default=-1)
    return (0 if t.error is not None else 1, -worst, -len(t.findings), t.target)


def _anchor(index: int) -> str:
    return f"target-{index}"


def summary_table(targets: Sequence[TargetReport]) -> str:
    """One row per target, worst first, linking to its section."""
    rows = []
    for i, t in enumerate(targets):
        counts = {s: sum(1 for f in t.findings if f.severity is s) for s in Severity}
        status = f'<span class="error">error ({escape(t.error.kind.value)})</span>' if t.error else "ok"
        ratio = _fmt(t.estimate.log10_grad_ratio) if t.estimate is not None else "n/a"
        rows.append(f'<tr><td><a href="#{_anchor(i)}">{escape(t.target)}</a></td><td>{status}</td>'
                    + "".join(f'<td class="num {s.value}">{counts[s]}</td>' for s in Severity)
                    + f'<td class="num">{ratio}</td></tr>')
    return ('<table class="summary"><tr><th>target</th><th>status</th><th>errors</th><th>warnings</th><th>info</th>'
            "<th>first-layer log10 ratio</th></tr>" + "".join(rows) + "</table>")


def _finding_row(f: Finding) -> str:
    where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "")
    source = linecache.getline(f.path, f.line).strip() if f.path and f.line else ""
    probe = "" if f.confirmed is None else ("confirmed" if f.confirmed else "not confirmed")
    return (
        f'<tr class="finding"><td class="{f.severity.value}">{escape(f.rule)}<br>{escape(f.severity.value)}</td>'
        f"<td>{escape(f.name)}<br><code>{escape(f.module or '<root>')}</code></td>"
        f'<td>{inline(f.message)}<div class="where"><code>{escape(where)}</code></div>'
        + (f'<pre class="source">{escape(source)}</pre>' if source else "")
        + (f'<div class="related">same cause: {escape(", ".join(f"{r.rule} {r.name} [{r.severity.value}]" for r in f.related))}</div>'
           if f.related else "")
        + (f"<div>fix: {inline(f.fix)}</div>" if f.fix else "")
        + f"</td><td>{probe}</td></tr>"
    )


def _tags(path: str, kind: str, weighted: set[str]) -> str:
    tags = []
    if path in weighted:
        tags.append('<span class="tag weighted">weighted</span>')
    if "Norm" in kind:
        tags.append('<span class="tag norm">norm</span>')
    if kind in ACTIVATIONS:
        tags.append('<span class="tag activation">activation</span>')
    return "".join(tags)


def _tree(module_types: dict[str, str], weighted: set[str]) -> str:
    """The module tree as nested lists, children in registration order."""
    children: dict[str, list[str]] = {}
    for path in module_types:
        if path:
            children.setdefault(path.rpartition(".")[0], []).append(path)

    def node(path: str) -> str:
        name = path.rpartition(".")[2] or "<root>"
        kind = module_types[path]
        inner = "".join(node(c) for c in children.get(path, []))
        return (f'<li data-module="{escape(path)}">{escape(name)}: {escape(kind)}{_tags(path, kind, weighted)}'
                + (f'<ul class="tree">{inner}</ul>' if inner else "") + "</li>")

    return f'<ul class="tree">{node("")}</ul>' if "" in module_types else ""


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _legend(lines: Bands, low: bool, high: bool) -> str:
    def band(line: Any, colour: str, shaded: bool, word: str) -> str:
        sign = "&lt;" if word == "vanishing" else "&gt;"
        value = f"10<sup>{f'{line.value:.3g}'.replace('-', MINUS)}</sup>"
        style = f"background:{colour}" if shaded else f"border-bottom:1px dashed {colour}"
        what = "crossed: see the findings" if shaded else "not crossed where the rule judges"
        return f'<span style="{style}">{word} ({sign} {value}, {escape(line.rule)} {escape(line.option)}; {what})</span>'

    return ('<p class="legend"><span style="color:#1f5fbf">&#9473; estimate</span><span style="color:#c0392b">&#9675; probe</span>'
            + band(lines.vanish, "#fde2e2" if low else "#c0392b", low, "vanishing")
            + band(lines.explode, "#fde9d0" if high else "#a15c00", high, "exploding") + "</p>")


def _target(t: TargetReport, lines: Bands | None = None, span: tuple[float, float] | None = None, anchor: str = "") -> str:
    lines = lines or bands()
    ident = f' id="{anchor}"' if anchor else ""
    parts = [f'<section class="target"{ident}><h2>{escape(t.target)}</h2>']
    if t.error is not None:
        parts.append(f'<p class="error">error ({escape(t.error.kind.value)}): {escape(t.error.message)}</p></section>')
        return "".join(parts)
    probe = t.probe if t.probe is not None and t.probe.skipped is None else None
    if t.graph is not None and t.estimate is not None:
        parts.append(
            f"<p>{len(t.graph.weighted_layers)} weighted layers, {t.parameters:,} parameters, captured by "
            f"{escape(t.graph.method)}. First-layer gradient log10 ratio: estimate {_fmt(t.estimate.log10_grad_ratio)}, "
            f"probe {_fmt(probe.log10_grad_ratio) if probe else 'not run'}.</p>"
        )
        shade = (lines.crossed(t, lines.vanish), lines.crossed(t, lines.explode))
        parts.append(_legend(lines, *shade))
        parts.append(profile_svg(t.estimate.profile, probe.profile if probe else [], lines, shade, span))
    parts.append(timeline_html(t))  # a monitored training run's profile over steps (empty for `check`)
    parts.append(f"<h3>Findings ({len(t.findings)})</h3>")
    if t.findings:
        parts.append('<table class="findings"><tr><th>rule</th><th>name / module</th><th>message</th><th>probe</th></tr>'
                     + "".join(_finding_row(f) for f in t.findings) + "</table>")
    else:
        parts.append("<p>No findings.</p>")
    if t.suppressed:
        parts.append(f"<p>{t.suppressed} finding(s) suppressed by comments or per-module-ignores.</p>")
    if t.graph is not None:
        weighted = {layer.module for layer in t.graph.weighted_layers}
        parts.append("<h3>Model structure</h3>" + _tree(t.graph.module_types, weighted))
    parts.append("</section>")
    return "".join(parts)


def body(targets: Sequence[TargetReport], rules: Sequence[Any] | None = None,
         thresholds: dict[str, dict[str, Any]] | None = None) -> str:
    """The report's content: a summary table for several targets, then each target, worst first, every
    chart on one scale with the rules' (configured) thresholds."""
    lines = bands(rules, thresholds)
    ordered = sorted(targets, key=severity_key)
    span = scale(ordered, lines)
    head = summary_table(ordered) if len(ordered) > 1 else ""
    return head + "".join(_target(t, lines, span, _anchor(i)) for i, t in enumerate(ordered))


def render(targets: list[TargetReport], rules: Sequence[Any] | None = None,
           thresholds: dict[str, dict[str, Any]] | None = None) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gradlint report</title>'
        f"<style>{STYLE}</style></head><body><h1>gradlint {escape(__version__)} report</h1>"
        f"{body(targets, rules, thresholds)}</body></html>\n"
    )


def scoped_style(scope: str) -> str:
    """STYLE with every selector under `scope`, so a report inside a notebook does not restyle the page."""
    rules = []
    for chunk in STYLE.strip().split("}"):
        if "{" not in chunk:
            continue
        selectors, declarations = chunk.split("{", 1)
        scoped = ",".join(scope if s.strip() == "body" else f"{scope} {s.strip()}" for s in selectors.split(","))
        rules.append(f"{scoped}{{{declarations}}}")
    return "".join(rules)


def fragment(targets: list[TargetReport], rules: Sequence[Any] | None = None,
             thresholds: dict[str, dict[str, Any]] | None = None) -> str:
    """The report as one <div> with scoped styles: what a notebook shows inline (`_repr_html_`)."""
    return f'<div class="gradlint-report"><style>{scoped_style(".gradlint-report")}</style>{body(targets, rules, thresholds)}</div>'
