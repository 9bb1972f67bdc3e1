"""The trainer on Hugging Face checkpoint folders, loaded the way a downloaded model is: `vsdpo train
--model FOLDER` end to end, then a resume, for a Qwen3-VL on charts (the target image in the prompt)
and a text-only Qwen3 on web pages (the folders: tests/hf_checkpoints.py, via tests/conftest.py); and
a hub id that is neither cached nor reachable."""

from __future__ import annotations

import json
import logging

import pytest
import transformers
from huggingface_hub import constants as hub_constants
from transformers.utils import is_torchvision_available

from vsdpo.train import generate, logs
from vsdpo.train.cli import main
from vsdpo.train.config import load_config
from vsdpo.train.model import resolve_policy

# The smallest run: one group of two short responses per step, one held-out task, a checkpoint a step.
SMALL = [
    "--warmstart.steps",
    "0",
    "--rollout.prompts_per_step",
    "1",
    "--rollout.num_generations",
    "2",
    "--rollout.max_new_tokens",
    "12",
    "--rollout.render_workers",
    "1",
    "--eval.num_tasks",
    "1",
    "--eval.samples",
    "1",
    "--eval.every",
    "0",
    "--checkpoint.save_steps",
    "1",
    "--run.cpu_threads",
    "1",
    "--logging.progress",
    "false",
    "--logging.tensorboard",
    "false",
    "--logging.num_sample_renders",
    "0",
    "--optimizer.warmup_steps",
    "0",
]

WEB_PAGES = [
    (
        "Write a single HTML page with a blue heading that says Hello.",
        "<html><body><h1 style='color:#1f4fa0;font-family:sans-serif'>Hello</h1></body></html>",
    ),
    (
        "Write a single HTML page with a short list of two fruits.",
        "<html><body><ul><li>Apple</li><li>Pear</li></ul></body></html>",
    ),
]


@pytest.fixture
def encoded_prompts(monkeypatch):
    """Whether each batch that generate encoded carried images (pixel values)."""
    seen: list[bool] = []
    encode = generate.encode

    def recording_encode(processor, texts, images, device, padding_side="left"):
        encoded = encode(processor, texts, images, device, padding_side)
        seen.append("pixel_values" in encoded)
        return encoded

    monkeypatch.setattr(generate, "encode", recording_encode)
    return seen


def warnings_with(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def train_then_resume(options: list[str], run_dir, caplog) -> list[dict]:
    """Two steps, then ``--run.resume`` to three; the records of the first run stay, step 3 follows."""
    assert main([*options, *SMALL, "--run.max_steps", "2"]) == 0
    first = logs.read_records(run_dir)
    assert [r["step"] for r in first] == [1, 2]
    assert (run_dir / "checkpoint-2").is_dir()
    caplog.clear()
    assert main([*options, *SMALL, "--run.resume", "--run.max_steps", "3"]) == 0
    assert any("resumed from" in r.getMessage() and "at step 2" in r.getMessage() for r in caplog.records)
    records = logs.read_records(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3] and records[:2] == first
    assert (run_dir / "checkpoint-3").is_dir()
    return records


@pytest.mark.slow
def test_charts_on_a_qwen3_vl_folder_with_the_image_in_the_prompt(
    tmp_path, qwen3_vl_folder, encoded_prompts, caplog
):
    caplog.set_level(logging.INFO, logger="vsdpo.train")
    run_dir = tmp_path / "run"
    options = [
        "--model",
        str(qwen3_vl_folder),
        "--data.num_builtin_tasks",
        "4",
        "--data.prompt_image",
        "true",
        "--run.output_dir",
        str(run_dir),
        "--run.cache_dir",
        str(tmp_path / "cache"),
    ]
    train_then_resume(options, run_dir, caplog)

    saved = load_config(run_dir / "config.yaml")
    assert (
        saved.model.name == str(qwen3_vl_folder) and saved.data.prompt_image and saved.algorithm.teacher_image
    )
    assert encoded_prompts and all(encoded_prompts)  # every prompt batch showed the target chart
    assert logs.read_records(run_dir, logs.EVAL)
    if not is_torchvision_available():  # the processor without its video part, said once per run
        assert len(warnings_with(caplog, "without its video processor")) == 1


@pytest.mark.slow
@pytest.mark.browser
def test_web_pages_on_a_text_only_qwen3_folder(tmp_path, qwen3_folder, encoded_prompts, caplog):
    caplog.set_level(logging.INFO, logger="vsdpo.train")
    tasks = tmp_path / "pages.jsonl"
    tasks.write_text(
        "".join(
            json.dumps({"id": f"page-{i}", "kind": "web", "prompt": prompt, "reference": page}) + "\n"
            for i, (prompt, page) in enumerate(WEB_PAGES)
        )
    )
    run_dir = tmp_path / "run"
    options = [
        "--model",
        str(qwen3_folder),
        "--data.kind",
        "web",
        "--data.tasks",
        str(tasks),
        "--eval.tasks",
        str(tasks),
        "--run.output_dir",
        str(run_dir),
        "--run.cache_dir",
        str(tmp_path / "cache"),
    ]
    train_then_resume(options, run_dir, caplog)

    # Images on by default: a text-only model runs with both image settings off, said once per run.
    assert len(warnings_with(caplog, "is a text-only model")) == 1
    saved = load_config(run_dir / "config.yaml")
    assert saved.model.name == str(qwen3_folder)
    assert not saved.data.prompt_image and not saved.algorithm.teacher_image
    assert encoded_prompts and not any(encoded_prompts)
    assert not list((tmp_path / "cache").glob("targets/*.png"))  # no target rendered for a text-only model
    assert logs.read_records(run_dir, logs.EVAL)


def test_a_text_only_model_gets_a_config_without_images(tmp_path, caplog):
    transformers.Qwen3Config(num_hidden_layers=1, hidden_size=32, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    config = load_config(None, {"model": str(tmp_path)})
    resolved = resolve_policy(config)
    assert config.data.prompt_image and config.algorithm.teacher_image  # the caller's config is untouched
    assert not resolved.data.prompt_image and not resolved.algorithm.teacher_image
    assert len(warnings_with(caplog, "text-only")) == 1
    caplog.clear()
    quiet = load_config(
        None, {"model": str(tmp_path), "data.prompt_image": "false", "algorithm.teacher_image": "false"}
    )
    assert resolve_policy(quiet) == quiet and not warnings_with(caplog, "text-only")


def test_an_uncached_hub_id_offline_is_a_one_line_config_error(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    run_dir = tmp_path / "run"
    assert main(["--model", "Qwen/Qwen3-VL-8B-Instruct", "--run.output_dir", str(run_dir)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and message.startswith("vsdpo train: config error: model.name:")
    assert "'Qwen/Qwen3-VL-8B-Instruct'" in message and str(cache) in message and "HF_HUB_OFFLINE" in message
    assert not run_dir.exists()  # it failed before the run did anything


@pytest.mark.parametrize(
    "name, expected",
    [
        ("./checkpoints/missing", "no folder ./checkpoints/missing"),
        (".", "is a folder but not a Hugging Face checkpoint"),
    ],
)
def test_a_folder_that_is_not_a_checkpoint_is_a_config_error(tmp_path, monkeypatch, capsys, name, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["--model", name, "--run.output_dir", str(tmp_path / "run")]) == 2
    assert expected in capsys.readouterr().err
