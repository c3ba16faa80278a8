"""``neural-render report [--readme README.md] [--check]``: README results tables from the shipped JSONs."""

from __future__ import annotations

HELP = "regenerate README's results block from the shipped eval JSONs (--check: exit 1 when README disagrees)"


def add_arguments(parser) -> None:
    parser.add_argument("--readme", default="README.md",
                        help="the README whose results block is replaced in place (default README.md; only the block "
                             "between its results markers changes, written atomically)")
    parser.add_argument("--root", default=None,
                        help="repository root holding data/models (default: the README's folder)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the README's block differs")
    parser.add_argument("--print", action="store_true", help="print the generated block instead of writing it")


def run(args) -> int:
    import sys
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.report import replace_block, results_markdown
    from neural_render.io.atomic import atomic_path

    readme = Path(args.readme)
    if not readme.is_file():
        raise NeuralRenderError("no such README", readme)
    root = Path(args.root) if args.root else readme.resolve().parent
    if not (root / "data" / "models").is_dir():
        raise NeuralRenderError("no data/models folder here (pass --root)", root)
    block = results_markdown(root)
    if args.print:
        print(block, end="")
        return 0
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, block, str(readme))
    if args.check:
        if new != text:
            print(f"{readme}: the results block differs from the shipped JSONs; run `neural-render report --readme "
                  f"{readme}`", file=sys.stderr)
            return 1
        print(f"{readme}: results block matches the shipped JSONs")
        return 0
    if new != text:
        with atomic_path(readme) as tmp:
            Path(tmp).write_text(new, encoding="utf-8")
    print(f"{readme}: results block {'updated' if new != text else 'already up to date'}")
    return 0
