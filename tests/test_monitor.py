"""gradlint.monitor: real training runs of a few dozen steps on generated data (fixtures/monitor), judged by
the same rules as `gradlint check`, without changing the training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from torch import nn

import gradlint
from gradlint.monitoring import Monitor, StepMeasure
from gradlint.sources import import_file

ROOT = Path(__file__).resolve().parents[1]


def _fixture(relative: str) -> Any:
    """A fixture file imported under a name of its own: on sys.path as `models` it would shadow the
    `models` packages other tests build."""
    path = ROOT / relative
    return import_file(f"_monitor_fixture_{path.stem}", str(path))


DeepSigmoidMLP = _fixture("fixtures/zoo/deep_sigmoid.py").DeepSigmoidMLP
_models = _fixture("fixtures/monitor/models.py")
RAW_BATCH, DropoutBNNet, ReLUMLP, TanhMLP = _models.RAW_BATCH, _models.DropoutBNNet, _models.ReLUMLP, _models.TanhMLP
classification, images, raw_loader = _models.classification, _models.images, _models.raw_loader
ResNet = _fixture("fixtures/zoo/resnet.py").ResNet

SCHEMA = json.loads((ROOT / "docs" / "spec" / "report.schema.json").read_text())


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int = 30, batch: int = 64,
          every: int = 1, monitor: bool = True, seed: int = 0, **options: Any) -> Monitor | None:
    """Seeded SGD with momentum on (x, y); `monitor.step()` where the README says."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    watch = gradlint.monitor(model, every=every, on_finding=lambda f: None, **options) if monitor else None
    for step in range(steps):
        i = (step * batch) % len(x)
        loss = nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        opt.zero_grad()
        loss.backward()
        if watch is not None:
            watch.step()
        opt.step()
    if watch is not None:
        watch.close()
    return watch


def by_rule(watch: Monitor) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for f in watch.findings:
        found.setdefault(f.rule, []).append(f)
    return found


def measure_at(watch: Monitor, step: int) -> StepMeasure:
    return next(m for m in watch.timeline.measures if m.step == step)


def test_deep_sigmoid_mlp_reports_vanishing_at_step_0() -> None:
    torch.manual_seed(0)
    x, y = classification()
    watch = train(DeepSigmoidMLP(), x, y, lr=0.05, steps=24)
    assert watch is not None
    vanishing = by_rule(watch)["GL103"]
    assert [f.step for f in vanishing] == [0]
    finding = vanishing[0]
    assert finding.risk.value == "vanishing" and finding.severity.value == "error" and finding.confirmed
    assert finding.module == "net.0" and finding.evidence["measured_log10"] < -10
    assert finding.evidence["steps_seen"] == 24  # measured at every step, still vanishing at the last
    assert "Measured: net.0's relative update trails" in finding.message
    assert finding.path is not None and finding.path.endswith("deep_sigmoid.py")
    report = watch.report()
    assert report.findings[0].step == 0 and report.to_dict()["findings"][0]["step"] == 0


def test_healthy_resnet_reports_nothing() -> None:
    torch.manual_seed(0)
    x, y = images()
    watch = train(ResNet(), x, y, lr=0.01, steps=30, batch=32)
    assert watch is not None
    assert len(watch.timeline.measures) == 30 and watch.notes == []
    assert watch.findings == []
    report = watch.report()
    assert report.findings == [] and report.graph is not None  # the rules did judge every step


def test_relu_mlp_at_100x_learning_rate_reports_where_it_began() -> None:
    torch.manual_seed(0)
    x, y = classification()
    sane = train(ReLUMLP(), x, y, lr=0.01)
    assert sane is not None and sane.findings == []
    torch.manual_seed(0)
    hot = train(ReLUMLP(), x, y, lr=1.0)
    assert hot is not None
    damage = [f for f in hot.findings if f.risk.value in ("dead-units", "exploding") and f.severity.value != "info"]
    assert damage, "a 100x learning rate kills units or explodes the gradient"
    first = min(damage, key=lambda f: f.step)
    assert 0 < first.step < 30  # after training began, not at initialisation
    assert measure_at(hot, 0) is not None
    if first.rule == "GL301":  # the measurement at the onset shows it, the one at step 0 did not
        onset, start = measure_at(hot, first.step).activations[first.module], measure_at(hot, 0).activations[first.module]
        assert onset.dead_fraction > 0.5 or (onset.active_fraction or 1.0) < 0.1
        assert start.dead_fraction <= 0.5 and (start.active_fraction or 0.0) >= 0.1
    assert "GL204" in by_rule(hot)  # and the loss then turned NaN, with the step it did
    assert by_rule(hot)["GL204"][0].step > first.step


