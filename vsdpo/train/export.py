"""``vsdpo export RUN_DIR OUT``: a training run's newest complete checkpoint as a Hugging Face checkpoint.

A run keeps the policy's weights as a torch state dict (``checkpoint-<step>/model.pt``, see
vsdpo.train.checkpoint) beside the configuration it ran with (``config.yaml``), which says how the
model was built: the embedded tiny Qwen3-VL (a config, and a tokenizer trained and cached under
``run.cache_dir``), or a Hugging Face checkpoint by folder or hub id. The export builds the same model,
loads the weights into it and writes ``save_pretrained``'s folder with the processor (or tokenizer)
beside it, so that ``from_pretrained(OUT)``, ``vsdpo train --model OUT`` or any other Hugging Face
tool reads the trained policy like a downloaded model:

- the tiny model: transformers' whole ``Qwen3VLProcessor`` around the run's own tokenizer and chat
  template (``vsdpo.tiny.qwen3_vl_processor``), since the trainer's is an image-only class that
  ``AutoProcessor`` could not name;
- another model: the processor and tokenizer files and the generation settings of the checkpoint the
  run started from, as they are (training changes the weights only).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vsdpo.train.config import ConfigError, TrainConfig, load_config

if TYPE_CHECKING:  # torch and transformers load only when a model is built
    import torch
    from transformers import PreTrainedModel

log = logging.getLogger("vsdpo.train")

# The files of a checkpoint that make up its processor or tokenizer (copied for a model that is not tiny).
PROCESSOR_FILE_PREFIXES = (
    "tokenizer",
    "special_tokens_map",
    "added_tokens",
    "vocab",
    "merges",
    "chat_template",
)
PROCESSOR_FILE_SUFFIXES = ("processor_config.json", "preprocessor_config.json")


class ExportError(ValueError):
    """A run folder that cannot be exported; the message names the argument and what was found."""


def export_run(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write the policy of ``run_dir``'s newest complete checkpoint (or of ``checkpoint-<step>``) to
    ``out`` as a Hugging Face checkpoint folder; returns the checkpoint folder it read."""
    import torch

    from vsdpo.train import checkpoint

    run_dir, out = Path(run_dir), Path(out)
    config = run_config(run_dir)
    complete = checkpoint.list_checkpoints(run_dir)
    if not complete:
        raise ExportError(
            f"run_dir: no complete checkpoint in {run_dir} (expected checkpoint-<step>/ folders written by "
            "vsdpo train, each with its completion marker)"
        )
    source = complete[-1]
    if step is not None:
        by_step = {path.name: path for path in complete}
        if f"checkpoint-{step}" not in by_step:
            steps = ", ".join(path.name.removeprefix("checkpoint-") for path in complete)
            raise ExportError(
                f"step: no complete checkpoint-{step} in {run_dir}; complete ones: steps {steps}"
            )
        source = by_step[f"checkpoint-{step}"]
    state = torch.load(source / "model.pt", map_location="cpu", weights_only=True)
    floating = [tensor.dtype for tensor in state.values() if tensor.is_floating_point()]
    dtype = floating[0] if floating else torch.float32
    model, write_processor = build_untrained(config, dtype)
    model.load_state_dict(state)  # strict: a state dict of another model is an error, not a partial load
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    write_processor(out)
    log.info("exported %s (%s) to %s", source, config.model.name, out)
    return source


def run_config(run_dir: Path) -> TrainConfig:
    """The configuration ``run_dir`` ran with (its ``config.yaml``)."""
    if not run_dir.is_dir():
        raise ExportError(
            f"run_dir: expected a run folder of vsdpo train, got {str(run_dir)!r}: no such folder"
        )
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ExportError(
            f"run_dir: expected a run folder of vsdpo train, got {run_dir}: it has no config.yaml"
        )
    try:
        return load_config(path)
    except ConfigError as error:
        raise ExportError(f"run_dir: {path} does not load: {error}") from None


def build_untrained(
    config: TrainConfig, dtype: torch.dtype
) -> tuple[PreTrainedModel, Callable[[Path], None]]:
    """(model, write_processor(folder)): the run's model with weights still to be loaded, and what
    writes its processor or tokenizer into an export folder."""
    from vsdpo.tiny import CHAT_TEMPLATE, IMAGE_MAX_PIXELS, build_tiny, qwen3_vl_processor
    from vsdpo.train.data import cache_dir

    spec = config.model
    if spec.name == "tiny":
        model, processor = build_tiny(
            cache_dir(config),
            seed=spec.seed,
            hidden_size=spec.tiny_hidden_size,
            num_layers=spec.tiny_num_layers,
        )
        full = qwen3_vl_processor(
            processor.tokenizer,
            chat_template=CHAT_TEMPLATE,
            image_max_pixels=config.data.image_max_pixels or IMAGE_MAX_PIXELS,
        )
        return model.to(dtype), full.save_pretrained
    return pretrained_untrained(spec.name, dtype)


def pretrained_untrained(name: str, dtype: torch.dtype) -> tuple[PreTrainedModel, Callable[[Path], None]]:
    """A Hugging Face model of ``name``'s architecture built from its config (its weights are not
    read: the run's replace them), and what copies ``name``'s processor files into an export folder."""
    import transformers

    from vsdpo.train.model import pretrained_config, reads_images

    model_config = pretrained_config(name)
    model_class = (
        transformers.AutoModelForImageTextToText
        if reads_images(model_config)
        else transformers.AutoModelForCausalLM
    )
    with _no_init_weights():  # a random initialisation of billions of weights, about to be overwritten
        model = model_class.from_config(model_config, dtype=dtype)
    source = checkpoint_folder(name)
    with contextlib.suppress(OSError, ValueError):  # the sampling defaults the model was published with
        model.generation_config = transformers.GenerationConfig.from_pretrained(source)

    def copy_processor_files(out: Path) -> None:
        copied = [path for path in sorted(source.iterdir()) if is_processor_file(path)]
        if not copied:
            raise ExportError(f"model.name: {source} holds no tokenizer or processor files to export")
        for path in copied:
            shutil.copyfile(path, Path(out) / path.name)

    return model, copy_processor_files


def is_processor_file(path: Path) -> bool:
    name = path.name
    return path.is_file() and (
        name.startswith(PROCESSOR_FILE_PREFIXES) or name.endswith(PROCESSOR_FILE_SUFFIXES)
    )


def checkpoint_folder(name: str) -> Path:
    """The local folder of ``name``: itself, or its snapshot in the Hugging Face cache."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=name, local_files_only=True))


@contextlib.contextmanager
def _no_init_weights() -> Iterator[None]:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # an older or newer layout of transformers: initialise, only slower
        yield
        return
    with no_init_weights():
        yield


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsdpo export``."""
    parser = subparsers.add_parser(
        "export",
        help="write a training run's policy as a Hugging Face checkpoint folder",
        description="Write the policy of RUN_DIR's newest complete checkpoint to OUT as a Hugging Face "
        "checkpoint (save_pretrained: config, weights, generation config, processor or tokenizer), which "
        "from_pretrained(OUT) and `vsdpo train --model OUT` load.",
    )
    parser.add_argument("run_dir", help="a run folder of vsdpo train (its run.output_dir)")
    parser.add_argument("out", help="the folder to write (created; files in it are overwritten)")
    parser.add_argument("--step", type=int, default=None, help="export checkpoint-STEP instead of the newest")
    parser.set_defaults(func=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    try:
        source = export_run(args.run_dir, args.out, step=args.step)
    except (ExportError, ConfigError) as error:
        print(f"vsdpo export: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} from {source}")
    return 0
