"""GL403 post-norm-depth: a deep stack of x = LN(x + f(x)) sublayers, which needs warmup to train."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gradlint.graph import NodeKind, NodeRecord, Ref
from gradlint.rule import Rule, RuleContext, parent_module
from gradlint.types import Finding, Risk, Severity

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult


class PostNormDepth(Rule):
    code = "GL403"
    name = "post-norm-depth"
    severity = Severity.WARNING
    risk = Risk.OTHER
    summary = "A deep post-LN transformer (x = LayerNorm(x + f(x))) whose residual path is renormalized at every sublayer."
    why = (
        "In a post-LN block the LayerNorm after each residual add divides the identity path by "
        "sqrt(1 + var(f(x)) / var(x)). Stacked over many sublayers this attenuates the residual shortcut "
        "geometrically, so at initialization the weight gradients are largest near the output and the lower layers "
        "depend on gradients routed through the branches. With a normal learning rate from step 0 the top layers "
        "take outsized Adam steps and training diverges or stalls; post-LN stacks therefore need a learning-rate "
        "warmup, while pre-LN blocks keep a clean identity path and train without one."
    )
    example = """
def forward(self, x):
    x = self.norm1(x + self.attn(x))   # post-LN, repeated over 24 layers
    return self.norm2(x + self.ffn(x))
"""
    fix = """# pre-LN: normalize the branch input, keep the residual stream untouched, add a final norm
