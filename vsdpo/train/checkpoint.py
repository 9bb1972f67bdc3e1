"""Checkpoints that are written atomically and resume bit for bit.

A checkpoint is a folder ``checkpoint-<step>/`` in the run directory holding ``model.pt``,
``optimizer.pt``, ``scheduler.pt``, ``trainer_state.pt`` (step, counters, data order, the EMA
teacher when there is one), ``rng.pt`` (Python, NumPy and torch CPU/CUDA generator states of each
rank) and, written last, ``complete.json`` (every file's size). It is written into
``checkpoint-<step>.tmp`` and renamed into place only when complete, so a crash mid-save leaves the
previous checkpoint intact; resuming skips a folder whose marker is missing or whose files were cut
short (a copy interrupted, a full disk), and falls back to the one before when a file does not load. Under FSDP2 the full (unsharded) model state is gathered to rank 0, which writes it, and each
rank writes its own optimizer shard (``optimizer-rank<r>.pt``): resume with the same number of ranks.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)

from vsdpo.train import distributed

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "complete.json"  # written last: a checkpoint without it (or with a file cut short) is not used

log = logging.getLogger("vsdpo.train")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's whole weights: under FSDP2 gathered from every rank's shards, on the CPU (a
    collective: call it on every rank; rank 0 gets them), else its own ``state_dict``."""
    if distributed.is_distributed():
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def load_full_state_dict(model, state: dict[str, torch.Tensor]) -> None:
    """Load what ``full_state_dict`` returned: under FSDP2 each rank takes its shards of it."""
    if distributed.is_distributed():
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)


def save_checkpoint(
    run_dir: str | Path, step: int, *, model, optimizer, scheduler, trainer_state: dict, keep: int
) -> Path:
    """Write ``checkpoint-<step>`` atomically (rank 0 writes the shared files, each rank its own)."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f"checkpoint-{step}.tmp"
    sharded = distributed.is_distributed()
    model_state = full_state_dict(model)
    rng_states = distributed.all_gather_object(rng_state())
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(model_state, tmp / "model.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(
            {**trainer_state, "step": step, "world_size": distributed.world_size()}, tmp / "trainer_state.pt"
        )
        torch.save(rng_states, tmp / "rng.pt")
    _barrier()
    optimizer_file = f"optimizer-rank{distributed.rank()}.pt" if sharded else "optimizer.pt"
    torch.save(optimizer.state_dict(), tmp / optimizer_file)
    _barrier()
    if distributed.is_main():
        write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _prune(run_dir, keep)
    _barrier()
    return final


def write_manifest(folder: Path) -> None:
    """The completion marker: every file of the checkpoint with its size, written last."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps(sizes, indent=1), encoding="utf-8")


def is_complete(folder: Path) -> bool:
    """A checkpoint whose manifest is there and whose every file has the size it was written with."""
    try:
        sizes = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return bool(sizes) and all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, AttributeError):
        return False


def _prune(run_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (``.tmp`` folders, and folders whose manifest is missing or
    whose files were cut short, are not)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in run_dir.iterdir()
        if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name)) and is_complete(p)
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resume(run_dir: str | Path, *, model, optimizer, scheduler) -> tuple[Path, dict] | None:
    """Load the newest complete checkpoint that loads, falling back to older ones; None when there is
    none (the caller says so and starts from scratch)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as error:
            log.warning(
                "resume: %s does not load (%s: %s); trying the one before", path, type(error).__name__, error
            )
    return None


def load_checkpoint(path: str | Path, *, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG; returns the trainer state."""
    path = Path(path)
    trainer_state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    saved_world = trainer_state.pop("world_size", 1)
    if saved_world != distributed.world_size():
        raise ValueError(
            f"resume: {path} was written by {saved_world} ranks, but this run has {distributed.world_size()}"
        )
    load_full_state_dict(model, torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    sharded = distributed.is_distributed()
    optimizer_file = path / (f"optimizer-rank{distributed.rank()}.pt" if sharded else "optimizer.pt")
    optimizer.load_state_dict(torch.load(optimizer_file, map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_states = torch.load(path / "rng.pt", weights_only=False)
    rank = distributed.rank()
    if rank >= len(rng_states):
        raise ValueError(f"{path}: holds RNG states of {len(rng_states)} ranks, but this is rank {rank}")
    set_rng_state(rng_states[rank])
    return trainer_state
