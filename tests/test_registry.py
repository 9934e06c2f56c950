"""Rule selection (ruff's semantics) and loading rules from directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.cli import main
from gradlint.registry import all_rules, find_rule, load_rule_dir, matches, select_rules
from gradlint.rule import Rule
from gradlint.types import ErrorKind, GradlintError


def _rule(code: str, name: str) -> type[Rule]:
    return type(f"R{code}", (Rule,), {"code": code, "name": name})


RULES = [_rule("GL101", "alpha-chain"), _rule("GL102", "beta-gain"), _rule("GL111", "gamma-thing"), _rule("GL201", "delta-blowup")]


def _codes(select=None, ignore=(), extend=()) -> list[str]:
    return [r.code for r in select_rules(RULES, select, ignore, extend)]


@pytest.mark.parametrize("select, expected", [
    (None, ["GL101", "GL102", "GL111", "GL201"]),
    (["ALL"], ["GL101", "GL102", "GL111", "GL201"]),
    (["GL1"], ["GL101", "GL102", "GL111"]),
    (["GL10"], ["GL101", "GL102"]),
    (["gl201"], ["GL201"]),
    (["beta-gain"], ["GL102"]),
    (["GL101", "delta-blowup"], ["GL101", "GL201"]),
])
def test_select(select, expected) -> None:
    assert _codes(select) == expected


def test_ignore_and_extend_select() -> None:
    assert _codes(["ALL"], ["GL1"]) == ["GL201"]
    assert _codes(["GL2"], extend=["GL111"]) == ["GL111", "GL201"]
    assert _codes(None, ["gamma-thing"]) == ["GL101", "GL102", "GL201"]


def test_more_specific_selector_wins() -> None:
    assert _codes(["GL102"], ["GL1"]) == ["GL102"]  # select more specific than ignore
    assert _codes(["GL1"], ["GL10"]) == ["GL111"]  # ignore more specific than select
    assert _codes(["ALL"], ["GL10"], ["GL101"]) == ["GL101", "GL111", "GL201"]


def test_ignore_wins_ties() -> None:
    assert _codes(["GL1"], ["GL1"]) == []
    assert _codes(["GL101"], ["GL101"]) == []


@pytest.mark.parametrize("select, ignore", [(["alpha-chain"], ["GL101"]), (["GL101"], ["alpha-chain"])])
def test_name_is_as_specific_as_its_code(select, ignore) -> None:
    assert _codes(select, ignore) == []
    assert _codes(select, ["GL10"]) == ["GL101"]  # and more specific than any prefix


@pytest.mark.parametrize("where", ["select", "ignore", "extend"])
def test_unknown_selector(where: str) -> None:
    kwargs = {"select": None, "ignore": (), "extend": ()}
    kwargs[where] = ["GL999"]
    with pytest.raises(GradlintError) as info:
        _codes(**kwargs)
    assert "GL999" in info.value.message


def test_matches_and_find_rule() -> None:
    assert matches(RULES[0], "GL1") and matches(RULES[0], "alpha-chain") and not matches(RULES[0], "GL2")
    assert find_rule(RULES, "gl111") is RULES[2] and find_rule(RULES, "Beta-Gain") is RULES[1]
    assert find_rule(RULES, "GL1") is None


def test_builtin_rules_loaded() -> None:
    rules = all_rules()
    assert find_rule(rules, "GL101") is not None
    assert [r.code for r in rules] == sorted(r.code for r in rules)
    assert len({r.code for r in rules}) == len(rules)


def test_load_rule_dir(user_rule_dir) -> None:
    folder = user_rule_dir()
    rules = load_rule_dir(str(folder))
    assert [(r.code, r.name) for r in rules] == [("GL901", "always-flag-901")]
    assert "GL901" in [r.code for r in all_rules([str(folder)])]


def test_missing_rule_dir(tmp_path: Path) -> None:
    with pytest.raises(GradlintError) as info:
        load_rule_dir(str(tmp_path / "nope"))
    assert info.value.kind is ErrorKind.LOAD


def test_duplicate_codes_rejected(user_rule_dir) -> None:
    one, two = user_rule_dir(folder="one"), user_rule_dir(folder="two")
    with pytest.raises(GradlintError) as info:
        all_rules([str(one), str(two)])
    assert "GL901" in info.value.message


def test_user_rule_runs_end_to_end(user_rule_dir) -> None:
    rules = user_rule_dir("GL902")
    result = CliRunner().invoke(main, ["check", "fixtures/tests/core_models.py:TinyMLP", "--rule-dir", str(rules),
                                       "--select", "GL902", "--no-probe", "--format", "json"])
    assert result.exit_code == 1, result.output
    (target,) = json.loads(result.stdout)["targets"]
    assert [(f["rule"], f["name"], f["severity"]) for f in target["findings"]] == [("GL902", "always-flag-902", "warning")]
    assert target["findings"][0]["message"] == "3 weighted layers seen by a user rule"


BROKEN_RULE = '''
from gradlint.rule import Rule


class Broken(Rule):
    code = "GL903"
    name = "broken-rule"
    summary = "Raises (a test rule)."

    def check(self, ctx):
        raise KeyError("missing evidence")
'''


def test_a_rule_that_raises_is_an_error_of_that_target(tmp_path, user_rule_dir) -> None:
    """A broken rule is reported (exit 2, the text view says which rule and why), and the others' findings stay."""
    rules = user_rule_dir("GL902")
    (rules / "GL903_broken.py").write_text(BROKEN_RULE)
    args = ["check", "fixtures/tests/core_models.py:TinyMLP", "--rule-dir", str(rules), "--select", "GL902,GL903", "--no-probe"]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 2, text.output
    assert "error (internal)" in text.stdout and "GL903 (broken-rule) failed" in text.stdout and "KeyError" in text.stdout
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    (target,) = json.loads(result.stdout)["targets"]
    assert target["status"] == "error" and "GL903" in target["error"]["message"]
    assert [f["rule"] for f in target["findings"]] == ["GL902"]


def test_option_docs_naming_no_option_is_a_load_error(user_rule_dir) -> None:
    folder = user_rule_dir()
    rule_file = next(folder.glob("GL901_*.py"))
    rule_file.write_text(rule_file.read_text().replace('    fix = "Nothing to fix."\n', '    fix = "Nothing to fix."\n'
                                                       '    options = {"min_depth": 3}\n'
                                                       '    option_docs = {"min_dpeth": "a typo of min_depth"}\n'))
    with pytest.raises(GradlintError) as info:
        all_rules([str(folder)])
    assert info.value.kind is ErrorKind.LOAD
    assert "GL901" in info.value.message and "`min_dpeth`" in info.value.message and "min_depth" in info.value.message