def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.ffn(self.norm2(x))
# or keep post-LN and warm the learning rate up linearly over the first few thousand steps:
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 4000))"""
    references = (
        "Xiong et al. 2020, On layer normalization in the transformer architecture",
        "Liu et al. 2020, Understanding the difficulty of training transformers",
        "Wang et al. 2019, Learning deep transformer models for machine translation",
    )
    probe_criterion = (
        "Confirmed when the measured weight-gradient RMS of the last post-LN block exceeds that of the first "
        "(same layer names within the block) by at least `min_probe_decades` on average; refuted when it is "
        "smaller by that much; otherwise None."
    )
    # min_layers: post-LN sublayers on the longest path for any finding; warn_layers: sublayers for a warning
    # (36 = 18 attention+FFN layers, the depth at which Liu et al. 2020 saw post-LN diverge); min_decades: the
    # estimated attenuation of the identity path across them, sum of 0.5*log10(1 + var(branch)/var(skip)), for a
    # warning. Shallower or small-branch stacks (BERT-base: 24 sublayers, 0.43 decades) get an info reminder.
    options = {"min_layers": 12, "warn_layers": 36, "min_decades": 0.2, "min_probe_decades": 0.1}
    option_docs = {
        "min_layers": "the fewest post-LN sublayers on the residual path for a finding",
        "warn_layers": "with this many sublayers or more (and min_decades of shrinkage) the finding is a warning, otherwise info",
        "min_decades": "the estimated shrinkage of the residual path, in decades, that makes a deep stack a warning",
        "min_probe_decades": "the probe confirms (refutes) when the last blocks' weight gradients are this many decades above (below) the first's",
    }
    VALID = ("fixtures/cases/healthy.py:PreNormTransformer", "fixtures/zoo/bert.py:BERT", "fixtures/zoo/gpt2.py:GPT2",
             "fixtures/zoo/bert.py:BERT(num_layers=12)")
    INVALID = ("fixtures/cases/failures.py:PostNormDeepTransformer",)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from gradlint.rule import BATCH_NORM_OPS  # the estimator's op table: loaded with torch, on first use

        graph, est = ctx.graph, ctx.estimate
        ratios: dict[str, float] = {}
        for node in graph.ops():
            # any normalization (aten or hand-written RMSNorm/LayerNorm) but batch norm, GL202's business
            if node.name in est.normalizers and node.op not in BATCH_NORM_OPS and node.name in graph.live:
                ratio = _branch_ratio(ctx, node)
                if ratio is not None:
                    ratios[node.name] = ratio
        if len(ratios) < self.opts["min_layers"]:
            return
        _count, path = graph.longest_path({n: 1.0 for n in ratios})
        norms = [n for n in path if n in ratios]
        if len(norms) < self.opts["min_layers"]:
            return
        decades = sum(0.5 * math.log10(1.0 + ratios[n]) for n in norms)
        first, last = graph[norms[0]], graph[norms[-1]]
        blocks = parent_module(first.module), parent_module(last.module)
        evidence = {"post_ln_sublayers": len(norms), "identity_path_decades": round(-decades, 3),
                    "mean_branch_ratio": round(sum(ratios[n] for n in norms) / len(norms), 4),
                    "first_block": blocks[0], "last_block": blocks[1]}
        if decades >= self.opts["min_decades"] and len(norms) >= self.opts["warn_layers"]:
            message = (
                f"{len(norms)} post-LN sublayers (x = LayerNorm(x + f(x))) from {first.module or '<root>'} to "
                f"{last.module or '<root>'}: each LayerNorm shrinks the residual path, by an estimated 10^-{decades:.1f} "
                f"over the stack, so at init the gradients are larger near the output than at the first blocks. "
                f"Deep post-LN transformers diverge without learning-rate warmup: switch to pre-LN "
                f"(x = x + f(LN(x)), plus a final LayerNorm) or warm the learning rate up."
            )
            yield self.finding(ctx, first.module, message, node=first, evidence=evidence, fix=self.fix)
        else:
            message = (
                f"{len(norms)} post-LN sublayers (x = LayerNorm(x + f(x))) from {first.module or '<root>'} to "
                f"{last.module or '<root>'}; the LayerNorms shrink the residual path by an estimated 10^-{decades:.2f} "
                f"over the stack (mean var(f(x))/var(x) = {evidence['mean_branch_ratio']:.3f}). Post-LN stacks of "
                f"this depth train with learning-rate warmup (as BERT does); without it, or deeper, prefer pre-LN."
            )
            yield self.finding(ctx, first.module, message, node=first, evidence=evidence, fix=self.fix,
                               severity=Severity.INFO)

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        first, last = finding.evidence.get("first_block"), finding.evidence.get("last_block")
        layers = probe.layers
        if not first or not last or first == last:
            return None
        diffs = []
        for name, measure in layers.items():
            if not name.startswith(first + "."):
                continue
            twin = layers.get(last + name[len(first):])
            if twin is not None and measure.weight_grad_rms and twin.weight_grad_rms:
                diffs.append(math.log10(twin.weight_grad_rms / measure.weight_grad_rms))
        if not diffs:
            return None
        mean = sum(diffs) / len(diffs)
        finding.evidence["measured_last_over_first_decades"] = round(mean, 3)
        if mean >= self.opts["min_probe_decades"]:
            return True
        return False if mean <= -self.opts["min_probe_decades"] else None


def _branch_ratio(ctx: RuleContext, norm: NodeRecord) -> float | None:
    """var(branch) / var(skip) when `norm` normalizes a residual sum x + f(x), else None."""
    import networkx as nx

    graph, stats = ctx.graph, ctx.estimate.stats
    x = next(iter(ctx.estimate.notes[norm.name]["normalizes"]), None)  # the tensor it divides by its scale
    if x is None or graph[x].op != "add":
        return None
    add = graph[x]
    # a user that is not part of the norm (a hand-written norm also reads the sum for its statistic)
    if any(user.name != norm.name and not nx.has_path(graph.nx, user.name, norm.name) for user in graph.users(x)):
        return None  # the sum is also the next residual stream: pre-LN (x = x + f(LN(x))), not post-LN
    refs = [a for a in add.args[:2] if isinstance(a, Ref) and graph[a.name].kind is not NodeKind.PARAM]
    if len(refs) != 2:
        return None
    a, b = refs[0].name, refs[1].name
    if _ancestor(ctx, b, a):
        skip, branch = b, a
    elif _ancestor(ctx, a, b):
        skip, branch = a, b
    else:
        return None
    q_skip, q_branch = stats.get(skip), stats.get(branch)
    if q_skip is None or q_branch is None or not q_skip.q > 0 or not math.isfinite(q_branch.q):
        return None
    return q_branch.q / q_skip.q


def _ancestor(ctx: RuleContext, source: str, target: str) -> bool:
    """Whether `target` is computed from `source` (so `source` is the skip of a residual add)."""
    return ctx.graph.reachable_avoiding(source, target, set())
