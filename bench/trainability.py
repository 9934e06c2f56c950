"""Does gradlint's severity say whether a model trains? Train each fixture model briefly and compare.

Every model is trained twice from the same init on a small task generated here (no downloads): plain SGD
(lr 0.05, momentum 0.9) and Adam (lr 1e-3), a few hundred steps each. A model *learns* when its held-out
accuracy ends above chance by a margin and its loss falls below a fraction of where it started; its first
layers *move* when the first weighted layer's weight changed by more than 1% of its norm. The outcome sets
the severity that gradlint should give (the one meaning of severity, README "Severity"):

    trains with both           -> none or info
    fails with plain SGD only  -> warning   (fails with Adam only: warning too, it needs a trick)
    fails even with Adam       -> error

gradlint's verdict is the highest severity of its findings (all rules, probe on, as `gradlint check` runs).

    python bench/trainability.py            # table, then `agreement=A trainable_warned=N models=M`
    python bench/trainability.py --quick    # MLP and CNN grids only
    python bench/trainability.py --fit      # also print the thresholds that best separate the outcomes

Tasks (by the model's input): float [B, 64] -> 8x8 digits drawn as noisy seven-segment glyphs (10 classes;
`--data sklearn` uses scikit-learn's bundled digits if installed); float [B, C, H, W] -> the same glyphs
as images (resized); int64 [B, T] -> which marker token (one of C) appears somewhere in a sequence of filler
tokens (per-sequence outputs), or each token's class under a fixed random table (per-step outputs [B, T, V]).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from torch import nn

from gradlint.inputs import resolve_inputs
from gradlint.load import load_target, restored_interpreter_state
from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.probe import first_tensor
from gradlint.registry import all_rules
from gradlint.types import Severity
from gradlint.updates import Updates

STEPS = 300
NOISE = 0.25  # pixel noise of the generated digits (strokes are 0.5-1.5)
BATCH = 64
MARGIN = 0.25  # held-out accuracy must beat chance by this much
LOSS_FRACTION = 0.7  # and the final training loss must be below this share of the initial one
MOVE = 1e-2  # the first layer "moves" when ||W_T - W_0|| / ||W_0|| exceeds this

MLP = "fixtures/cases/mlp.py:MLP"
CNN = "fixtures/cases/cnn.py:CNN"


def grid(quick: bool) -> list[str]:
    """The models the benchmark trains: corpus-style MLP and CNN grids, then the case fixtures and a small zoo."""
    targets: list[str] = []
    for act in ("relu", "tanh", "sigmoid", "gelu"):
        for init in ("default", "xavier", "kaiming", "small"):
            for depth in (4, 10, 20):
                targets.append(f"{MLP}(depth={depth}, width=64, act={act!r}, init={init!r})")
    targets += [f"{MLP}(depth={d}, width=64, act={a!r}, init='large')" for a, d in
                (("relu", 4), ("relu", 10), ("tanh", 4), ("tanh", 20))]
    targets += [f"{MLP}(depth={d}, width=64, act='relu', init='default')" for d in (6, 8, 14)]
    for act, init, depth in (("relu", "default", 4), ("relu", "default", 10), ("relu", "kaiming", 10),
                             ("tanh", "default", 10), ("sigmoid", "default", 6), ("relu", "small", 6),
                             ("gelu", "default", 6), ("relu", "large", 6)):
        targets.append(f"{CNN}(depth={depth}, act={act!r}, init={init!r})")
    if quick:
        return targets
    cases = "fixtures/cases"
    targets += [
        f"{cases}/failures.py:HeInitSigmoid(width=64)", f"{cases}/failures.py:DeepReLUXavier(width=64)",
        f"{cases}/failures.py:DeepBNReLUMLP(width=64)", f"{cases}/failures.py:ChaoticTanh(width=64)",
        f"{cases}/failures.py:LargeInitReLU(width=64)", f"{cases}/failures.py:DeadReLU(width=64)",
        f"{cases}/failures.py:SaturatedTanh(width=64)", f"{cases}/failures.py:DeepTanhMLP(width=64)",
        f"{cases}/failures.py:UnnormalizedResNet(width=64)", f"{cases}/failures.py:LongVanillaRNN",
        f"{cases}/failures.py:LSTMZeroForgetBias", f"{cases}/failures.py:UnscaledAttention(d_model=64, num_blocks=2)",
        f"{cases}/healthy.py:SigmoidInResidual(width=64)", f"{cases}/healthy.py:GLUMLP(width=64)",
        f"{cases}/healthy.py:SwishMLP(width=64)", f"{cases}/healthy.py:ShallowSigmoid(width=64)",
        f"{cases}/healthy.py:TanhLeCun(width=64)", f"{cases}/healthy.py:ReLUHe(width=64)",
        f"{cases}/healthy.py:ResidualMLPScaled(width=64)", f"{cases}/healthy.py:ReLUPositiveBias(width=64)",
        f"{cases}/healthy.py:TanhXavierShallow(width=64)", f"{cases}/healthy.py:LSTMForgetBias1",
        f"{cases}/healthy.py:ScaledAttention(d_model=64, num_blocks=2)",
        f"{cases}/explosion.py:UniformHundred", f"{cases}/explosion.py:DefaultTwoLayer",
        f"{cases}/explosion.py:LargeThenNorm",
        f"{cases}/lookalikes.py:SqrtScaledAttention", f"{cases}/lookalikes.py:SEResidualNet(channels=16, num_blocks=4)",
        f"{cases}/lookalikes.py:TinyHeadTransformer", f"{cases}/lookalikes.py:LayerScaleMLP",
        f"{cases}/lookalikes.py:ReLURNNLM",
        "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP(in_features=64)",
        "fixtures/zoo/lstm_lm.py:LSTMLanguageModel(vocab_size=64, num_layers=1, dropout=0.0)",
        "fixtures/zoo/gpt2.py:GPT2(vocab_size=64, block_size=32, n_embd=32, n_layer=2, n_head=2)",
    ]
    return targets


# -- data ------------------------------------------------------------------------------------------

# Seven-segment strokes on an 8x8 grid: (row0, col0, row1, col1) inclusive, per segment a..g.
_SEGMENTS = {"a": (0, 2, 0, 5), "b": (1, 6, 3, 6), "c": (4, 6, 6, 6), "d": (7, 2, 7, 5), "e": (4, 1, 6, 1),
             "f": (1, 1, 3, 1), "g": (3, 2, 4, 5)}
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def glyphs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy 8x8 digit images [n, 1, 8, 8] (random shift, stroke intensity, pixel noise) and labels."""
    templates = torch.zeros(10, 8, 8)
    for digit, segments in enumerate(_DIGITS):
        for s in segments:
            r0, c0, r1, c1 = _SEGMENTS[s]
            templates[digit, r0:r1 + 1, c0:c1 + 1] = 1.0
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = templates[labels] * (0.5 + torch.rand(n, 1, 1, generator=generator))
    shifts = torch.randint(-1, 2, (n, 2), generator=generator)
    images = torch.stack([torch.roll(img, (int(dy), int(dx)), (0, 1)) for img, (dy, dx) in zip(images, shifts)])
    images = images + NOISE * torch.randn(images.shape, generator=generator)
    return images.unsqueeze(1), labels


