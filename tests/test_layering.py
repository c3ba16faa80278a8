"""Layering of the command line (issue #25): ``neural_render/cli/`` holds thin argparse shims and nothing else
imports it.

* no module under ``neural_render/cli/`` is over :data:`MAX_CLI_LINES` lines (``wc -l``);
* no module of ``neural_render/`` outside ``cli/`` (except the ``python -m neural_render`` entry point) and no script
  under ``scripts/`` imports ``neural_render.cli``: module-level and function-level imports, relative imports and
  ``importlib.import_module("neural_render.cli...")`` calls, found with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neural_render"
CLI = PACKAGE / "cli"
MAX_CLI_LINES = 150
ENTRY_POINTS = {PACKAGE / "__main__.py"}


def _module_name(path: Path) -> list[str]:
    """Dotted package path of a file under neural_render/ (for relative imports); [] for scripts."""
    if PACKAGE not in path.parents:
        return []
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts if parts[-1] != "__init__" else parts[:-1]


def cli_imports(source: str, path: Path) -> list[str]:
    """'line N: what' for every import of neural_render.cli in ``source`` (a file at ``path``)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []

    def is_cli(name: str) -> bool:
        return name == "neural_render.cli" or name.startswith("neural_render.cli.")

    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if is_cli(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{a.name}" for a in node.names]
            if any(is_cli(n) for n in names):
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import "
                             f"{', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str) \
                    and is_cli(node.args[0].value):
                found.append(f"line {node.lineno}: {name}({node.args[0].value!r})")
    return found


def test_no_cli_module_is_over_150_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in sorted(CLI.rglob("*.py"))}
    assert len(sizes) > 10, sizes  # the command modules are there
    too_long = {name: n for name, n in sizes.items() if n > MAX_CLI_LINES}
    assert not too_long, f"cli modules over {MAX_CLI_LINES} lines (move library code out): {too_long}"


def test_nothing_outside_cli_imports_cli():
    # the checker sees every form of import (so a clean result means something)
    probe = PACKAGE / "web" / "probe.py"
    sources = ["import neural_render.cli", "from neural_render.cli.inverse import x", "from neural_render import cli",
               "def f():\n    from neural_render.cli import main", "from ..cli import demo", "from .. import cli",
               "from ..cli.forward import y",
               "import importlib\nimportlib.import_module('neural_render.cli.demo')"]
    for source in sources:
        assert cli_imports(source, probe), source
    for source in ("import neural_render.clip", "from neural_render import client", "from ..io import cli_like",
                   "from . import cli_helpers"):
        assert not cli_imports(source, probe), source
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if CLI not in p.parents and p not in ENTRY_POINTS]
    files += sorted((ROOT / "scripts").glob("*.py"))
    assert len(files) > 50
    bad = {p.relative_to(ROOT).as_posix(): hits for p in files if (hits := cli_imports(p.read_text(), p))}
    assert not bad, f"modules outside neural_render/cli import it (import the library module instead): {bad}"