def test_unnormalised_inputs_saturate_during_training() -> None:
    torch.manual_seed(0)
    raw, labels = RAW_BATCH, torch.zeros(len(RAW_BATCH), dtype=torch.int64)
    watch = train(TanhMLP(), raw, labels, lr=0.01, steps=6, batch=32)
    assert watch is not None
    saturated = by_rule(watch)["GL302"]
    assert saturated[0].step == 0 and saturated[0].evidence["measured_saturated_fraction"] > 0.55
    normal = train(TanhMLP(), (raw - 127.5) / 73.9, labels, lr=0.01, steps=6, batch=32)
    assert normal is not None and "GL302" not in by_rule(normal)


@pytest.mark.parametrize("every", [1, 3])
def test_training_is_bit_identical_with_the_monitor(every: int) -> None:
    """Dropout (global RNG), batch norm (running statistics), an in-place ReLU: same parameters, buffers,
    gradients and RNG state after a seeded run with and without the monitor."""
    def run(monitor: bool) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        model = DropoutBNNet()
        x, y = classification()
        train(model, x, y, lr=0.1, steps=12, batch=32, every=every, monitor=monitor)
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return {k: v.clone() for k, v in model.state_dict().items()}, grads, torch.rand(4)

    plain, plain_grads, plain_rng = run(False)
    watched, watched_grads, watched_rng = run(True)
    assert plain.keys() == watched.keys()
    assert all(torch.equal(plain[k], watched[k]) for k in plain)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, watched_grads, strict=True))
    assert torch.equal(plain_rng, watched_rng)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_hooks_exist_only_on_measured_steps_and_close_removes_them() -> None:
    model = ReLUMLP()
    x, y = classification()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradlint.monitor(model, every=4, on_finding=lambda f: None) as watch:
        counts = [_hooks(model)]
        for _step in range(6):
            loss = nn.functional.cross_entropy(model(x[:32]), y[:32])
            opt.zero_grad()
            loss.backward()
            watch.step()
            opt.step()
            counts.append(_hooks(model))
        assert model.training
    assert counts[0] > 0  # armed for step 0
    assert counts[1:4] == [0, 0, 0]  # steps 1-3 run without a single hook
    assert counts[4] > 0  # armed again for step 4
    assert _hooks(model) == 0 and [m.step for m in watch.timeline.measures] == [0, 4]
    with pytest.raises(RuntimeError, match="closed"):
        watch.step()


def test_forward_without_gradients_is_not_measured() -> None:
    model = ReLUMLP()
    x, _ = classification()
    watch = gradlint.monitor(model, every=1)
    with torch.no_grad():
        model(x[:8])
    watch.step()
    watch.close()
    report = watch.report()
    assert watch.timeline.measures == [] and any("no training step was measured" in n for n in report.notes)


def test_findings_are_selected_ignored_and_suppressed_as_usual() -> None:
    x, y = classification()
    torch.manual_seed(0)
    ignored = train(DeepSigmoidMLP(depth=12), x, y, lr=0.05, steps=3, ignore=["GL103"])
    assert ignored is not None and "GL103" not in by_rule(ignored)
    torch.manual_seed(0)
    selected = train(DeepSigmoidMLP(depth=12), x, y, lr=0.05, steps=3, select=["vanishing-gradient"])
    assert selected is not None and set(by_rule(selected)) == {"GL103"}
    torch.manual_seed(0)
    muted = train(DeepSigmoidMLP(depth=12), x, y, lr=0.05, steps=3, per_module_ignores={"net.*": ["GL103"]})
    assert muted is not None and "GL103" not in by_rule(muted) and muted.report().suppressed == 1