def digit_data(n: int, generator: torch.Generator, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    if source == "sklearn":
        try:
            from sklearn.datasets import load_digits  # optional: not a dependency of gradlint
        except ImportError:
            source = "glyphs"
        else:
            data = load_digits()
            x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
            y = torch.tensor(data.target)
            idx = torch.randint(0, len(y), (n,), generator=generator)
            return x[idx], y[idx]
    return glyphs(n, generator)


@dataclass
class Task:
    """Training and held-out data shaped for one model, and how its output is scored."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    per_step: bool = False


def _standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-3)
    return (train - mean) / std, (test - mean) / std


def make_task(model: nn.Module, example: torch.Tensor, source: str, seed: int = 0) -> Task:
    """The task that fits the model's input and output shapes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.eval()
        y = first_tensor(model(example[:2]))
        model.train()
    assert y is not None
    n_train, n_test = 2048, 512
    if example.is_floating_point():
        images, labels = digit_data(n_train + n_test, generator, source)
        if example.dim() == 2:
            x = images.flatten(1)
            if x.shape[1] != example.shape[1]:  # another width: a fixed random projection of the pixels
                x = x @ torch.randn(x.shape[1], example.shape[1], generator=generator) / 8.0
        else:
            channels, size = example.shape[1], tuple(example.shape[2:])
            x = F.interpolate(images, size=size, mode="bilinear", align_corners=False).repeat(1, channels, 1, 1)
        classes = y.shape[-1]
        labels = labels % classes
        x_train, x_test = _standardize(x[:n_train], x[n_train:])
        return Task(x_train, labels[:n_train], x_test, labels[n_train:], classes)
    vocab = int(example.max()) + 1 if example.numel() else 2
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            vocab = m.num_embeddings
            break
    length = example.shape[1]
    n = n_train + n_test
    if y.dim() == 3:  # per-step outputs: each token's class under a fixed random table (no positions needed)
        tokens = torch.randint(0, vocab, (n, length), generator=generator)
        table = torch.randint(0, y.shape[-1], (vocab,), generator=generator)
        target = table[tokens]
        return Task(tokens[:n_train], target[:n_train], tokens[n_train:], target[n_train:], y.shape[-1], True)
    classes = y.shape[-1]
    tokens = torch.randint(classes, vocab, (n, length), generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    where = torch.randint(0, length, (n,), generator=generator)
    tokens[torch.arange(n), where] = labels
    return Task(tokens[:n_train], labels[:n_train], tokens[n_train:], labels[n_train:], classes)


# -- training --------------------------------------------------------------------------------------


@dataclass
class Run:
    initial_loss: float
    final_loss: float
    accuracy: float
    first_move: float
    learned: bool


def _loss(out: Any, y: torch.Tensor, task: Task) -> torch.Tensor:
    logits = first_tensor(out)
    assert logits is not None
    if task.per_step:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return F.cross_entropy(logits, y)


def _accuracy(model: nn.Module, task: Task) -> float:
    with torch.no_grad():
        model.eval()
        logits = first_tensor(model(task.x_test))
        model.train()
    assert logits is not None
    if not torch.isfinite(logits).all():
        return 0.0
    if task.per_step:
        return float((logits.argmax(-1) == task.y_test).float().mean())
    return float((logits.argmax(-1) == task.y_test).float().mean())


def train(model: nn.Module, task: Task, optimizer: str, steps: int, seed: int = 0) -> Run:
    first = next(p for p in model.parameters() if p.dim() >= 2)
    start = first.detach().clone()
    opt: torch.optim.Optimizer = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
                                  else torch.optim.Adam(model.parameters(), lr=1e-3))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(0, len(task.y_train), (BATCH,), generator=generator)
        loss = _loss(model(task.x_train[idx]), task.y_train[idx], task)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    initial = sum(losses[:5]) / len(losses[:5])
    final = sum(losses[-20:]) / len(losses[-20:]) if all(math.isfinite(v) for v in losses[-20:]) else math.inf
    acc = _accuracy(model, task)
    move = float((first.detach() - start).norm() / start.norm().clamp_min(1e-30))
    chance = 1.0 / task.classes
    learned = math.isfinite(final) and acc >= chance + MARGIN and final < LOSS_FRACTION * initial
    return Run(initial, final, acc, move, learned)


# -- comparison ------------------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    sgd: Run
    adam: Run
    verdict: Severity | None
    codes: str
    features: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def expected(self) -> Severity | None:
        if self.sgd.learned and self.adam.learned:
            return None
        return Severity.ERROR if not self.adam.learned and not self.sgd.learned else Severity.WARNING

    @property
    def agrees(self) -> bool:
        return self.verdict == self.expected


def verdict(report: TargetReport) -> tuple[Severity | None, str]:
    """gradlint's highest severity above info, and the codes that fired (severity initial, +/- probe)."""
    serious = [f for f in report.findings if f.severity.rank >= Severity.WARNING.rank]
    top = max(serious, key=lambda f: f.severity.rank).severity if serious else None
    marks = {True: "+", False: "-", None: ""}
    codes = " ".join(sorted({f"{f.rule}:{f.severity.value[0].upper()}{marks[f.confirmed]}" for f in report.findings}))
    return top, codes


def features(report: TargetReport) -> dict[str, float]:
    """The numbers gradlint's verdicts are fitted on (gradlint.updates and GL205)."""
    out: dict[str, float] = {}
    est, graph = report.estimate, report.graph
    if est is None or graph is None:
        return out
    updates = Updates(graph, est)
    out["update_lag"] = updates.vanishing()[0]  # decades the slowest layer trails a later one
    out["update_lead"] = updates.exploding()[0]  # decades an early layer outruns a later one
    grads = [p.log10_grad_rms for p in est.profile if p.log10_grad_rms is not None]
    if grads:
        out["grad_min"] = min(grads)
    weights = [_weight_log10_grad(report, p.module, p.log10_update_ratio) for p in est.profile]
    known = [w for w in weights if w is not None]
    if known:
        out["weight_grad_min"] = min(known)  # log10 RMS(dL/dW) of the layer that gets the least
    gain = updates.signal_gain  # the forward signal at the last judged layer, as the verdicts read it
    if gain is not None:
        out["output_gain"] = gain[0]
    return out


def _weight_log10_grad(report: TargetReport, module: str, update: float | None) -> float | None:
    """log10 RMS(dL/dW) = the update ratio plus log10 RMS(W)."""
    graph, est = report.graph, report.estimate
    layer = graph.layer_named(module) if graph else None
    if update is None or layer is None or est is None:
        return None
    node = next((r for r in graph if r.param == layer.weight), None)
    q = est.stats[node.name].q if node is not None and node.name in est.stats else 0.0
    return update + 0.5 * math.log10(q) if q > 0 else None


def run_one(target: str, steps: int, source: str, options: CheckOptions, saved: dict[str, Any] | None = None) -> Row | str:
    start = time.perf_counter()
    torch.manual_seed(0)  # gradlint judges the very weights that are trained below
    report = check_target(target, options)
    if not report.ok:
        return f"{target}: gradlint error: {report.error.message[:200] if report.error else ''}"
    top, codes = verdict(report)
    if saved is not None:  # --replay: the training outcomes of an earlier run, gradlint's verdict afresh
        return Row(target, Run(**saved["sgd"]), Run(**saved["adam"]), top, codes, features(report), time.perf_counter() - start)
    runs = []
    for optimizer in ("sgd", "adam"):
        with restored_interpreter_state():
            torch.manual_seed(0)
            model = load_target(target).model
            resolved = resolve_inputs(model)
            example = (list(resolved.args) + list(resolved.kwargs.values()))[0]  # the one input, however passed
            torch.manual_seed(0)
            task = make_task(model, example, source)
            runs.append(train(model, task, optimizer, steps))
    return Row(target, runs[0], runs[1], top, codes, features(report), time.perf_counter() - start)


def _name(target: str) -> str:
    return target.removeprefix("fixtures/").replace(".py:", ":").replace("cases/", "").replace(", width=64", "")


def _outcome(run: Run) -> str:
    return f"{'yes' if run.learned else 'NO '} {run.accuracy:4.2f}"


# The verdict thresholds the fit searches: (feature, sign, gradlint name). A model's simulated verdict is the
# worst severity any of them gives, as gradlint.updates combines them.
FITTED = (("update_lag", 1.0, "VANISHING lag"), ("output_gain", -1.0, "VANISHING signal"),
          ("update_lead", 1.0, "EXPLODING lead"), ("output_gain", 1.0, "EXPLODING signal (and GL205)"))


def _simulated(row: Row, cuts: list[tuple[float, float]]) -> int:
    """0 / 1 / 2 (none, warning, error) from the row's features and (warning, error) cuts per FITTED entry."""
    worst = 0
    for (name, sign, _), (warn, err) in zip(FITTED, cuts):
        value = row.features.get(name)
        if value is not None:
            worst = max(worst, 2 if sign * value >= err else 1 if sign * value >= warn else 0)
    return worst


def _score(rows: list[Row], cuts: list[tuple[float, float]]) -> tuple[float, int]:
    """(agreement, trainable models warned) of the simulated verdicts."""
    rank = {None: 0, Severity.WARNING: 1, Severity.ERROR: 2}
    sims = [_simulated(r, cuts) for r in rows]
    agree = sum(s == rank[r.expected] for s, r in zip(sims, rows)) / max(len(rows), 1)
    return agree, sum(1 for s, r in zip(sims, rows) if s and r.expected is None)


def fit(rows: list[Row], start: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Coordinate search over the cut points (midpoints between observed values) that maximises agreement of
    the simulated verdict with the training outcome, never warning a model that trains with both optimizers
    when that can be avoided. Prints the thresholds gradlint.updates should hold."""
    cuts = list(start)

    def objective(c: list[tuple[float, float]]) -> float:
        agree, warned = _score(rows, c)
        return agree - 0.05 * warned

    for _ in range(4):
        for i, (name, sign, _) in enumerate(FITTED):
            values = sorted({sign * r.features[name] for r in rows if name in r.features})
            candidates = [(a + b) / 2 for a, b in itertools.pairwise(values)] + [math.inf]
            for which in (0, 1):
                best, best_value = objective(cuts), cuts[i][which]
                for t in candidates:
                    trial = list(cuts)
                    warn, err = trial[i]
                    trial[i] = (t, max(err, t)) if which == 0 else (min(warn, t), t)
                    value = objective(trial)
                    if value > best + 1e-9:
                        best, best_value = value, t
                warn, err = cuts[i]
                cuts[i] = (best_value, max(err, best_value)) if which == 0 else (min(warn, best_value), best_value)
    agree, warned = _score(rows, cuts)
    print(f"\nfitted thresholds (simulated verdict agreement {agree:.3f}, trainable warned {warned}):")
    for (name, sign, used), (warn, err) in zip(FITTED, cuts):
        side = ">=" if sign > 0 else "<="
        print(f"  {used:30s} {name} {side} {sign * warn:6.2f} -> warning, {side} {sign * err:6.2f} -> error")
    return cuts


def current_cuts() -> list[tuple[float, float]]:
    """The thresholds gradlint holds now, in FITTED order."""
    from gradlint.updates import EXPLODING, VANISHING

    return [(VANISHING["lag_warning"], VANISHING["lag_error"]), (VANISHING["signal_warning"], VANISHING["signal_error"]),
            (EXPLODING["lead_warning"], EXPLODING["lead_error"]), (EXPLODING["signal_warning"], EXPLODING["signal_error"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="MLP and CNN grids only")
    parser.add_argument("--fit", action="store_true", help="print the thresholds that best separate the outcomes")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--data", choices=("glyphs", "sklearn"), default="glyphs")
    parser.add_argument("--only", default="", help="train only targets containing this text")
    parser.add_argument("--json", default="", help="also write every row (outcomes, verdict, features) to this file")
    parser.add_argument("--replay", default="", help="reuse the training outcomes of an earlier --json file "
                        "(only gradlint runs again: for fitting thresholds; the README table comes from a full run)")
    opts = parser.parse_args()
    torch.set_num_threads(1)  # a shared machine: one core
    options = CheckOptions(rules=all_rules(), probe=True)
    rows: list[Row] = []
    failures: list[str] = []
    print(f"{'model':62s} {'SGD':8s} {'Adam':8s} {'move':>6s} {'expected':8s} {'gradlint':8s} {'':5s} codes")
    saved = {r["target"]: r for r in json.loads(Path(opts.replay).read_text())} if opts.replay else {}
    for target in grid(opts.quick):
        if (opts.only and opts.only not in target) or (opts.replay and target not in saved):
            continue
        row = run_one(target, opts.steps, opts.data, options, saved.get(target) if opts.replay else None)
        if isinstance(row, str):
            failures.append(row)
            print(row, flush=True)
            continue
        rows.append(row)
        mark = "ok" if row.agrees else ("ALARM" if row.expected is None else "miss" if row.verdict is None else "sev")
        move = min(row.sgd.first_move, row.adam.first_move)
        print(f"{_name(target):62s} {_outcome(row.sgd):8s} {_outcome(row.adam):8s} {move:6.0e} "
              f"{row.expected.value if row.expected else '-':8s} {row.verdict.value if row.verdict else '-':8s} {mark:5s} "
              f"{row.codes}", flush=True)
    if opts.fit:
        fit(rows, current_cuts())
    if opts.json:
        Path(opts.json).write_text(json.dumps([asdict(r) | {"expected": r.expected and r.expected.value,
                                                           "verdict": r.verdict and r.verdict.value} for r in rows], indent=1))
    agree = sum(r.agrees for r in rows)
    warned = sum(1 for r in rows if r.expected is None and r.verdict is not None)
    outcomes = {label: sum(1 for r in rows if r.expected == sev) for label, sev in
                (("train with both", None), ("fail SGD only", Severity.WARNING), ("fail Adam", Severity.ERROR))}
    print(f"\noutcomes: {', '.join(f'{n} {k}' for k, n in outcomes.items())}; {len(failures)} not run")
    print(f"agreement={agree / max(len(rows), 1):.3f} trainable_warned={warned} models={len(rows)}")


if __name__ == "__main__":
    main()
