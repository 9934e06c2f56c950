"""`gradlint.check(model)` on an instance points its findings where the layers were built (the `nn.Sigmoid()`
in the user's class, the notebook cell's `nn.Sequential(...)` line), not at the forward line: as a user runs
it, from a script, from IPython's shell and from a real notebook kernel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import gradlint
from gradlint.load import load_target, restored_interpreter_state
from gradlint.sites import construction_record
from gradlint.sources import import_file
from gradlint.state import preserved

ROOT = Path(__file__).resolve().parent.parent

USER_FILE = '''\
from torch import nn


def tanh_block(width):
    return nn.Sequential(nn.Linear(width, width), nn.Tanh())


class DeepSigmoid(nn.Module):
    def __init__(self, depth=12, width=32):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers.append(nn.Linear(width, width))
            layers.append(nn.Sigmoid())   # line 14: the chain's activations
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)   # line 16

    def forward(self, x):
        return self.head(self.body(x))    # line 19: where findings pointed before


class Blocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([tanh_block(32) for _ in range(3)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x
'''


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_instance_from_a_user_file_points_at_the_construction_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "usernet.py").write_text(USER_FILE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    module = import_file("gradlint_test_usernet", str(tmp_path / "usernet.py"))
    try:
        model = module.DeepSigmoid()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        module_init = nn.Module.__init__
        report = gradlint.check(model, "float32[8,32]", probe=False)
        assert report.error is None, report.error
        chain = next(f for f in report.findings if f.rule == "GL101")
        assert (chain.path, chain.line) == ("usernet.py", 14)  # nn.Sigmoid(), not the forward line 19
        # nothing of the user's changed and nothing is left patched
        assert nn.Module.__init__ is module_init
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
        record = construction_record(model, None)
        assert str(record.site_of(model.head)) == "usernet.py:16"
        assert str(record.site_of(model.body)) == "usernet.py:15"
        blocks = module.Blocks()
        record = construction_record(blocks, None)
        assert str(record.site_of(blocks.blocks)) == "usernet.py:25"
        # tanh_block(32) built the block: its nn.Sequential(...) line, where the recorder would see it built
        assert str(record.site_of(blocks.blocks[2])) == "usernet.py:5"
        assert str(record.site_of(blocks.blocks[2][1])) == "usernet.py:5"
    finally:
        sys.modules.pop("gradlint_test_usernet", None)


def test_static_sites_agree_with_the_recorder_on_fixture_models() -> None:
    """Where the source determines a site it is the one the recorder sees building the file target, never
    another line (bench/sites.py measures this over every fixture class)."""
    compared = 0
    for target in ("fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP", "fixtures/zoo/densenet.py:DenseNet",
                   "fixtures/zoo/vit.py:ViT", "fixtures/suppress/comments.py:Unsilenced", "fixtures/zoo/resnet.py:ResNet"):
        with restored_interpreter_state(), preserved():
            loaded = load_target(str(ROOT / target))
            static = construction_record(loaded.model, None)
            for name, module in loaded.model.named_modules():
                read, recorded = static.site_of(module), loaded.record.site_of(module)
                if name and read is not None:
                    assert recorded is not None and (read.path, read.line) == (recorded.path, recorded.line), (target, name)
                    compared += 1
    assert compared > 200


def test_sequential_built_in_a_script(tmp_path: Path) -> None:
    script = textwrap.dedent("""\
        import json
        import gradlint
        from torch import nn

        def main():
            net = nn.Sequential(
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 32), nn.Sigmoid(),
                nn.Linear(32, 1),
            )
            report = gradlint.check(net, "float32[8,32]", probe=False)
            print(json.dumps([[f.rule, f.module, f.path, f.line] for f in report.findings]))

        main()
        """)
    (tmp_path / "train.py").write_text(script, encoding="utf-8")
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout.strip().splitlines()[-1])
    _rule, module, path, line = next(f for f in findings if f[0] == "GL101")
    assert path == "train.py"
    assert line == _line(script, "nn.Linear(32, 32), nn.Sigmoid(),") + int(module) // 2  # the row that built it


NOTEBOOK_CELLS = [
    "import gradlint\nfrom torch import nn",
    "class Net(nn.Module):\n"
    "    def __init__(self, depth=12):\n"
    "        super().__init__()\n"
    "        layers = []\n"
    "        for _ in range(depth):\n"
    "            layers += [nn.Linear(32, 32), nn.Sigmoid()]\n"
    "        self.body = nn.Sequential(*layers)\n"
    "\n"
    "    def forward(self, x):\n"
    "        return self.body(x)",
    "model = nn.Sequential(\n"
    "    *[m for _ in range(12) for m in (nn.Linear(32, 32), nn.Tanh())],\n"
    "    nn.Linear(32, 1),\n"
    ")",
    "r1 = gradlint.check(Net(), 'float32[8,32]', probe=False)\n"
    "r2 = gradlint.check(model, 'float32[8,32]', probe=False)",
    "import json\n"
    "print(json.dumps([[[f.rule, f.path, f.line] for f in r.findings] for r in (r1, r2)]))",
]


def _cell_locations(found: list[list[list[object]]]) -> None:
    (_rule1, path1, line1), = [f for f in found[0] if f[0] == "GL101"]
    (_rule2, path2, line2), = [f for f in found[1] if f[0] == "GL101"]
    assert (path1, line1) == ("Cell In[2]", 6)  # nn.Sigmoid() in the class's __init__, in cell 2
    assert (path2, line2) == ("Cell In[3]", 2)  # the Tanh of the comprehension in cell 3


def test_ipython_shell_cells() -> None:
    pytest.importorskip("IPython", reason="IPython is not installed (the `notebook` extra)")
    code = textwrap.dedent(f"""\
        import json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in {NOTEBOOK_CELLS!r}:
            result = shell.run_cell(cell, store_history=True)
            assert result.success, result.error_in_exec
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    _cell_locations(json.loads(done.stdout.strip().splitlines()[-1]))


def test_real_notebook_through_a_kernel() -> None:
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the `notebook` extra)")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the `notebook` extra)")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (the `notebook` extra)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("output_type") == "stream")
    _cell_locations(json.loads(printed.strip().splitlines()[-1]))
