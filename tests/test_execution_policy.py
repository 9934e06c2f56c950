"""A target names a model, never a command: standard-library, built-in, torch and non-model-library
callables are refused before they run (no file is created), whatever module re-exports them; the user's
own classes and factories (plain, cached, partial, class method, callable instance) are still called."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlint.callables import is_stdlib_file
from gradlint.cli import main
from gradlint.load import load_target
from gradlint.types import ErrorKind, GradlintError

HOSTILE = "fixtures/hostile/stdlib_names.py"


def _commands(out: Path) -> list[tuple[str, str]]:
    """(target, what the refusal names) for every way of reaching a standard-library callable."""
    q = json.dumps
    source = Path(__file__)
    stdlib_shutil = Path(shutil.__file__).resolve()
    return [
        (f"os:system({q('touch ' + str(out))})", "module 'os' is part of Python's standard library"),
        (f"subprocess:run({q(['touch', str(out)])})", "module 'subprocess'"),
        (f"builtins:exec({q(f'open({str(out)!r}, chr(119))')})", "module 'builtins'"),
        (f"shutil:copy({q(str(source))}, {q(str(out))})", "module 'shutil'"),
        (f"pathlib:Path.touch({q(str(out))})", "module 'pathlib'"),
        (f"{stdlib_shutil}:copy({q(str(source))}, {q(str(out))})", "is a file of Python's standard library"),
        (f"{HOSTILE}:system({q('touch ' + str(out))})", "built-in or C-implemented"),
        (f"{HOSTILE}:run({q(['touch', str(out)])})", "subprocess.run, a function of Python's standard library"),
        (f"{HOSTILE}:copy({q(str(source))}, {q(str(out))})", "shutil.copy, a function of Python's standard library"),
        (f"{HOSTILE}:touch_via_partial({q('touch ' + str(out))})", "built-in or C-implemented"),
        (f"{HOSTILE}:write({q(str(out))}, 'w')", "built-in or C-implemented"),
        (f"{HOSTILE}:execute({q(f'open({str(out)!r}, chr(119))')})", "built-in or C-implemented"),
        (f"torch:save({{}}, {q(str(out))})", "a function of torch itself"),
        (f"torch.hub:load({q(str(out))}, 'model', source='local')", "a function of torch itself"),
        (f"numpy:save({q(str(out))}, [1])", "which does not depend on torch"),
    ]


def test_refused_through_the_cli_and_nothing_is_created(tmp_path: Path) -> None:
    out = tmp_path / "created"
    commands = _commands(out)
    result = CliRunner().invoke(main, ["check", *[t for t, _ in commands], "fixtures/cases/healthy.py:ReLUHe",
                                       "--no-probe", "--format", "json"])
    assert result.exit_code == 2, result.output
    assert not out.exists() and not Path(f"{out}.npy").exists()
    assert "Traceback" not in result.output
    entries = json.loads(result.stdout)["targets"]
    assert len(entries) == len(commands) + 1
    for (target, says), entry in zip(commands, entries):
        assert entry["target"] == target and entry["status"] == "error", entry
        assert entry["error"]["kind"] == "load"
        assert says in entry["error"]["message"] and "cannot run a command" in entry["error"]["message"], entry["error"]
    assert entries[-1]["status"] == "ok"  # a healthy neighbour is still checked


@pytest.mark.parametrize("target, width", [
    (f"{HOSTILE}:Tiny(width=3)", 3),
    (f"{HOSTILE}:make_tiny(5)", 5),
    (f"{HOSTILE}:cached_tiny", 4),
    (f"{HOSTILE}:tiny_of_width", 6),
    (f"{HOSTILE}:Builder.build(width=7)", 7),
    (f"{HOSTILE}:builder", 4),
    ("torch.nn:Linear(3, 2)", 3),
])
def test_model_classes_and_user_factories_are_called(target: str, width: int) -> None:
    model = load_target(target).model
    first = next(m for m in model.modules() if hasattr(m, "in_features"))
    assert first.in_features == width


def test_stdlib_decided_by_location_not_name(tmp_path: Path) -> None:
    """A user's file named like a standard-library module (`code.py`) is the user's, and is called."""
    (tmp_path / "code.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(2, 2)\n")
    assert load_target(f"{tmp_path / 'code.py'}:build").model.in_features == 2
    assert is_stdlib_file(os.__file__) and is_stdlib_file(shutil.__file__)
    assert not is_stdlib_file(str(tmp_path / "code.py"))
    assert not is_stdlib_file(os.path.join(sysconfig.get_paths()["purelib"], "torch", "__init__.py"))


def test_local_module_named_like_the_stdlib_is_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dotted target resolves as it will be imported (the working directory first): a local `mailbox.py` is not
    the standard library's."""
    import gradlint

    (tmp_path / "mailbox.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(3, 2)\n")
    monkeypatch.chdir(tmp_path)
    report = gradlint.check("mailbox:build", probe=False)
    assert report.ok, report.error and report.error.message
    monkeypatch.chdir(Path(__file__).parent)
    refused = gradlint.check("mailbox:Mailbox('x')", probe=False)
    assert refused.error is not None and "module 'mailbox' is part of Python's standard library" in refused.error.message


def test_refusal_is_a_load_error() -> None:
    with pytest.raises(GradlintError) as info:
        load_target(f"{HOSTILE}:run(['true'])")
    assert info.value.kind is ErrorKind.LOAD
