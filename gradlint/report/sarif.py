"""`--format sarif`: SARIF 2.1.0 for GitHub code scanning."""

from __future__ import annotations

import json
from typing import Any

from gradlint import __version__
from gradlint.pipeline import TargetReport
from gradlint.report.escape import json_safe
from gradlint.rule import Rule
from gradlint.types import Severity

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _rule_entry(rule: type[Rule]) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary or rule.name},
        "fullDescription": {"text": rule.why or rule.summary or rule.name},
        "help": {"text": f"{rule.why}\n\nFix: {rule.fix}".strip(), "markdown": f"**Why is this bad?** {rule.why}\n\n**Fix:** {rule.fix}"},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"risk": rule.risk.value},
    }


def render(targets: list[TargetReport], rules: list[type[Rule]]) -> str:
    results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for t in targets:
        if t.error is not None:
            notifications.append({"level": "error", "message": {"text": f"{t.target}: {t.error.message}"}})
            continue
        for f in t.findings:
            result: dict[str, Any] = {
                "ruleId": f.rule,
                "level": _LEVEL[f.severity],
                "message": {"text": f"{f.message} [{f.module or '<root>'}]"},
                "properties": {"target": t.target, "module": f.module, "risk": f.risk.value, "confirmed": f.confirmed},
            }
            if f.path:
                region = {"startLine": f.line} if f.line else {}
                result["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"}, **({"region": region} if region else {})}}]
            results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "gradlint", "version": __version__, "informationUri": "https://pypi.org/project/gradlint/", "rules": [_rule_entry(r) for r in rules]}},
        "results": results,
        "invocations": [{"executionSuccessful": not notifications, "toolExecutionNotifications": notifications}],
    }
    return json.dumps(json_safe({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}), indent=2)
