"""``vsdpo train`` and ``python -m vsdpo.train``: ``--config FILE`` and one ``--key value`` flag per
config key (dotted for nested keys: ``--run.max_steps 40``, ``--algorithm.loss.beta 0``).
``--list-keys`` prints every key with its value and meaning, so that an install without the source
repository's docs/ still documents itself."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from vsdpo.train.config import ConfigError, keys_text, load_config, parse_overrides


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsdpo train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a policy with vsdpo / sdpo / grpo",
        description="Train a code-writing policy from visual feedback. Without --config: the embedded tiny default. "
        "Every configuration key is a flag: --run.max_steps 40, --algorithm grpo, --model FOLDER; "
        "`vsdpo train --list-keys` prints them all with their values and meaning.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="a YAML file, or the name of a packaged config (qwen3vl_8b_chart, qwen3vl_8b_web, "
        "qwen3vl_8b_slides, tiny_chart); default: tiny_chart",
    )
    parser.add_argument(
        "--list-keys",
        action="store_true",
        help="print every configuration key with its value (under --config and the other flags) and its meaning, then exit",
    )
    parser.epilog = (
        "Every other flag sets a configuration key: --KEY VALUE. `vsdpo train --list-keys` lists them "
        "(docs/training.md in the source repository has the same table)."
    )
    parser.set_defaults(func=run_from_args, takes_overrides=True)  # --KEY VALUE flags
    return parser


def run_from_args(args: argparse.Namespace, extra: list[str]) -> int:
    """Load the configuration (the file, then the ``--KEY VALUE`` flags in ``extra``) and train; a
    config error exits with 2 before any model loads."""
    try:
        overrides = parse_overrides(extra)
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"vsdpo train: config error: {error}", file=sys.stderr)
        return 2
    if getattr(args, "list_keys", False):
        print(keys_text(config))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vsdpo.train import distributed
    from vsdpo.train.loop import train  # heavy (torch, transformers): only once the config is valid

    try:
        metrics = train(config)
    except ConfigError as error:  # a task source or the output folder, found bad before any model loads
        print(f"vsdpo train: config error: {error}", file=sys.stderr)
        return 2
    finally:  # the process group ends with the command (torchrun), not with each train() a caller makes
        distributed.shutdown()
    if metrics:
        reward, loss = metrics.get("reward", math.nan), metrics.get("loss", math.nan)
        print(
            f"done: {config.run.name} in {config.run.output_dir} (last step reward {reward:.3f}, loss {loss:.4f})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m vsdpo.train")
    add_parser(parser.add_subparsers(dest="command"))
    args, extra = parser.parse_known_args(["train", *argv])
    return run_from_args(args, extra)
