"""`gradlint explain` (text and --plot), `gradlint rules --format markdown` and the generated docs/rules.md."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gradlint import docs, plot
from gradlint.cli import main
from gradlint.registry import all_rules

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("key", ["GL101", "gl101", "saturating-chain"])
def test_explain_by_code_and_name(key: str) -> None:
    result = _run("explain", key)
    assert result.exit_code == 0, result.output
    assert "GL101 saturating-chain" in result.stdout and "Why is this bad?" in result.stdout
    assert "gradlint explain GL101 --plot" in result.stdout  # rules with a picture say so


def test_every_builtin_option_is_documented_with_its_type() -> None:
    for rule in all_rules():
        assert set(rule.option_docs) == set(rule.options), f"{rule.code}: document each option in option_docs"
        assert all(len(text) > 20 for text in rule.option_docs.values()), rule.code


def test_explain_shows_each_option_with_type_default_and_doc() -> None:
    result = _run("explain", "GL101")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps long lines
    assert "min_length (integer, default 3): the fewest saturating activations in a row" in text
    assert "min_decades (number, default 2.0): how many decades" in text


def test_explain_unknown_rule_exits_2() -> None:
    result = _run("explain", "no-such-rule")
    assert result.exit_code == 2 and "No rule 'no-such-rule'" in result.output


def test_plot_derivative_is_autograd_of_the_function() -> None:
    curve = plot.sample("sigmoid", 121)
    for x, g in zip(curve.x, curve.grad):
        s = 1 / (1 + math.exp(-x))
        assert g == pytest.approx(s * (1 - s), abs=1e-12)
    assert plot.sample("sigmoid", plot.FINE).describe_peak() == "max 0.25 at x = 0.00"
    assert plot.sample("relu", plot.FINE).describe_peak() == "max 1 for x in [0.01, 6.00]"


def test_terminal_plot_for_gl101() -> None:
    result = _run("explain", "GL101", "--plot")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in ("sigmoid", "tanh"):
        assert f"φ = {name}(x)" in out and f"φ' = {name}'(x)" in out
    assert "max 0.25 at x = 0.00" in out and "max 1 at x = 0.00" in out
    assert "over [-6, 6]" in out
    grid = [line.split("│", 1)[1] for line in out.splitlines() if "│" in line]
    assert len(grid) == 2 * plot.HEIGHT  # one 60x15 panel per activation
    assert all(len(row) == plot.WIDTH and all("\u2800" <= ch <= "\u28ff" for ch in row) for row in grid)
    assert sum(ch != "\u2800" for row in grid for ch in row) > plot.WIDTH  # curves were drawn


def test_plot_on_a_rule_without_activations_exits_2() -> None:
    result = _run("explain", "GL103", "--plot")
    assert result.exit_code == 2 and "GL101" in result.output


def test_png_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the `plot` extra) is not installed")
    import matplotlib.image

    out = tmp_path / "gl101.png"
    result = _run("explain", "GL101", "--plot", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 0 and image.shape[1] > image.shape[0]  # two panels side by side


def test_png_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = tmp_path / "gl101.png"
    result = _run("explain", "GL101", "--plot", str(out))
    assert result.exit_code == 2
    assert 'pip install "gradlint[plot]"' in result.output and not out.exists()


def test_rules_markdown_lists_every_rule_once() -> None:
    result = _run("rules", "--format", "markdown")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| GL")]
    codes = [row.split("|")[1].strip() for row in rows]
    assert sorted(codes) == sorted(r.code for r in all_rules()) and len(set(codes)) == len(codes)
    assert result.stdout.startswith("| code | name | risk | severity | summary |")


def test_rules_markdown_full_has_a_section_per_rule() -> None:
    result = _run("rules", "--format", "markdown", "--full")
    assert result.exit_code == 0, result.output
    for rule in all_rules():
        assert result.stdout.count(f"\n## {rule.code} {rule.name}\n") == 1
    assert _run("rules", "--full").exit_code == 2


def test_docs_rules_md_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert committed == docs.builtin_document(), "docs/rules.md is stale: run `python -m gradlint.docs docs/rules.md`"


def test_readme_rules_table_is_up_to_date() -> None:
    committed = (ROOT / "README.md").read_text(encoding="utf-8")
    assert committed == docs.with_readme_table(committed), (
        "README's rules table is stale: run `python -m gradlint.docs docs/rules.md README.md`")
