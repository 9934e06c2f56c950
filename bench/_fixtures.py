"""Which fixture models the benchmarks run, found from the fixture files themselves so that a new
zoo file or failure case is benchmarked without editing the scripts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "fixtures" / "zoo"
CASES = ROOT / "fixtures" / "cases"


def public_classes(path: Path) -> list[str]:
    """Top-level classes of a fixture file whose names do not start with `_`, in file order."""
    tree = ast.parse(path.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]


def zoo_targets() -> list[str]:
    """Each zoo file's main model: its last public class (helpers such as blocks come first)."""
    targets = []
    for path in sorted(ZOO.glob("*.py")):
        classes = public_classes(path)
        if classes:
            targets.append(f"fixtures/zoo/{path.name}:{classes[-1]}")
    return targets


def case_targets(name: str) -> list[str]:
    """Every public class of fixtures/cases/NAME.py."""
    return [f"fixtures/cases/{name}.py:{c}" for c in public_classes(CASES / f"{name}.py")]


def mlp_grid() -> tuple[list[str], list[str]]:
    """The activations and inits fixtures/cases/mlp.py supports, read from its module-level tables."""
    tree = ast.parse((CASES / "mlp.py").read_text())
    acts: list[str] = []
    inits: list[str] = []
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        if target.id == "ACTIVATIONS" and isinstance(node.value, ast.Dict):
            acts = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
        elif target.id == "INITS" and isinstance(node.value, ast.Tuple):
            inits = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return acts, inits


def mlp_targets(depth: int = 10, acts: list[str] | None = None, inits: list[str] | None = None) -> list[str]:
    all_acts, all_inits = mlp_grid()
    return [
        f"fixtures/cases/mlp.py:MLP(depth={depth}, act={a!r}, init={i!r})"
        for a in (acts or all_acts) for i in (inits or all_inits)
    ]