def test_each_new_finding_is_logged_once_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = DeepSigmoidMLP(depth=12)
    x, y = classification()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with caplog.at_level(logging.INFO, logger="gradlint.monitor"), gradlint.monitor(model, every=1) as watch:
        for _ in range(5):
            loss = nn.functional.cross_entropy(model(x[:64]), y[:64])
            opt.zero_grad()
            loss.backward()
            watch.step()
            opt.step()
    lines = [r.getMessage() for r in caplog.records if r.name == "gradlint.monitor"]
    assert len(lines) == len(watch.findings) >= 1 and all("\n" not in line for line in lines)
    assert any(line.startswith("gradlint: step 0: GL103 vanishing-gradient [error] net.0") for line in lines)


def test_report_is_the_contract_with_steps_and_pictures(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = classification()
    watch = train(DeepSigmoidMLP(depth=12), x, y, lr=0.05, steps=10, every=2)
    assert watch is not None
    written = watch.save(tmp_path)
    assert sorted(p.name for p in written) == ["gradlint-monitor.html", "gradlint-monitor.json", "gradlint-monitor.txt"]
    doc = json.loads((tmp_path / "gradlint-monitor.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    target = doc["targets"][0]
    assert target["findings"][0]["step"] == 0 and target["estimate"]["profile"]
    assert [m["step"] for m in target["monitor"]["measured"]] == [0, 2, 4, 6, 8]
    assert target["monitor"]["measured"][0]["profile"][0]["module"] == "net.0"
    html = (tmp_path / "gradlint-monitor.html").read_text()
    assert 'class="timeline"' in html and "GL103@0" in html and "Training monitor" in html
    text = (tmp_path / "gradlint-monitor.txt").read_text()
    assert "training monitor: 10 steps, measured every 2 (5 measurements)" in text
    assert "onsets: step 0 GL103 [error] net.0" in text


def test_lightning_style_module_calling_its_child_is_measured_on_the_child() -> None:
    """A wrapper whose own forward is never called (training_step calls self.net): the outermost module that
    ran is the one measured, and its paths are the child's."""
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = DeepSigmoidMLP(depth=12)

    torch.manual_seed(0)
    wrapper = Wrapper()
    x, y = classification()
    with gradlint.monitor(wrapper, every=1, on_finding=lambda f: None) as watch:
        loss = nn.functional.cross_entropy(wrapper.net(x[:64]), y[:64])
        loss.backward()
        watch.step()
    assert [f.rule for f in watch.findings if f.rule == "GL103"] == ["GL103"]
    assert watch.timeline.measures[0].profile[0].module == "net.0"


def test_check_data_sees_unnormalised_inputs() -> None:
    torch.manual_seed(0)
    model = TanhMLP()
    plain = gradlint.check(model)
    assert "GL302" not in {f.rule for f in plain.findings}
    for data in (RAW_BATCH, raw_loader(), raw_loader):  # a batch, a DataLoader of (x, label), a function
        flagged = gradlint.check(model, data=data)
        assert "GL302" in {m.rule for f in flagged.findings for m in f.members()}, data
    assert "first batch" in (gradlint.check(model, data=raw_loader()).input_source or "")


def test_cli_data_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from gradlint.cli import main

    monkeypatch.chdir(ROOT)
    target = "fixtures/monitor/models.py:TanhMLP"
    runner = CliRunner()
    without = runner.invoke(main, ["check", target, "-q"])
    assert without.exit_code == 0, without.output
    raw = runner.invoke(main, ["check", target, "--data", "fixtures/monitor/models.py:RAW_LOADER", "--output-format", "json"])
    assert raw.exit_code == 1
    doc = json.loads(raw.output)
    assert "GL302" in {f["rule"] for f in doc["targets"][0]["findings"]}
    assert doc["targets"][0]["capture"]["input"].startswith("--data fixtures/monitor/models.py:RAW_LOADER")
    bad = runner.invoke(main, ["check", target, "--data", "fixtures/monitor/models.py:NOTHING"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "--data" in bad.output
