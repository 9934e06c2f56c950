"""`gradlint report -o report.html`: one self-contained HTML file per run (inline CSS and SVG, no
scripts, fonts or links to fetch), to attach to a CI run or a pull request."""

from __future__ import annotations

import linecache
from html import escape

import torch.nn.modules.activation as activations

from gradlint import __version__
from gradlint.pipeline import TargetReport
from gradlint.report.svg import profile_svg
from gradlint.types import Finding

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
"""


def _finding_row(f: Finding) -> str:
    where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "")
    source = linecache.getline(f.path, f.line).strip() if f.path and f.line else ""
    probe = "" if f.confirmed is None else ("confirmed" if f.confirmed else "not confirmed")
    return (
        f'<tr class="finding"><td class="{f.severity.value}">{escape(f.rule)}<br>{escape(f.severity.value)}</td>'
        f"<td>{escape(f.name)}<br><code>{escape(f.module or '<root>')}</code></td>"
        f'<td>{escape(f.message)}<div class="where"><code>{escape(where)}</code></div>'
        + (f'<pre class="source">{escape(source)}</pre>' if source else "")
        + (f"<div>fix: {escape(f.fix)}</div>" if f.fix else "")
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


def _target(t: TargetReport) -> str:
    parts = [f"<section class=\"target\"><h2>{escape(t.target)}</h2>"]
    if t.error is not None:
        parts.append(f'<p class="error">error ({escape(t.error.kind.value)}): {escape(t.error.message)}</p></section>')
        return "".join(parts)
    probe = t.probe if t.probe is not None and t.probe.skipped is None else None
    if t.graph is not None and t.estimate is not None:
        parts.append(
            f"<p>{len(t.graph.weighted_layers)} weighted layers, {t.parameters:,} parameters, captured by "
            f"{escape(t.graph.method)}. First-layer gradient log10 ratio: estimate {_fmt(t.estimate.log10_grad_ratio)}, "
            f"probe {_fmt(probe.log10_grad_ratio) if probe else 'not run'}.</p>"
            '<p class="legend"><span style="color:#1f5fbf">&#9473; estimate</span><span style="color:#c0392b">&#9675; probe</span>'
            '<span style="background:#fde2e2">vanishing (&lt; 1e-3)</span><span style="background:#fde9d0">exploding (&gt; 1e1.85)</span></p>'
        )
        parts.append(profile_svg(t.estimate.profile, probe.profile if probe else []))
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


def render(targets: list[TargetReport]) -> str:
    body = "".join(_target(t) for t in targets)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gradlint report</title>'
        f"<style>{STYLE}</style></head><body><h1>gradlint {escape(__version__)} report</h1>{body}</body></html>\n"
    )
