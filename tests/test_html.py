"""`gradlint report -o FILE.html`: one self-contained file with the profile chart (estimate polyline,
probe points, threshold bands, layer labels), the findings with their source lines, and the model tree."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.cli import main
from gradlint.pipeline import CheckOptions, check_target
from gradlint.registry import all_rules, select_rules
from gradlint.report import html

TARGET = "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP(depth=8)"


class Collector(HTMLParser):
    """Every start tag with its attributes, and the text inside the classes the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        self._open.append(values.get("class", ""))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1]:
            self.texts.setdefault(self._open[-1], []).append(data)

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls)]


@pytest.fixture(scope="module")
def page() -> tuple[Collector, object, str]:
    # Module-scoped, so it runs before conftest's per-test chdir: name the fixture by absolute path.
    root = Path(__file__).resolve().parent.parent
    report = check_target(f"{root}/{TARGET}", CheckOptions(rules=select_rules(all_rules(), ["GL101"]), probe=True))
    assert report.ok, report.error and report.error.message
    text = html.render([report])
    parsed = Collector()
    parsed.feed(text)
    return parsed, report, text


def test_profile_chart_has_one_point_per_weighted_layer(page: tuple) -> None:
    parsed, report, _ = page
    assert len(parsed.having("svg")) == 1
    [line] = parsed.having("polyline", "estimate")
    points = line["points"].split()
    assert len(points) == len(report.graph.weighted_layers) == 9
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] > ys[-1], "the first layer's gradient is far smaller, so it is drawn lower"


def test_probe_points_and_bands_and_labels(page: tuple) -> None:
    parsed, report, _ = page
    measured = [p for p in report.probe.profile if p.log10_grad_rms is not None]
    assert len(parsed.having("circle", "probe")) == len(measured) == 9
    # the vanishing band is shaded (a vanishing finding); the exploding one is only a dashed line (none)
    assert parsed.having("rect", "band vanishing") and not parsed.having("rect", "band exploding")
    assert parsed.having("line", "threshold vanishing") and parsed.having("line", "threshold exploding")
    assert parsed.texts["layer"] == [layer.module for layer in report.graph.weighted_layers]


def test_findings_show_their_source_line(page: tuple) -> None:
    parsed, report, _ = page
    [finding] = report.findings
    assert len(parsed.having("tr", "finding")) == 1
    source = (Path(__file__).resolve().parent.parent / finding.path).read_text().splitlines()[finding.line - 1].strip()
    assert parsed.texts["source"] == [source]
    assert finding.rule in "".join(parsed.texts["error"] + parsed.texts.get("warning", []))


def test_model_tree_marks_weighted_layers_and_activations(page: tuple) -> None:
    parsed, report, _ = page
    modules = [a["data-module"] for a in parsed.having("li")]
    assert modules == list(report.graph.module_types)
    assert len(parsed.texts["tag weighted"]) == 9
    assert len(parsed.texts["tag activation"]) == 8


def test_self_contained(page: tuple) -> None:
    parsed, _, text = page
    assert not parsed.having("script") and not parsed.having("link") and not parsed.having("img")
    for _, attrs in parsed.tags:
        for key in ("src", "href"):
            assert not attrs.get(key, "").startswith(("http:", "https:", "//")), attrs
    assert "@import" not in text and "url(" not in text


def test_report_command_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", TARGET, "--select", "GL101", "--no-probe", "-o", str(out)])
    assert result.exit_code == 0, result.output
    parsed = Collector()
    parsed.feed(out.read_text())
    assert len(parsed.having("polyline", "estimate")) == 1
    assert parsed.having("circle", "probe") == []
    assert CliRunner().invoke(main, ["report", "fixtures/nope.py:Net", "-o", str(out)]).exit_code == 2


HEALTHY = "fixtures/cases/healthy.py:ReLUHe"


