"""The rule API's typed seams: measured values come back as numbers or an `Unmeasurable` reason, never
as strings, and every optional hook is declared on `Rule` with a do-nothing default."""

from __future__ import annotations

from gradlint.probe import ProbeResult
from gradlint.rule import Rule, Unmeasurable, measured_drift, measured_level
from gradlint.types import ProfileEntry


def _probe(*entries: ProfileEntry, nonfinite: bool = False) -> ProbeResult:
    return ProbeResult(list(entries), {}, {}, 0.0, 16, nonfinite, 1.0)


def test_measured_drift_is_a_number_or_a_reason() -> None:
    probe = _probe(ProfileEntry("a", "Linear", -3.0), ProfileEntry("b", "Linear", -1.0),
                   ProfileEntry("z", "Linear", None, zero=True), ProfileEntry("n", "Linear", None, nonfinite=True))
    assert measured_drift(probe, "a", "b") == -2.0
    assert measured_drift(probe, "z", "b") is Unmeasurable.ZERO
    assert measured_drift(probe, "n", "b") is Unmeasurable.NONFINITE
    assert measured_drift(probe, "a", "missing") is None
    assert measured_level(probe, "a") == -3.0 and measured_level(probe, "n") is Unmeasurable.NONFINITE
    assert measured_level(_probe(ProfileEntry("a", "Linear", -3.0), nonfinite=True), "a") is Unmeasurable.NONFINITE


def test_optional_hooks_are_declared_on_rule() -> None:
    class Quiet(Rule):
        code = "GL999"
        name = "quiet"

        def check(self, ctx):  # type: ignore[no-untyped-def]
            return ()

    rule = Quiet()
    probe = _probe()
    assert list(rule.check_probe(None, probe)) == []  # type: ignore[arg-type]
    assert list(rule.check_suppressions(None, None, [])) == []  # type: ignore[arg-type]
    assert Quiet.plot_activations == () and rule.confirm(None, probe) is None  # type: ignore[arg-type]
