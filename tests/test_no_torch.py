"""Commands that need no model answer without importing torch (or networkx): each runs the real CLI in a
fresh interpreter, which then reports whether torch was imported. Their speed is bench/startup.py's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The CLI's own entry (`gradlint.cli:main`), then a line saying which heavy modules the run imported.
_RUN = """
import sys
from gradlint import cli
code = 0
try:
    cli.main.main(args=sys.argv[1:], prog_name="gradlint")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
heavy = sorted(m for m in ("torch", "networkx") if m in sys.modules)
sys.stderr.write("\\nIMPORTED:" + ",".join(heavy) + "\\n")
sys.exit(code)
"""


def _run(args: list[str], cwd: Path) -> tuple[int, str, str, list[str]]:
    done = subprocess.run([sys.executable, "-c", _RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    err, _, tail = done.stderr.rpartition("\nIMPORTED:")
    imported = [m for m in tail.strip().split(",") if m]
    return done.returncode, done.stdout, err, imported


@pytest.mark.parametrize("args, status, says", [
    (["--version"], 0, "version"),
    (["--help"], 0, "Usage"),
    (["rules"], 0, "saturating-chain"),
    (["rules", "--output-format", "markdown"], 0, "| GL101 |"),
    (["explain", "GL101"], 0, "Why is this bad?"),
    (["rule", "saturating-chain"], 0, "Why is this bad?"),
    (["explain", "GL999"], 2, "No rule 'GL999'"),
    (["check", "--select", "GL999", "fixtures/cases/mlp.py:MLP"], 2, "Unknown rule selector 'GL999'"),
    (["check", "--ignore", "nonsense", "fixtures/cases/mlp.py:MLP"], 2, "Unknown rule selector 'nonsense'"),
    (["check", "--baseline", "missing-baseline.json", "fixtures/cases/mlp.py:MLP"], 2, "Cannot read baseline"),
    (["check", "--fail-on", "never", "fixtures/cases/mlp.py:MLP"], 2, "--fail-on"),
    (["check", "--unknown-flag"], 2, "No such option"),
])
def test_commands_without_a_model_do_not_import_torch(args: list[str], status: int, says: str) -> None:
    code, out, err, imported = _run(args, ROOT)
    assert code == status, (out, err)
    assert says in out + err
    assert imported == [], f"gradlint {' '.join(args)} imported {imported}"


def test_rules_as_json_without_torch() -> None:
    code, out, err, imported = _run(["rules", "--output-format", "json"], ROOT)
    assert code == 0, err
    rules = {r["code"]: r for r in json.loads(out)}
    assert rules["GL101"]["options"] == {"min_length": 3, "min_decades": 2.0}
    assert rules["GL205"]["options"]["min_log10"] > 0  # read from gradlint.updates' fitted thresholds
    assert imported == []


def test_config_error_without_torch(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint]\nselectt = ["GL1"]\n', encoding="utf-8")
    code, _out, err, imported = _run(["check"], tmp_path)
    assert code == 2
    assert "unknown [tool.gradlint] key `selectt`" in err and "Did you mean `select`?" in err
    assert "Traceback" not in err
    assert imported == []


def test_a_check_still_imports_torch_and_finds() -> None:
    """The other side: the same harness sees torch once a model is checked (so `imported == []` means something)."""
    code, out, err, imported = _run(["check", "--no-probe", "--no-cache", "--output-format", "concise",
                                     "fixtures/zoo/deep_sigmoid.py:DeepSigmoidMLP"], ROOT)
    assert code == 1, err
    assert "GL101" in out
    assert "torch" in imported
