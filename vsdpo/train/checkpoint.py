"""Checkpoints that are written atomically and resume bit for bit.

A checkpoint is a folder ``checkpoint-<step>/`` in the run directory holding ``model.pt``,
``optimizer.pt``, ``scheduler.pt``, ``trainer_state.pt`` (step, counters, data order, the EMA
teacher when there is one), ``rng.pt`` (Python, NumPy and torch CPU/CUDA generator states of each
rank) and, written last, ``complete.json`` (every file's size and SHA-256). It is written into
``checkpoint-<step>.tmp`` and renamed into place only when complete, so a crash mid-save leaves the
previous checkpoint intact; resuming skips a folder whose marker is missing or whose files were cut
short (a copy interrupted, a full disk), and falls back to the one before when a file does not load. Under FSDP2 the full (unsharded) model state is gathered to rank 0, which writes it, and each
rank writes its own optimizer shard (``optimizer-rank<r>.pt``): resume with the same number of ranks.

Sizes alone do not catch a file whose bytes changed in place (a bad sector, a copy that wrote garbage
over a block): ``torch.load`` may read such a file without complaint and hand back NaN weights, and
every later resume would pick the same checkpoint again. So the resume checks each file's SHA-256
against the manifest, and a checkpoint that fails is skipped with a warning naming the file, for the
newest one before it that passes. Listing (and pruning) checks sizes only, which costs no reads. Manifests written before checksums existed (``{name: size}``) are accepted
unverified, with a warning: rejecting them would send a run that resumes after an upgrade back to
step 0, dropping its logs, for a risk those checkpoints always had.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from vsdpo.train import distributed

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "complete.json"  # written last: a checkpoint without it (or with a file cut short) is not used
MANIFEST_VERSION = 2  # {"version": 2, "files": {name: {"size": int, "sha256": hex}}}; 1 was {name: size}
_HASH_CHUNK = 1 << 20

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


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole weights: under FSDP2 gathered from every rank's shards, on the CPU (a
    collective: call it on every rank; rank 0 gets them), else its own ``state_dict``."""
    if distributed.is_distributed():
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what ``full_state_dict`` returned: under FSDP2 each rank takes its shards of it."""
    if distributed.is_distributed():
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    trainer_state: dict[str, Any],
    keep: int,
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


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in chunks (checkpoints are larger than memory may hold twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_of_each(paths: list[Path]) -> list[str]:
    """The files' SHA-256s, several files at once: hashlib releases the GIL on large chunks, and a
    large model's checkpoint is tens of GB spread over a few files (weights, optimizer state)."""
    if len(paths) <= 1:
        return [sha256_of(path) for path in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1, 8)) as pool:
        return list(pool.map(sha256_of, paths))


def write_manifest(folder: Path) -> None:
    """The completion marker: every file of the checkpoint with its size and SHA-256, written last.

    It goes to a temporary name first and is renamed over ``complete.json``, so a reader never sees
    half a manifest (which would either be refused, or list only some of the files).
    """
    folder = Path(folder)
    partial = folder / f"{MANIFEST}.tmp"
    paths = [p for p in sorted(folder.iterdir()) if p.name not in (MANIFEST, partial.name) and p.is_file()]
    files = {
        p.name: {"size": p.stat().st_size, "sha256": digest}
        for p, digest in zip(paths, _sha256_of_each(paths), strict=True)
    }
    manifest = {"version": MANIFEST_VERSION, "files": files}
    with open(partial, "w", encoding="utf-8") as file:
        file.write(json.dumps(manifest, indent=1))
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, tuple[int, str | None]] | None:
    """``{name: (size, sha256 or None)}`` from the checkpoint's manifest, None when it is missing or
    malformed. A manifest of the first version (``{name: size}``) gives no checksums."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    entries: dict[str, tuple[int, str | None]] = {}
    if "version" not in data:  # version 1: sizes only
        for name, size in data.items():
            if not isinstance(size, int) or isinstance(size, bool):
                return None
            entries[name] = (size, None)
        return entries
    files = data.get("files")
    if data["version"] != MANIFEST_VERSION or not isinstance(files, dict):
        return None
    for name, entry in files.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(digest, str):
            return None
        entries[name] = (size, digest)
    return entries


def is_complete(folder: Path) -> bool:
    """A checkpoint whose manifest is there and whose every file has the size it was written with
    (the cheap test, no file read; ``verify`` reads them)."""
    entries = read_manifest(folder)
    if not entries:
        return False
    for name, (size, _) in entries.items():
        path = Path(folder) / name
        if path.name != name or name in (".", ".."):  # a manifest naming a file outside its folder
            return False
        try:
            if path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def verify(folder: Path) -> str | None:
    """None when every file of the checkpoint matches its manifest (size and SHA-256), else what is
    wrong, naming the file. A size-only manifest (written before checksums) passes unverified, with
    a warning, see the module's docstring."""
    folder = Path(folder)
    entries = read_manifest(folder)
    if not entries:
        return f"{folder / MANIFEST} is missing or malformed"
    if not is_complete(folder):
        return f"{folder}: a file listed in {MANIFEST} is missing or has another size"
    unverified = sorted(name for name, (_, digest) in entries.items() if digest is None)
    if unverified:
        log.warning(
            "checkpoint %s has a manifest without checksums (written by an older version): "
            "accepted unverified (%s)",
            folder,
            ", ".join(unverified),
        )
    checked = sorted((name, expected) for name, (_, expected) in entries.items() if expected is not None)
    try:
        actual = _sha256_of_each([folder / name for name, _ in checked])
    except OSError as error:
        return f"{error.filename or folder} cannot be read ({error.strerror or error})"
    for (name, expected), digest in zip(checked, actual, strict=True):
        if digest != expected:
            return f"{folder / name} has sha256 {digest}, but {MANIFEST} expects {expected}"
    return None


def _verified(path: Path, what: str) -> bool:
    """Rank 0 reads and checks the files and every rank takes its verdict, so that all ranks pick the
    same checkpoint and the files are read once, not once per rank."""
    problem = distributed.broadcast_object(verify(path) if distributed.is_main() else None)
    if problem is not None:
        log.warning("%s: skipping %s, it fails verification: %s; trying the one before", what, path, problem)
    return problem is None


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


def resume(
    run_dir: str | Path, *, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler
) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest complete checkpoint that verifies and loads, falling back to older ones; None
    when there is none (the caller says so and starts from scratch)."""
    for path in reversed(list_checkpoints(run_dir)):
        if not _verified(path, "resume"):
            continue
        try:
            return path, load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as error:
            log.warning(
                "resume: %s does not load (%s: %s); trying the one before", path, type(error).__name__, error
            )
    return None


def load_checkpoint(
    path: str | Path, *, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler
) -> dict[str, Any]:
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
