"""Suppression comments (class line, creation line, codes and names), per-module-ignores globs, and
GL003 unused-suppression, on the models of fixtures/suppress/comments.py."""

from __future__ import annotations

import pytest

from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.registry import all_rules, select_rules

FILE = "fixtures/suppress/comments.py"


def _check(name: str, select: tuple[str, ...] = ("GL101", "GL003"), ignores: dict[str, list[str]] | None = None) -> TargetReport:
    rules = select_rules(all_rules(), list(select))
    report = check_target(f"{FILE}:{name}", CheckOptions(rules=rules, probe=False, per_module_ignores=ignores or {}))
    assert report.ok, report.error and report.error.message
    return report


def _codes(report: TargetReport) -> list[str]:
    return [f.rule for f in report.findings]


def test_unsilenced_chain_is_reported() -> None:
    report = _check("Unsilenced")
    assert _codes(report) == ["GL101"]
    assert report.suppressed == 0


@pytest.mark.parametrize("name", ["ClassIgnoreAll", "ClassIgnoreCodes", "ClassIgnoreName", "Parent", "UsesSilencedBlock", "CreationLine"])
def test_comment_silences_and_counts(name: str) -> None:
    report = _check(name)
    assert _codes(report) == [], [f.message for f in report.findings]
    assert report.suppressed == 1


def test_comment_for_another_rule_does_not_silence() -> None:
    report = _check("ClassIgnoreOtherRule")
    assert _codes(report) == ["GL101"]
    assert report.suppressed == 0


def test_comment_for_another_enabled_rule_is_unused() -> None:
    report = _check("ClassIgnoreOtherRule", select=("GL1", "GL2", "GL003"))
    if not any(r.code == "GL202" for r in all_rules()):
        pytest.skip("GL202 is not a rule in this tree")
    unused = [f for f in report.findings if f.rule == "GL003"]
    assert [f.line for f in unused] == [_line("class ClassIgnoreOtherRule")]


def _line(prefix: str) -> int:
    with open(FILE, encoding="utf-8") as handle:
        return next(i for i, text in enumerate(handle, start=1) if text.startswith(prefix) or text.strip().startswith(prefix))


@pytest.mark.parametrize("pattern", ["encoder", "encoder.*", "enc*"])
def test_per_module_ignores_glob_silences_subtree(pattern: str) -> None:
    report = _check("ModuleGlob", ignores={pattern: ["GL101"]})
    assert _codes(report) == []
    assert report.suppressed == 1


def test_per_module_ignores_other_module_or_code_keeps_finding() -> None:
    assert _codes(_check("ModuleGlob", ignores={"head": ["GL101"]})) == ["GL101"]
    assert _codes(_check("ModuleGlob", ignores={"encoder": ["GL202"]})) == ["GL101"]
    assert _codes(_check("ModuleGlob", ignores={"encoder": ["saturating-chain"]})) == []


def test_unused_bare_comment_is_reported_with_its_line() -> None:
    report = _check("HealthyWithStaleComment")
    [finding] = report.findings
    assert (finding.rule, finding.severity.value, finding.path) == ("GL003", "warning", FILE)
    assert finding.line == _line("class HealthyWithStaleComment")
    assert "every rule" in finding.message


def test_used_comments_are_not_reported_and_other_classes_are_out_of_scope() -> None:
    # The file holds stale comments for other classes; only this target's lines are judged.
    report = _check("ClassIgnoreCodes")
    assert report.findings == []


def test_comment_for_a_disabled_rule_is_not_judged() -> None:
    assert _check("ClassIgnoreCodes", select=("GL003",)).findings == []


def test_comment_on_the_construction_line_inside_a_loop_silences_the_layer() -> None:
    """The recorder keeps the line that constructed each layer, even when a Sequential registers it later,
    so a comment there silences the finding and is not reported as unused."""
    report = _check("CreationLineInLoop")
    assert _codes(report) == []
    assert report.suppressed >= 1


def test_docstring_that_shows_the_syntax_is_not_a_suppression(tmp_path: pytest.TempPathFactory) -> None:
    from gradlint.suppress import Suppressor
    from torch import nn

    path = tmp_path / "doc.py"  # type: ignore[operator]
    path.write_text('"""Write `# gradlint: ignore` on the class line."""\nx = 1  # gradlint: ignore[GL101]\n')
    found = Suppressor(nn.Linear(2, 2), None).scan_file(str(path))
    assert [(s.location.line, s.codes) for s in found] == [(2, frozenset({"GL101"}))]


def test_suppression_of_a_code_that_does_not_exist_is_reported() -> None:
    report = _check("MisspeltCode")
    assert report.suppressed == 1  # GL101 still silenced
    (finding,) = report.findings
    assert finding.rule == "GL003" and finding.evidence["unknown"] == ["GL1O2"]
    assert "Did you mean `GL102`?" in finding.message
    assert finding.line == _line("class MisspeltCode")
