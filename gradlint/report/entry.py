"""A target's report read back from the contract's JSON entry.

Every view renders from this, never from the objects a check built: a target checked in a worker process,
answered from the cache or checked in this process prints exactly the same. Importing it needs no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradlint.types import ErrorKind, Finding, GradlintError, ProfileEntry, Risk, Severity, profile_ratio


def finding_from_dict(data: dict[str, Any]) -> Finding:
    return Finding(data["rule"], data["name"], Severity(data["severity"]), Risk(data["risk"]), data["message"],
                   data.get("module", ""), data.get("path"), data.get("line"), data.get("confirmed"), data.get("fix"),
                   data.get("evidence") or {}, data.get("fix_check"), [finding_from_dict(r) for r in data.get("related", [])])


def profile_from_list(rows: list[dict[str, Any]]) -> list[ProfileEntry]:
    return [ProfileEntry(r["module"], r.get("kind", ""), r.get("log10_grad_rms"), bool(r.get("zero")), bool(r.get("nonfinite")),
                         r.get("log10_update_ratio")) for r in rows]


@dataclass(frozen=True)
class LayerView:
    module: str


@dataclass
class GraphView:
    """What the views show of a capture: its method, the weighted layers and the module tree."""

    method: str
    fallback: Any = None
    weighted_layers: list[LayerView] = field(default_factory=list)
    module_types: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ProfileView:
    """An estimate's or a probe's profile, as the contract gives it."""

    profile: list[ProfileEntry]
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    batch: int | None = None

    @property
    def log10_grad_ratio(self) -> float | None:
        return profile_ratio(self.profile)


class Entry:
    """One target entry of the contract, with the attributes the views read."""

    def __init__(self, data: dict[str, Any], traceback: str | None = None) -> None:
        self.data = data
        self.sources: list[str] = []  # user files the answer depends on, when a worker told them (cacheable)
        self.target: str = data["target"]
        self.traceback = traceback
        self.findings = [finding_from_dict(f) for f in data.get("findings", [])]
        error = data.get("error")
        self.error = GradlintError(ErrorKind(error["kind"]), error["message"]) if error else None
        capture = data.get("capture") or None
        self.parameters: int = int(capture.get("parameters") or 0) if capture else 0
        self.input_source: str | None = capture.get("input") if capture else data.get("input")
        self.notes: list[str] = list(data.get("notes", []))
        self.suppressed: int = int(data.get("suppressed", 0))
        self.seconds: dict[str, float] = dict(data.get("seconds", {}))
        estimate = data.get("estimate")
        self.estimate = ProfileView(profile_from_list(estimate.get("profile", []))) if estimate else None
        probe = data.get("probe")
        if probe:
            self.probe: ProfileView | None = ProfileView(profile_from_list(probe.get("profile", [])), None,
                                                         list(probe.get("notes", [])), probe.get("batch"))
        elif data.get("probe_skipped"):
            self.probe = ProfileView([], data["probe_skipped"], list(data.get("probe_notes", [])))
        else:
            self.probe = None
        self.graph: GraphView | None = None
        if capture:
            layers = [LayerView(r.module) for r in self.estimate.profile] if self.estimate else []
            self.graph = GraphView(capture.get("method", "?"), capture.get("fallback"), layers,
                                   dict(capture.get("module_types") or {}), list(capture.get("notes", [])))

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.data)
        data["findings"] = [f.to_dict() for f in self.findings]  # a baseline may have dropped some
        if self.error is not None:
            data["status"] = "error"
            data["error"] = {"kind": self.error.kind.value, "message": self.error.message}
        return data


def as_entry(report: Any) -> Entry:
    """A report of any origin as the contract's entry (a report read back already is one)."""
    if isinstance(report, Entry):
        return report
    return Entry(report.to_dict(), getattr(report, "traceback", None))


def as_entries(reports: Any) -> list[Entry]:
    return [as_entry(r) for r in reports]


def failed(target: str, kind: ErrorKind, message: str, traceback: str | None = None) -> Entry:
    """The entry of a target that produced no report of its own."""
    return Entry({"target": target, "status": "error", "findings": [], "error": {"kind": kind.value, "message": message},
                  "estimate": None, "probe": None}, traceback)
