"""Model weights are only ever loaded through safetensors or torch.load(weights_only=True): no pickle execution."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "neural_render"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name


def test_no_unsafe_deserialisation_in_the_package():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if owner == "torch" and name == "load":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "dill", "cloudpickle", "joblib") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "np" and name == "load" and not any(
                    k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in node.keywords):
                problems.append(f"{where}: np.load without allow_pickle=False")
    assert not problems, "\n".join(problems)
