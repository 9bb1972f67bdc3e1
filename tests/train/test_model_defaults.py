"""A model other than the tiny default gets its own run name and folder and no warm start, unless the
user set them; `vsdpo train --list-keys` prints every key without the source repository's docs."""

from __future__ import annotations

import logging

import pytest

from vsdpo.cli import main as vsdpo_main
from vsdpo.train.cli import main
from vsdpo.train.config import KEYS, load_config, model_basename, parse_overrides


def test_a_model_folder_gets_its_own_run_and_no_warm_start():
    config = load_config(None, {"model": "some/folder"})
    assert config.model.name == "some/folder"
    assert (config.run.name, config.run.output_dir) == ("folder-chart", "runs/folder-chart")
    assert (config.warmstart.steps, config.warmstart.repair_steps) == (0, 0)

    web = load_config(
        None, parse_overrides(["--model.name", "Qwen/Qwen3-VL-8B-Instruct", "--data.kind", "web"])
    )
    assert web.run.output_dir == "runs/Qwen3-VL-8B-Instruct-web" and web.warmstart.steps == 0


def test_the_tiny_default_keeps_its_set_up():
    config = load_config()
    assert (config.run.name, config.run.output_dir) == ("tiny-chart", "runs/tiny-chart")
    assert (config.warmstart.steps, config.warmstart.repair_steps) == (250, 800)


def test_values_the_user_set_are_kept():
    overrides = {
        "model": "some/folder",
        "run.output_dir": "/tmp/mine",
        "warmstart.steps": "20",
        "warmstart.repair_steps": "5",
    }
    config = load_config(None, overrides)
    assert (config.run.output_dir, config.warmstart.steps, config.warmstart.repair_steps) == (
        "/tmp/mine",
        20,
        5,
    )
    assert config.run.name == "folder-chart"  # not set: still the model's

    named = load_config(None, {"model": "some/folder", "run.name": "trial"})
    assert (named.run.name, named.run.output_dir) == ("trial", "runs/trial")  # the folder follows the name


def test_keys_of_a_config_file_count_as_set(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: some/folder\nrun:\n  name: from-file\nwarmstart:\n  steps: 7\n")
    config = load_config(path)
    assert (config.run.name, config.run.output_dir) == ("from-file", "runs/from-file")
    assert (config.warmstart.steps, config.warmstart.repair_steps) == (7, 0)
    # A saved run's config.yaml names every key: loading it back changes nothing.
    assert load_config(path, {"run.output_dir": "runs/x"}).run.output_dir == "runs/x"


def test_a_packaged_config_keeps_its_own_names():
    config = load_config("qwen3vl_8b_chart", {"model": "/models/other"})
    assert (config.run.name, config.run.output_dir) == ("qwen3vl-8b-chart", "runs/qwen3vl-8b-chart")


@pytest.mark.parametrize(
    "name, expected",
    [("Qwen/Qwen3-VL-8B-Instruct", "Qwen3-VL-8B-Instruct"), ("/ckpt/my model/", "my-model"), ("~/m", "m")],
)
def test_the_basename_is_a_folder_name(name, expected):
    assert model_basename(name) == expected


def test_help_points_to_list_keys(capsys):
    with pytest.raises(SystemExit):
        vsdpo_main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--list-keys" in help_text and "vsdpo train --list-keys" in " ".join(help_text.split())


def test_list_keys_prints_every_key_with_its_value_and_meaning(capsys):
    assert main(["--list-keys"]) == 0
    listing = capsys.readouterr().out
    assert "--run.max_steps 30\n      optimiser steps" in listing
    assert all(f"--{key} " in listing for key in KEYS)
    # The values are the ones the run would take under the other flags.
    assert main(["--list-keys", "--model", "/models/mine", "--run.max_steps", "4"]) == 0
    listing = capsys.readouterr().out
    assert "--run.output_dir 'runs/mine-chart'" in listing and "--run.max_steps 4\n" in listing
    assert "--warmstart.steps 0\n" in listing


def test_list_keys_with_a_bad_key_is_a_config_error(capsys):
    assert main(["--list-keys", "--run.max_stpes", "4"]) == 2
    assert "run.max_steps" in capsys.readouterr().err


class Stop(Exception):
    """Raised where the test has seen what it needs, before any task renders."""


def test_the_run_name_is_logged_as_the_run_starts(tmp_path, monkeypatch, caplog):
    from vsdpo.train import loop

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(loop, "RenderPool", stop)
    caplog.set_level(logging.INFO, logger="vsdpo.train")
    config = load_config(None, {"run.name": "trial", "run.output_dir": str(tmp_path / "run")})
    with pytest.raises(Stop):
        loop.train(config)
    assert any(r.getMessage().startswith("run trial: vsdpo on tiny") for r in caplog.records)
