"""GL402 unscaled-attention: q @ k^T logits reach the softmax without 1/sqrt(d), so it saturates at init."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gradlint.graph import NodeKind, NodeRecord, Ref
from gradlint.rule import Rule, RuleContext
from gradlint.types import Family, Finding, Risk, Severity
from gradlint.updates import VANISHING, Updates, severity_for

if TYPE_CHECKING:
    from gradlint.probe import ProbeResult

# Op families between the score product and the softmax that neither rescale nor end the logit path (views,
# casts, masks, biases, dropout).
LOGIT_PATH = frozenset({Family.STRUCTURAL, Family.DROPOUT, Family.SUM, Family.SELECT})
# Between a projection and the score product, views and selections keep the operand an activation.
OPERAND_PATH = frozenset({Family.STRUCTURAL})
# What the softmax's output goes through before it weights the values.
PROBABILITY_PATH = frozenset({Family.STRUCTURAL, Family.DROPOUT})


class UnscaledAttention(Rule):
    code = "GL402"
    name = "unscaled-attention"
    severity = Severity.INFO
    risk = Risk.VANISHING
    summary = "Attention logits q @ k^T reach the softmax without the 1/sqrt(d) scaling and saturate it."
    escalation = ("warning when the query and key projections' relative update trails the fastest layer's by "
                  "10^2.55 (where plain SGD stops training a layer, fitted on bench/trainability.py), error at "
                  "10^3.9 (Adam too); info while they still train, which is what the trainability benchmark "
                  "measured for unscaled attention at init: the saturated rows pass nothing, the others pass a "
                  "sqrt(d)-amplified gradient, and q and k end up with more update than v, not less")
    why = (
        "The dot product of two d-dimensional vectors with unit-variance entries has standard deviation sqrt(d). "
        "Without dividing by sqrt(d) the attention logits span tens of units, the softmax puts nearly all its "
        "mass on one key, and its Jacobian p_i(delta_ij - p_j) is close to zero: the query and key projections "
        "receive almost no gradient and attention collapses to a hard, untrainable lookup (entropy collapse)."
    )
    example = """
