"""`--format github`: GitHub Actions workflow commands, one annotation per finding or error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.report.escape import xml_text
from gradlint.types import Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape(text: str, prop: bool = False) -> str:
    text = xml_text(text).replace("%", "%25")  # control characters written out: no terminal escapes in CI logs.replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render(targets: list[TargetReport]) -> str:
    lines = []
    for t in targets:
        if t.error is not None:
            lines.append(f"::error title={_escape('gradlint ' + t.error.kind.value + ' error', True)}::{_escape(t.target + ': ' + t.error.message)}")
            continue
        for f in t.findings:
            props = []
            if f.path:
                props.append(f"file={_escape(f.path, True)}")
                if f.line:
                    props.append(f"line={f.line}")
            props.append(f"title={_escape(f'{f.rule} {f.name}', True)}")
            where = f" [{f.module}]" if f.module else ""
            lines.append(f"::{_LEVEL[f.severity]} {','.join(props)}::{_escape(f.message + where)}")
    return "\n".join(lines)
