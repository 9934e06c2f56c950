"""Every machine-readable format stays parseable whatever a message holds: NUL, ANSI escapes, lone
surrogates, `]]>`, `<`/`&` and XML non-characters, in an error message and in module paths of findings.
Each character XML or strict JSON cannot hold is written out visibly, never dropped."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from gradlint.report.escape import json_text, xml_text

RAISES = "fixtures/hostile/nasty_text.py:Raises"
NAMED = "fixtures/hostile/nasty_text.py:Named"
HEALTHY = "fixtures/cases/healthy.py:ReLUHe"


@pytest.fixture(scope="module")
def outputs() -> dict[str, bytes]:
    """Each format from a real process, as CI reads it: bytes on stdout."""
    found = {}
    for fmt in ("json", "sarif", "junit", "github"):
        result = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", RAISES, NAMED, HEALTHY, "--no-probe",
                                 "--output-format", fmt], capture_output=True, timeout=600)
        assert result.returncode == 2, result.stderr.decode(errors="replace")
        assert b"Traceback" not in result.stderr
        found[fmt] = result.stdout
    return found


def _no_raw_controls(text: str) -> None:
    assert not any(c in text for c in "\x00\x1b\x07\ufffe") and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_junit_is_well_formed(outputs: dict[str, bytes]) -> None:
    root = ET.fromstring(outputs["junit"])  # raises on any character XML 1.0 forbids
    error = root.find("testsuite/testcase/error")
    assert error is not None
    message = error.get("message")
    assert "nul\\x00 esc\\x1b[31m surrogate\\udc80 cdata]]> tag<b>&amp; bell\\x07 nonchar\\ufffe end" in message
    names = [case.get("name") for case in root.iter("testcase")]
    assert any("\\x1b]]>\\udc80\\x00" in (n or "") or "\\x1b]]>\\udc80\\x00" in (c.findtext("failure") or "")
               for n, c in zip(names, root.iter("testcase")))
    _no_raw_controls(outputs["junit"].decode("utf-8"))


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_json_formats_parse_strictly(outputs: dict[str, bytes], fmt: str) -> None:
    text = outputs[fmt].decode("utf-8")  # strict UTF-8: no raw surrogate bytes
    flat = "\n".join(_strings(json.loads(text)))
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in flat)  # no lone surrogate, escaped or not
    assert "nul\x00 esc\x1b[31m surrogate\\udc80 cdata]]> tag<b>&amp;" in flat  # JSON carries the rest exactly
    assert "fc0\x1b]]>\\udc80\x00" in flat


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_json_error_message_exact(outputs: dict[str, bytes]) -> None:
    entry = json.loads(outputs["json"])["targets"][0]
    assert entry["error"]["kind"] == "construct"
    assert "nul\x00 esc\x1b[31m surrogate\\udc80 cdata]]> tag<b>&amp; bell\x07 nonchar\ufffe end" in entry["error"]["message"]
    named = json.loads(outputs["json"])["targets"][1]
    assert named["status"] == "ok" and named["findings"]


def test_github_annotations_carry_no_control_characters(outputs: dict[str, bytes]) -> None:
    text = outputs["github"].decode("utf-8")
    lines = text.splitlines()
    assert lines[0].startswith("::error ") and "\\x1b[31m" in lines[0]
    _no_raw_controls(text)


def test_escapes_are_visible() -> None:
    assert xml_text("a\x00b\x1fc\td\ne\udc80\uffff") == "a\\x00b\\x1fc\td\ne\\udc80\\uffff"
    assert json_text("a\x00\udc80\U0001f600") == "a\x00\\udc80\U0001f600"
