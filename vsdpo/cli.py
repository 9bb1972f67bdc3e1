"""The `vsdpo` command line: one sub-command per module, each registered lazily.

Every sub-command module exposes ``add_parser(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning the exit code). Importing a sub-command
happens only when its parser is built, so ``vsdpo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vsdpo import __version__

# name -> module defining add_parser(subparsers)
SUBCOMMANDS: dict[str, str] = {
    "render": "vsdpo.render.cli",
    "lint": "vsdpo.render.cli",
    "eval": "vsdpo.metrics.cli",
    "train": "vsdpo.train.cli",
    "export": "vsdpo.train.export",
    "tiny-model": "vsdpo.tiny",
    "compare": "vsdpo.compare",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsdpo",
        description="Train code-writing vision-language models from visual feedback (Visual-SDPO).",
    )
    parser.add_argument("--version", action="version", version=f"vsdpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in dict.fromkeys(SUBCOMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only a missing sub-command module is tolerated; a missing dependency inside it is a real error.
            if error.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "takes_overrides", False):  # `vsdpo train`: every other flag is a config key
        return int(args.func(args, extra) or 0)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
