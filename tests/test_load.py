"""Loading targets: classes, factories, instances, sibling imports, and one error kind per failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from torch import nn

from gradlint.load import load_target, restored_interpreter_state
from gradlint.pipeline import CheckOptions, TargetReport, check_target
from gradlint.types import ErrorKind, GradlintError

MODELS = "fixtures/tests/core_models.py"


def _check(target: str) -> TargetReport:
    return check_target(target, CheckOptions(rules=[], probe=False))


def _load(target: str) -> nn.Module:
    with restored_interpreter_state():
        return load_target(target).model


def test_class_with_literal_arguments() -> None:
    model = _load(f"{MODELS}:TinyMLP(depth=3, width=5)")
    assert type(model).__name__ == "TinyMLP"
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 4
    assert model.net[0].out_features == 5


def test_factory_function() -> None:
    model = _load(f"{MODELS}:make_mlp(width=9)")
    assert type(model).__name__ == "TinyMLP"
    assert model.net[0].out_features == 9


def test_module_instance() -> None:
    model = _load(f"{MODELS}:INSTANCE")
    assert type(model).__name__ == "TinyMLP" and model.net[0].out_features == 4


def test_dotted_module_target() -> None:
    model = _load("fixtures.tests.core_models:TinyMLP")
    assert type(model).__name__ == "TinyMLP"


def test_sibling_import_and_main_block_not_run() -> None:
    marker = Path("fixtures/tests/MAIN_BLOCK_RAN")
    marker.unlink(missing_ok=True)
    report = _check("fixtures/tests/sibling_user.py:UsesSibling")
    assert report.ok, report.error and report.error.message
    assert [l.module for l in report.graph.weighted_layers] == ["body.0", "head"]
    assert not marker.exists()


def test_main_block_that_raises_is_not_run() -> None:
    assert _check(f"{MODELS}:TinyMLP").ok  # core_models.py raises in its __main__ block


def _error(target: str) -> GradlintError:
    report = _check(target)
    assert report.error is not None, f"{target} unexpectedly loaded"
    return report.error


def test_missing_file() -> None:
    err = _error("fixtures/tests/no_such_file.py:Net")
    assert err.kind is ErrorKind.LOAD
    assert "no_such_file.py" in err.message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "gl_syntax_bad.py"
    bad.write_text("import torch\n\nclass Net(torch.nn.Module:\n    pass\n")
    err = _error(f"{bad}:Net")
    assert err.kind is ErrorKind.LOAD
    assert "gl_syntax_bad.py:3" in err.message


def test_import_error_inside_file(tmp_path: Path) -> None:
    bad = tmp_path / "gl_import_bad.py"
    bad.write_text("import gradlint_no_such_package_xyz\n")
    err = _error(f"{bad}:Net")
    assert err.kind is ErrorKind.LOAD
    assert "gradlint_no_such_package_xyz" in err.message


def test_sys_exit_while_importing_is_a_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "gl_exit_import.py"
    bad.write_text("import sys\nsys.exit(4)\n")
    err = _error(f"{bad}:Net")
    assert err.kind is ErrorKind.LOAD and "SystemExit" in err.message


def test_sys_exit_in_constructor_is_a_construct_error(tmp_path: Path) -> None:
    bad = tmp_path / "gl_exit_init.py"
    bad.write_text("import sys\nimport torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
                   "        super().__init__()\n        sys.exit(3)\n")
    err = _error(f"{bad}:Net")
    assert err.kind is ErrorKind.CONSTRUCT and "SystemExit" in err.message


def test_missing_name_lists_available_modules() -> None:
    err = _error(f"{MODELS}:NoSuchNet")
    assert err.kind is ErrorKind.LOAD
    assert "NoSuchNet" in err.message
    for name in ("TinyMLP", "Branchy", "INSTANCE"):
        assert name in err.message


def test_constructor_raises() -> None:
    err = _error(f"{MODELS}:Exploding(width=7)")
    assert err.kind is ErrorKind.CONSTRUCT
    assert "width 7 is not supported by this sentinel-constructor" in err.message


@pytest.mark.parametrize("target", ["make_nothing", "make_number", "NOT_A_MODEL", "INSTANCE()"])
def test_non_module_results_are_construct_errors(target: str) -> None:
    assert _error(f"{MODELS}:{target}").kind is ErrorKind.CONSTRUCT


def test_model_without_parameters() -> None:
    err = _error(f"{MODELS}:NoParams")
    assert err.kind is ErrorKind.CONSTRUCT
    assert "no parameters" in err.message


def test_sys_path_and_cwd_restored(tmp_path: Path) -> None:
    user = tmp_path / "gl_chdir_model.py"
    user.write_text(
        "import os, sys\nimport torch\n"
        f"sys.path.insert(0, {str(tmp_path / 'extra')!r})\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        os.chdir({str(tmp_path)!r})\n"
        "        self.fc = torch.nn.Linear(3, 2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
    )
    before_path, before_cwd = list(sys.path), os.getcwd()
    report = _check(f"{user}:Net")
    assert report.ok, report.error and report.error.message
    assert sys.path == before_path
    assert os.getcwd() == before_cwd
    _check(f"{user}:Missing")  # and after a failure too
    assert sys.path == before_path and os.getcwd() == before_cwd


def test_same_named_siblings_in_two_projects_are_independent(tmp_path: Path) -> None:
    for folder, width in (("a", 4), ("b", 9)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "gl_blocks_shared.py").write_text(f"from torch import nn\n\ndef block():\n    return nn.Linear(3, {width})\n")
        (tmp_path / folder / f"gl_model_{folder}.py").write_text(
            "from torch import nn\nfrom gl_blocks_shared import block\n\n"
            "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.body = block()\n"
            "        self.head = nn.Linear(self.body.out_features, 2)\n\n"
            "    def forward(self, x):\n        return self.head(self.body(x))\n"
        )
    widths = []
    for folder in ("a", "b"):
        with restored_interpreter_state():
            widths.append(load_target(f"{tmp_path / folder / f'gl_model_{folder}.py'}:Net").model.body.out_features)
    assert widths == [4, 9]
