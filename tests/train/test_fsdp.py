"""The trainer under torchrun's environment with FSDP2 (fully_shard) on the CPU: gloo, 2 processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, run_dir: str, cache_dir: str, resume: bool) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # A spawned process: the checkout's root on the path, so that the ``tests`` package imports.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.train.tiny_run import tiny_config
    from vsdpo.train import distributed, train

    options = {"run.resume": resume, "logging.num_sample_renders": 0, "logging.tensorboard": False}
    config = tiny_config(run_dir, cache_dir, **options)
    try:
        metrics = train(config)
        assert distributed.world_size() == world_size
        with open(os.path.join(run_dir, f"rank{rank}.json"), "w") as file:
            json.dump({"loss": metrics["loss"], "grad_norm": metrics["grad_norm"]}, file)
    finally:
        distributed.shutdown()


def _spawn(run_dir, cache_dir, resume: bool) -> list[dict]:
    mp.spawn(_worker, args=(2, _free_port(), str(run_dir), str(cache_dir), resume), nprocs=2, join=True)
    return [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_fsdp2_gloo_two_processes_train_and_resume(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    run_dir, cache_dir = tmp_path / "run", tmp_path / "cache"
    ranks = _spawn(run_dir, cache_dir, resume=False)
    assert ranks[0] == ranks[1]  # the loss and the gradient norm are global
    assert torch.isfinite(torch.tensor(ranks[0]["loss"]))
    state = torch.load(run_dir / "checkpoint-2" / "model.pt", weights_only=True)
    assert "lm_head.weight" in state and state["lm_head.weight"].shape[0] > 100  # gathered, not a shard
    teacher = torch.load(run_dir / "checkpoint-2" / "trainer_state.pt", weights_only=False)["teacher"]
    assert teacher["lm_head.weight"].shape == state["lm_head.weight"].shape  # the EMA teacher, gathered too
    assert sorted(p.name for p in (run_dir / "checkpoint-2").glob("optimizer-rank*.pt")) == [
        "optimizer-rank0.pt",
        "optimizer-rank1.pt",
    ]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]

    # Both ranks resume from checkpoint-2: step 3 comes out the same.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed_dir, ignore=shutil.ignore_patterns("checkpoint-3", "rank*.json"))
    resumed = _spawn(resumed_dir, cache_dir, resume=True)
    assert resumed == ranks
