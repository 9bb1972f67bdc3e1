"""Checkpoints are verified by content: a file changed in place, same size, is caught on resume."""

from __future__ import annotations

import hashlib
import json
import logging

import torch

from vsdpo.train import checkpoint


def _parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def _save_two(run_dir):
    """checkpoint-1 and checkpoint-2 with different weights; returns each one's weights."""
    model, optimizer, scheduler = _parts()
    weights = {}
    for step in (1, 2):
        with torch.no_grad():
            model.weight.fill_(float(step))
        weights[step] = {k: v.clone() for k, v in model.state_dict().items()}
        checkpoint.save_checkpoint(
            run_dir,
            step,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            trainer_state={"marker": step},
            keep=0,
        )
    return weights


def test_manifest_holds_a_sha256_of_every_file(tmp_path):
    _save_two(tmp_path)
    folder = tmp_path / "checkpoint-2"
    manifest = json.loads((folder / checkpoint.MANIFEST).read_text())
    assert manifest["version"] == checkpoint.MANIFEST_VERSION
    names = {p.name for p in folder.iterdir()} - {checkpoint.MANIFEST}
    assert set(manifest["files"]) == names and "model.pt" in names
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert not list(folder.glob("*.tmp"))  # the manifest was renamed into place


def test_same_size_garbage_in_the_newest_model_falls_back_to_the_one_before(tmp_path, caplog):
    weights = _save_two(tmp_path)
    model_file = tmp_path / "checkpoint-2" / "model.pt"
    data = bytearray(model_file.read_bytes())
    size = len(data)
    middle = size // 2
    data[middle : middle + 4096] = b"\xff" * len(data[middle : middle + 4096])  # 4 KB of garbage, in place
    model_file.write_bytes(bytes(data))
    assert model_file.stat().st_size == size
    # The size check alone still takes it: only the checksum tells.
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-1", "checkpoint-2"]

    model, optimizer, scheduler = _parts()
    with caplog.at_level(logging.WARNING, logger="vsdpo.train"):
        resumed = checkpoint.resume(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert resumed is not None
    path, trainer_state = resumed
    assert path.name == "checkpoint-1" and trainer_state["marker"] == 1
    assert all(torch.equal(model.state_dict()[k], weights[1][k]) for k in weights[1])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(model_file) in message and "sha256" in message for message in warnings), warnings


def test_every_checkpoint_corrupt_resumes_none(tmp_path):
    _save_two(tmp_path)
    for step in (1, 2):
        optimizer_file = tmp_path / f"checkpoint-{step}" / "optimizer.pt"
        data = bytearray(optimizer_file.read_bytes())
        data[-1] ^= 0x01  # one bit
        optimizer_file.write_bytes(bytes(data))
    model, optimizer, scheduler = _parts()
    assert checkpoint.resume(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler) is None


def test_a_size_only_manifest_is_accepted_unverified_with_a_warning(tmp_path, caplog):
    weights = _save_two(tmp_path)
    folder = tmp_path / "checkpoint-2"
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != checkpoint.MANIFEST}
    (folder / checkpoint.MANIFEST).write_text(json.dumps(sizes))  # as the first version wrote it
    model, optimizer, scheduler = _parts()
    with caplog.at_level(logging.WARNING, logger="vsdpo.train"):
        path, _ = checkpoint.resume(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert path == folder
    assert torch.equal(model.weight, weights[2]["weight"])
    assert any("without checksums" in r.getMessage() for r in caplog.records)


def test_a_manifest_naming_a_file_outside_its_folder_is_not_complete(tmp_path):
    _save_two(tmp_path)
    folder = tmp_path / "checkpoint-2"
    manifest = json.loads((folder / checkpoint.MANIFEST).read_text())
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"x")
    manifest["files"]["../outside.pt"] = {"size": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    (folder / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["checkpoint-1"]
