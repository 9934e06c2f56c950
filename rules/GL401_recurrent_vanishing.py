"""GL401 recurrent-vanishing: the gradient from the end of a sequence dies out before it reaches its start."""

from __future__ import annotations

import math
from collections.abc import Iterator

from gradlint.rule import Rule, RuleContext
from gradlint.types import Family, Finding, Risk, Severity

VANILLA_FIX = (
    "Replace the plain RNN with a gated one (`nn.LSTM(input_size, hidden, batch_first=True)` or `nn.GRU(...)`, "
    "with the LSTM forget-gate bias set to 1), shorten the sequences it must carry information across (truncated "
    "BPTT, attention over the outputs), and clip gradients "
    "(`torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`)."
)
LSTM_FIX = """# PyTorch gate order is (input, forget, cell, output): set the forget-gate bias to 1.
hidden = lstm.hidden_size
with torch.no_grad():
    for name, p in lstm.named_parameters():
        if name.startswith('bias_ih'):
            p[hidden:2 * hidden].fill_(1.0)
        elif name.startswith('bias_hh'):
            p[hidden:2 * hidden].fill_(0.0)
# and clip gradients in the training loop:
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"""


class RecurrentVanishing(Rule):
    code = "GL401"
    name = "recurrent-vanishing"
    severity = Severity.WARNING
    risk = Risk.VANISHING
    summary = "A recurrent layer whose gradient through time shrinks by orders of magnitude over the sequence."
    why = (
        "Backpropagation through time multiplies the gradient by the recurrent Jacobian once per step. When its "
        "mean-square gain per step is below 1 the signal decays geometrically with the distance from the loss: "
        "tokens far from the end receive no usable gradient and the network cannot learn long-range dependencies. "
        "Plain tanh/ReLU RNNs with standard init decay at every step; an LSTM protects its cell state only if the "
        "forget gate starts open, which PyTorch's zero-mean biases do not do (sigmoid(0) = 0.5 halves the cell "
        "gradient per step). It matters when the model reads only the last state (or a few steps): a model with a "
        "loss at every step (per-step logits of a language model) gets each step's gradient from its own output, "
        "so the rule judges that from the graph and stays silent."
    )
    example = """
self.rnn = nn.RNN(32, 64, batch_first=True)     # plain tanh RNN over 32+ steps
# or
self.lstm = nn.LSTM(32, 64, batch_first=True)   # default biases: forget gate ~ 0.5
nn.init.zeros_(self.lstm.bias_ih_l0)
"""
    fix = LSTM_FIX
    references = (
        "Bengio, Simard & Frasconi 1994, Learning long-term dependencies with gradient descent is difficult",
        "Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural networks",
        "Gers, Schmidhuber & Cummins 2000, Learning to forget: continual prediction with LSTM",
        "Jozefowicz, Zaremba & Sutskever 2015, An empirical exploration of recurrent network architectures",
    )
    probe_criterion = (
        "None: the probe measures gradients at layer outputs, not at individual time steps inside a fused "
        "recurrent op, so it cannot see the decay through time."
    )
    # min_decades: RMS decades lost over the whole sequence; max_forget: an LSTM forget gate mean at or below
    # this counts as closed (bias 0 gives 0.5, the recommended bias 1 gives ~0.73).
    options = {"min_decades": 3.0, "max_forget": 0.6}
    option_docs = {
        "min_decades": "how many decades the gradient through time must shrink over the sequence",
        "max_forget": "an LSTM whose forget gate opens to at most this on average at init is flagged (it forgets quickly)",
    }
    VALID = ("fixtures/cases/healthy.py:LSTMForgetBias1", "fixtures/zoo/lstm_lm.py:LSTMLanguageModel",
             "fixtures/rules/recurrent_cases.py:ShortVanillaRNN", "fixtures/cases/lookalikes.py:ReLURNNLM")
    INVALID = ("fixtures/cases/failures.py:LongVanillaRNN", "fixtures/cases/failures.py:LSTMZeroForgetBias")

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph, est = ctx.graph, ctx.estimate
        for node in graph.ops():
            if graph.family(node) is not Family.RECURRENT or node.name not in graph.live:
                continue
            notes = est.notes.get(node.name, {})
            decades, steps, gain = notes.get("log10_through_time"), notes.get("steps"), notes.get("gain_per_step")
            if decades is None or steps is None or gain is None or not decades > -math.inf:
                continue
            if decades > -self.opts["min_decades"]:
                continue
            if _loss_at_every_step(ctx, node.name, steps):
                continue  # every step's output reaches the loss directly: its gradient need not travel back in time
            evidence = {"steps": steps, "gain_per_step": round(gain, 4), "log10_through_time": round(decades, 2)}
            where = node.module or "<root>"
            cell = notes.get("nonlinearity")  # the estimator notes it for an ungated RNN
            if cell is not None:
                message = (
                    f"{where} is a plain {cell} RNN over {steps} steps: each step back in time keeps "
                    f"an estimated {gain:.2f} of the mean-square gradient, so the first step receives 10^{decades:.1f} "
                    f"of the gradient of the last. It will not learn dependencies more than a few steps long; use "
                    f"nn.LSTM (forget-gate bias 1) or nn.GRU and clip gradients."
                )
                # bench/trainability.py: a plain RNN read at its last step fails with Adam too (error), an LSTM
                # whose forget gate starts closed fails with plain SGD only (warning).
                yield self.finding(ctx, node.module, message, node=node, fix=VANILLA_FIX, evidence=evidence,
                                   severity=Severity.ERROR)
                continue
            forget = notes.get("forget_gate_mean")
            if forget is None or forget > self.opts["max_forget"]:
                continue
            evidence["forget_gate_mean"] = round(forget, 3)
            message = (
                f"{where} is an LSTM over {steps} steps whose forget gate starts at {forget:.2f} (bias ~0): the cell "
                f"gradient shrinks at every step back in time and the first step receives an estimated "
                f"10^{decades:.1f} of the gradient of the last. Set the forget-gate bias to 1 (bias_ih[hidden:2*hidden]) "
                f"as Jozefowicz et al. recommend, and clip gradients."
            )
            yield self.finding(ctx, node.module, message, node=node, fix=LSTM_FIX, evidence=evidence)




def _loss_at_every_step(ctx: RuleContext, rnn: str, steps: int) -> bool:
    """The sequence output reaches the model's output without an indexing op that keeps only a few steps
    (per-step logits, pooling over time): then each step's gradient arrives from its own output, and the decay
    through time costs only long-range credit, not training. A model that reads `out[:, -1]` or the final
    hidden state depends on the gradient travelling back through every step."""
    graph = ctx.graph
    sequence = [u.name for u in graph.users(rnn) if u.op == "getitem" and u.args[1:2] == (0,)]
    stack, seen = list(sequence), set(sequence)
    while stack:
        name = stack.pop()
        if name == graph.output:
            return True
        for user in graph.users(name):
            node = graph[name]
            if user.name in seen:
                continue
            if (graph.family(user) is Family.STRUCTURAL and node.numel
                    and user.numel * max(steps, 1) <= 2 * node.numel):
                continue  # a selection that keeps at most two of the steps: a last-state readout
            seen.add(user.name)
            stack.append(user.name)
    return False

