"""`--format junit`: JUnit XML for CI systems that show test reports (one testsuite per target, one
failing testcase per finding at or above --fail-on, an error testcase for a target that failed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xml.etree.ElementTree as ET

from gradlint.report.escape import xml_text as x
from gradlint.types import Severity

if TYPE_CHECKING:
    from gradlint.pipeline import TargetReport


def render(targets: list[TargetReport], fail_on: Severity) -> str:
    root = ET.Element("testsuites", name="gradlint")
    for t in targets:
        suite = ET.SubElement(root, "testsuite", name=x(t.target))
        failures = errors = 0
        if t.error is not None:
            case = ET.SubElement(suite, "testcase", classname=x(t.target), name="analyse")
            ET.SubElement(case, "error", type=t.error.kind.value, message=x(t.error.message))
            errors += 1
        else:
            for f in t.findings:
                where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "")
                case = ET.SubElement(suite, "testcase", classname=x(t.target), name=x(f"{f.rule} {f.name} {f.module or '<root>'}"),
                                     file=x(f.path or ""), line=str(f.line or ""))
                if f.severity.rank >= fail_on.rank:
                    failure = ET.SubElement(case, "failure", type=f.severity.value, message=x(f.message))
                    failure.text = x(f"{where}\n{f.message}\nfix: {f.fix or ''}".strip())
                    failures += 1
                else:
                    ET.SubElement(case, "skipped", message=x(f"{f.severity.value}: {f.message}"))
            if not t.findings:
                ET.SubElement(suite, "testcase", classname=x(t.target), name="no findings")
        suite.set("tests", str(max(len(suite), 1)))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
