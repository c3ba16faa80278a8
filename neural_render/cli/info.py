"""``neural-render info``: versions, threads and which optional backends are usable here
(:func:`neural_render.system_info.collect`)."""

from __future__ import annotations

HELP = "print versions, torch threads, the Mitsuba variant in use, CUDA and nvdiffrast availability"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args) -> int:
    import json

    from neural_render.system_info import collect

    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {value}")
    return 0