def _report(target: str, *, thresholds: dict | None = None) -> object:
    root = Path(__file__).resolve().parent.parent
    rules = select_rules(all_rules(), ["GL1", "GL2"])
    report = check_target(f"{root}/{target}", CheckOptions(rules=rules, thresholds=thresholds or {}, probe=False))
    assert report.ok, report.error and report.error.message
    return report


def test_thresholds_come_from_the_rules_and_the_configuration() -> None:
    from gradlint.report.bands import bands

    rules = all_rules()
    default = bands(rules)
    gl103 = next(r for r in rules if r.code == "GL103")
    assert (default.vanish.rule, default.vanish.value) == ("GL103", gl103.options["min_log10"])
    assert default.explode.rule == "GL201"
    assert bands(rules, {"GL103": {"min_log10": -4.5}}).vanish.value == -4.5
    text = html.render([_report(HEALTHY)], rules, {"GL103": {"min_log10": -4.5}})
    assert "GL103 min_log10 = 10<tspan" in text and "\u22124.5" in text


def test_healthy_model_is_never_drawn_in_a_danger_band() -> None:
    healthy = _report(HEALTHY)
    parsed = Collector()
    parsed.feed(html.render([healthy]))
    assert not [f for f in healthy.findings if f.severity.value != "info"]
    assert not parsed.having("rect", "band vanishing") and not parsed.having("rect", "band exploding")
    assert "1e" not in "".join(parsed.texts.get("tick", []))  # exponents are typeset, not 1e-3


def test_several_targets_share_one_scale_with_a_summary_sorted_by_severity() -> None:
    healthy, broken = _report(HEALTHY), _report(TARGET.replace("depth=8", "depth=16"))
    text = html.render([healthy, broken])
    parsed = Collector()
    parsed.feed(text)
    assert parsed.having("table", "summary")
    links = [a["href"] for a in parsed.having("a")]
    assert links == ["#target-0", "#target-1"]
    sections = [s.get("id") for s in parsed.having("section", "target")]
    assert sections == ["target-0", "target-1"]
    assert text.index(broken.target.split("/")[-1]) < text.index(healthy.target.split("/")[-1])  # worst first
    ticks = [re.findall(r'class="tick"[^>]*>10<tspan[^>]*>([^<]+)<', svg) for svg in text.split("<svg")[1:]]
    assert len(ticks) == 2 and ticks[0] == ticks[1]  # one scale


def test_markdown_and_powers_are_rendered() -> None:
    broken = _report(TARGET)
    text = html.render([broken])
    assert "`" not in text.split("<body>")[1]  # no raw backticks in the page body
    assert "10^" not in text and "<sup>" in text and "<code>nn.ReLU()</code>" in text


def test_notebook_fragment_scopes_its_style() -> None:
    text = html.fragment([_report(HEALTHY)])
    assert text.startswith('<div class="gradlint-report">') and "body{" not in text and ".gradlint-report h1" in text


def test_healthy_transformer_with_layers_past_the_line_is_not_shaded() -> None:
    """BERT's attention queries and keys sit below GL103's line beside the residual stream that carries the
    gradient; GL103 does not judge them alone, so the chart draws them hollow and shades no band."""
    bert = _report("fixtures/zoo/bert.py:BERT")
    parsed = Collector()
    parsed.feed(html.render([bert]))
    assert not [f for f in bert.findings if f.severity.value != "info"]
    assert not parsed.having("rect", "band vanishing") and not parsed.having("rect", "band exploding")
    below = [p for p in bert.estimate.profile if p.log10_grad_rms is not None and p.log10_grad_rms < -3]
    assert below and len(parsed.having("circle", "estimate-point unjudged")) == len(below)


def test_findings_of_one_cause_show_their_related_codes() -> None:
    broken = _report(TARGET.replace("depth=8", "depth=16"))
    primary = next(f for f in broken.findings if f.related)
    parsed = Collector()
    parsed.feed(html.render([broken]))
    (related,) = parsed.texts["related"]
    assert all(r.rule in related for r in primary.related)