scores = q @ k.transpose(-2, -1)             # std ~ sqrt(d_head)
attn = torch.softmax(scores, dim=-1) @ v
"""
    fix = (
        "Scale the scores: `scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])`, or use "
        "`F.scaled_dot_product_attention(q, k, v)` with its default scale; if you leave the scaling out on "
        "purpose (as T5 does), shrink the query/key init by the same factor (`std = d_model ** -0.5` on q)."
    )
    references = (
        "Vaswani et al. 2017, Attention is all you need, section 3.2.1",
        "Zhai et al. 2023, Stabilizing transformer training by preventing attention entropy collapse",
    )
    probe_criterion = (
        "The measured relative update of the query and key projections sets the final severity with the same "
        "thresholds; confirmed when it trails the fastest layer's by at least the warning threshold, refuted "
        "(with the measured lag) when a predicted warning or error does not; otherwise the probe cannot tell "
        "(None): it does not measure the logits themselves."
    )
    # max_logit_std: predicted logit std above which softmax is near one-hot; max_scale_ratio: an explicit SDPA
    # `scale` this many times 1/sqrt(d) counts as missing the scaling; lag_warning / lag_error: decades by which
    # q and k's update may trail the fastest layer's (gradlint.updates.VANISHING, fitted).
    options = {"max_logit_std": 3.0, "max_scale_ratio": 2.0,
               "lag_warning": VANISHING["lag_warning"], "lag_error": VANISHING["lag_error"]}
    option_docs = {
        "max_logit_std": "attention logits with a predicted std above this saturate the softmax",
        "max_scale_ratio": "an explicit `scale` this many times the default 1/sqrt(d) or more is flagged (with logits above max_logit_std)",
        "lag_warning": "decades the query and key projections' update may trail the fastest layer's before a warning",
        "lag_error": "decades the query and key projections' update may trail the fastest layer's before an error",
    }
    VALID = ("fixtures/cases/healthy.py:ScaledAttention", "fixtures/zoo/gpt2.py:GPT2", "fixtures/zoo/vit.py:ViT",
             "fixtures/zoo/bert.py:BERT", "fixtures/zoo/t5.py:T5")
    INVALID = ("fixtures/cases/failures.py:UnscaledAttention", "fixtures/rules/attention_cases.py:SDPAExplicitScale",
               "fixtures/rules/attention_cases.py:UnderScaledAttention",
               "fixtures/rules/attention_cases.py:SaturatedAttention")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        self.ctx = ctx  # confirm() judges the measured updates against the same graph
        graph = ctx.graph
        by_line: dict[object, list[Finding]] = {}
        for node in graph.ops():
            if node.name not in graph.live:
                continue
            family = graph.family(node)
            if family is Family.ATTENTION:
                finding = self._check_sdpa(ctx, node)
            elif family is Family.SOFTMAX:
                finding = self._check_softmax(ctx, node)
            else:
                continue
            if finding is not None:
                by_line.setdefault((finding.path, finding.line), []).append(finding)
        for group in by_line.values():  # one finding per source line, not one per repeated block
            first = group[0]
            if len(group) > 1:
                first.message += f" The same holds in {len(group) - 1} more attention layer(s) up to {group[-1].module}."
                first.evidence["modules"] = [f.module for f in group]
                first.evidence["max_logit_std"] = max(f.evidence["logit_std"] for f in group)
            yield first

    def _check_softmax(self, ctx: RuleContext, node: NodeRecord) -> Finding | None:
        graph, est = ctx.graph, ctx.estimate
        product, scaled = _score_product(ctx, node.name)
        if product is None:
            return None
        operands = [_operand_source(ctx, name) for name in _factors(ctx, product)]
        sources = [src for src, _ in operands if src is not None]
        if len(operands) != 2 or len(sources) != 2:
            return None  # a weight operand: a classifier, not attention
        scaled = scaled or any(rescaled for _, rescaled in operands)
        notes = est.notes.get(node.name, {})
        logit_std = notes.get("logit_std")
        if logit_std is None or not math.isfinite(logit_std):  # a -inf mask: judge the unmasked scores
            stat = est.stats.get(product.name)
            logit_std = math.sqrt(stat.var) if stat is not None and math.isfinite(stat.var) else None
        if logit_std is None or logit_std <= self.opts["max_logit_std"]:
            return None
        d = (graph[_factors(ctx, product)[0]].shape or (1,))[-1]
        keys = notes.get("keys") or (node.shape or (1,))[-1]
        q_a, q_b = (est.stats[src].q for src in sources)  # the projections' outputs, before any scaling
        scaled_std = math.sqrt(q_a * q_b)  # the logit std with exactly 1/sqrt(d)
        where = node.module or "<root>"
        how = "with too little scaling" if scaled else "without 1/sqrt(d) scaling"
        layers = _qkv_layers(ctx, product, node)
        qk = [layers[f"{x}_layer"] for x in "qk" if f"{x}_layer" in layers] or _qk_layers(ctx, _factors(ctx, product))
        severity, lag, said = self._verdict(ctx, qk)
        message = (
            f"Attention in {where} feeds q @ k^T to the softmax {how} (d = {d}): the predicted "
            f"logit std is {logit_std:.1f} (it would be {scaled_std:.2f} scaled), so over {keys} keys many softmax "
            f"rows start near one-hot. {said} Divide the scores by math.sqrt({d}) or use "
            f"F.scaled_dot_product_attention."
        )
        return _at_op(node, self.finding(ctx, node.module, message, node=node, fix=self.fix, severity=severity,
                                         evidence={"logit_std": round(logit_std, 3), "scaled_logit_std": round(scaled_std, 3),
                                                   "head_dim": d, "keys": keys, "qk_layers": qk, "qk_update_lag": lag,
                                                   **layers}))

    def _check_sdpa(self, ctx: RuleContext, node: NodeRecord) -> Finding | None:
        notes = ctx.estimate.notes.get(node.name, {})
        scale = notes.get("scale")  # the estimator notes an explicit `scale` argument
        if not isinstance(scale, (int, float)) or not isinstance(node.arg(0), Ref):
            return None
        d = (ctx.graph[node.arg(0).name].shape or (1,))[-1]
        ratio = float(scale) * math.sqrt(d)
        logit_std = notes.get("logit_std")
        if ratio < self.opts["max_scale_ratio"] or logit_std is None or not logit_std > self.opts["max_logit_std"]:
            return None
        where = node.module or "<root>"
        qk = _qk_layers(ctx, tuple(a.name for a in node.args[:2] if isinstance(a, Ref)))
        severity, lag, said = self._verdict(ctx, qk)
        message = (
            f"scaled_dot_product_attention in {where} is called with scale={scale:g}, {ratio:.1f}x the default "
            f"1/sqrt({d}): the predicted logit std is {logit_std:.1f} (it would be {logit_std / ratio:.2f} with the "
            f"default), so many softmax rows start near one-hot. {said} Drop the `scale` argument."
        )
        return _at_op(node, self.finding(ctx, node.module, message, node=node, fix=self.fix, severity=severity,
                                         evidence={"logit_std": round(logit_std, 3),
                                                   "scaled_logit_std": round(logit_std / ratio, 3), "head_dim": d,
                                                   "scale": scale, "qk_layers": qk, "qk_update_lag": lag}))

    def _verdict(self, ctx: RuleContext, qk: list[str], probe: ProbeResult | None = None,
                 ) -> tuple[Severity, float | None, str]:
        """Severity from how far q and k's relative update trails the fastest layer's (predicted, or measured
        by `probe`), with the sentence that says so. Saturated rows are the mechanism; whether q and k still
        learn is the promise, and the trainability benchmark shows they often do."""
        lag = _qk_lag(Updates(ctx.graph, ctx.estimate, probe), qk)
        severity = severity_for(lag, self.opts["lag_warning"], self.opts["lag_error"])
        how = "measured" if probe is not None else "predicted"
        if lag is None:
            said = "How much that costs the query and key projections cannot be told from their layers."
        elif severity is Severity.INFO:
            behind = f"trails the fastest layer's by only 10^{lag:.1f}" if lag > 0 else "trails no other layer's"
            said = (f"The query and key projections' {how} relative update {behind}, so they still train (info); "
                    f"unscaled logits grow with training and can collapse attention entropy later.")
        else:
            outcome = "plain SGD will not train them" if severity is Severity.WARNING else "neither SGD nor Adam will"
            said = (f"The query and key projections' {how} relative update trails the fastest layer's by "
                    f"10^{lag:.1f}: {outcome} ({severity.value}).")
        return severity, None if lag is None else round(lag, 3), said

    def confirm(self, finding: Finding, probe: ProbeResult) -> bool | None:
        qk = finding.evidence.get("qk_layers") or []
        ctx = getattr(self, "ctx", None)
        lag = _qk_lag(Updates(ctx.graph, ctx.estimate, probe), qk) if ctx is not None and qk else None
        if lag is None:
            return None
        finding.evidence["measured_qk_update_lag"] = round(lag, 3)
        measured = severity_for(lag, self.opts["lag_warning"], self.opts["lag_error"])
        if measured is Severity.INFO:
            if finding.severity is Severity.INFO:
                return None  # nothing crossed a threshold either way: the prediction stands
            finding.message += (f" Measured: the query and key projections' relative update trails the fastest "
                                f"layer's by only 10^{lag:.1f}.")
            return False
        finding.severity = measured
        finding.message += (f" Measured: the query and key projections' relative update trails the fastest "
                            f"layer's by 10^{lag:.1f} ({measured.value}).")
        return True


def _qk_layers(ctx: RuleContext, operands: tuple[str, ...]) -> list[str]:
    """The weighted layers producing the score operands (one fused layer for both, or two)."""
    found: list[str] = []
    for name in operands:
        src, _ = _operand_source(ctx, name)
        layer = ctx.graph.layer_at(src) if src is not None else None
        if layer is not None and layer.module not in found:
            found.append(layer.module)
    return found


def _qk_lag(updates: Updates, qk: list[str]) -> float | None:
    """Decades by which the faster of q and k's relative update trails the fastest judged layer's (negative
    when they lead it); None when a projection or the model has no update value."""
    values = [updates.values.get(m) for m in qk]
    fastest = updates.fastest
    if not qk or fastest is None or any(v is None for v in values):
        return None
    return fastest[1] - max(v for v in values if v is not None)


def _at_op(node: NodeRecord, finding: Finding) -> Finding:
    """Point at the line computing the scores, where the fix goes, rather than where the module was built."""
    if node.location is not None:
        finding.path, finding.line = node.location.path, node.location.line
    return finding


def _is_constant(ctx: RuleContext, value: object) -> bool:
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, Ref):
        node = ctx.graph[value.name]
        return node.kind is not NodeKind.OP and node.numel <= 1
    return False


def _is_scale(ctx: RuleContext, node: NodeRecord) -> bool:
    return ctx.graph.family(node) is Family.PRODUCT and any(_is_constant(ctx, a) for a in node.args[:2])


def _factors(ctx: RuleContext, product: NodeRecord) -> tuple[str, ...]:
    """The two tensors a product multiplies, as the estimator noted them (an addmm's bias is not one)."""
    return tuple(ctx.estimate.notes.get(product.name, {}).get("operands", ()))


def _score_product(ctx: RuleContext, start: str) -> tuple[NodeRecord | None, bool]:
    """The activation-by-activation product whose result reaches `start`, and whether a constant rescaled
    it on the way (that only changes the message: the predicted logit spread decides)."""
    graph = ctx.graph
    stack, seen, scaled = [graph[start].arg(0)], set(), False
    while stack:
        ref = stack.pop()
        if not isinstance(ref, Ref) or ref.name in seen:
            continue
        seen.add(ref.name)
        node = graph[ref.name]
        if node.kind is not NodeKind.OP:
            continue
        if ctx.graph.family(node) is Family.MATMUL and len(_factors(ctx, node)) == 2:
            return node, scaled
        if _is_scale(ctx, node):
            scaled = True
            stack.extend(a for a in node.args if isinstance(a, Ref) and not _is_constant(ctx, a))
        elif ctx.graph.family(node) in LOGIT_PATH:
            stack.extend(a for a in node.args if isinstance(a, Ref))
    return None, scaled


def _operand_source(ctx: RuleContext, name: str) -> tuple[str | None, bool]:
    """The op producing a score operand (None for a weight) and whether it was rescaled on the way."""
    graph, scaled = ctx.graph, False
    node = graph[name]
    while node.kind is NodeKind.OP and (graph.family(node) in OPERAND_PATH or _is_scale(ctx, node)):
        scaled = scaled or _is_scale(ctx, node)
        refs = [a for a in node.args if isinstance(a, Ref) and graph[a.name].kind is not NodeKind.CONSTANT
                and not _is_constant(ctx, a)]
        if not refs:
            break
        node = graph[refs[0].name]
    return (node.name if node.kind in (NodeKind.OP, NodeKind.INPUT) else None), scaled


def _qkv_layers(ctx: RuleContext, product: NodeRecord, softmax: NodeRecord) -> dict[str, str]:
    """The weighted layers producing q, k and v when they are separate layers (the probe compares them)."""
    graph = ctx.graph
    found: dict[str, str] = {}
    for key, name in zip("qk", _factors(ctx, product)):
        src, _ = _operand_source(ctx, name)
        if src is not None and (layer := graph.layer_at(src)) is not None:
            found[f"{key}_layer"] = layer.module
    for user in _users_through(ctx, softmax.name):
        factors = _factors(ctx, user)
        if graph.family(user) is Family.MATMUL and len(factors) == 2:
            src, _ = _operand_source(ctx, factors[-1])
            if src is not None and (layer := graph.layer_at(src)) is not None:
                found["v_layer"] = layer.module
    return found if len(set(found.values())) == 3 else {}


def _users_through(ctx: RuleContext, name: str) -> list[NodeRecord]:
    """Users of `name`, looking through dropout and dtype casts."""
    out = []
    for user in ctx.graph.users(name):
        if ctx.graph.family(user) in PROBABILITY_PATH:
            out.extend(_users_through(ctx, user.name))
        else:
            out.append(user)
    return out
