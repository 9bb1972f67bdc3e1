"""`vsdpo export RUN_DIR OUT`: the newest complete checkpoint of a run as a Hugging Face checkpoint that
`from_pretrained` loads back with the very weights, tokenizer and logits the run had."""

from __future__ import annotations

import pytest
import torch
import transformers
from PIL import Image

from vsdpo.cli import main
from vsdpo.train import checkpoint
from vsdpo.train.loop import prepare_run_dir
from vsdpo.train.model import load_policy, load_processor
from vsdpo.train.update import build_optimizer

from .tiny_run import tiny_config

MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Write this chart's code."}]}
]


def save_step(config, run_dir, model, step: int, seed: int) -> None:
    """Move every weight (so that a rebuilt model would differ) and save ``checkpoint-<step>`` as the loop does."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    optimizer, scheduler = build_optimizer(model, config)
    checkpoint.save_checkpoint(
        run_dir, step, model=model, optimizer=optimizer, scheduler=scheduler, trainer_state={}, keep=0
    )


def make_run(tmp_path, **overrides):
    """A run folder as the trainer leaves it: config.yaml, checkpoint-1 and -2, and a checkpoint-3 cut
    short (no completion marker); returns (run_dir, model as of step 2, processor)."""
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, tmp_path / "cache", **overrides)
    prepare_run_dir(config)
    model, processor = load_policy(config, torch.device("cpu"))
    save_step(config, run_dir, model, 1, seed=1)
    save_step(config, run_dir, model, 2, seed=2)
    (run_dir / "checkpoint-3").mkdir()
    torch.save({}, run_dir / "checkpoint-3" / "model.pt")
    return run_dir, model.eval(), processor


def test_the_tiny_default_exports_to_a_checkpoint_with_identical_logits(tmp_path, capsys):
    run_dir, trained, processor = make_run(tmp_path)
    out = tmp_path / "export"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert "checkpoint-2" in capsys.readouterr().out

    model_config = transformers.AutoConfig.from_pretrained(out)
    assert model_config.model_type == "qwen3_vl"
    exported = transformers.AutoModelForImageTextToText.from_pretrained(out).eval()
    loaded = load_processor(str(out), model_config)  # AutoProcessor less its video part without torchvision
    assert loaded.tokenizer.eos_token == processor.tokenizer.eos_token
    assert loaded.tokenizer.pad_token == processor.tokenizer.pad_token
    text = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert loaded.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False) == text
    image = Image.new("RGB", (100, 80), "navy")
    ours = processor(text=[text], images=[image], return_tensors="pt")
    theirs = loaded(text=[text], images=[image], return_tensors="pt")
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    with torch.no_grad():
        assert torch.equal(exported(**theirs).logits, trained(**ours).logits)
    assert exported.generation_config.eos_token_id == trained.generation_config.eos_token_id


def test_an_earlier_step_and_a_text_only_model(tmp_path, qwen3_folder, capsys):
    run_dir, trained, tokenizer = make_run(tmp_path, **{"model.name": str(qwen3_folder)})
    out = tmp_path / "export"
    assert main(["export", str(run_dir), str(out), "--step", "3"]) == 2  # cut short: not complete
    assert "step: no complete checkpoint-3 in" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(out), "--step", "1"]) == 0
    step_1 = torch.load(run_dir / "checkpoint-1" / "model.pt", weights_only=True)
    exported = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert all(torch.equal(exported.state_dict()[key], value) for key, value in step_1.items())
    assert (
        transformers.AutoTokenizer.from_pretrained(out)("plt.plot(x)").input_ids
        == tokenizer("plt.plot(x)").input_ids
    )

    assert main(["export", str(run_dir), str(tmp_path / "latest")]) == 0
    latest = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "latest").eval()
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    with torch.no_grad():
        assert torch.equal(latest(ids).logits, trained(ids).logits)


@pytest.mark.parametrize(
    "prepare, arguments, expected",
    [
        (lambda run: None, [], "expected a run folder of vsdpo train"),
        (lambda run: run.mkdir(), [], "it has no config.yaml"),
        (
            lambda run: (run.mkdir(), (run / "config.yaml").write_text("run:\n  seed: 1\n")),
            [],
            "no complete checkpoint in",
        ),
    ],
)
def test_what_cannot_be_exported_is_said_in_one_line(tmp_path, capsys, prepare, arguments, expected):
    run_dir = tmp_path / "run"
    prepare(run_dir)
    assert main(["export", str(run_dir), str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("vsdpo export: error: run_dir:") and expected in error
    assert not (tmp_path / "out").exists()
