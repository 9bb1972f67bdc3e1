"""`vsdpo tiny-model OUT` (vsdpo.tiny.save_tiny_checkpoint): a small random Hugging Face checkpoint that
`from_pretrained` and `vsdpo train --model OUT` load like a downloaded one."""

from __future__ import annotations

import torch
import transformers

from vsdpo.cli import main
from vsdpo.tiny import save_tiny_checkpoint
from vsdpo.train.config import load_config
from vsdpo.train.model import load_policy, resolve_policy


def test_the_command_writes_a_qwen3_vl_checkpoint_the_trainer_loads(tmp_path, capsys):
    out = tmp_path / "tiny-qwen3-vl"
    assert main(["tiny-model", str(out), "--cache-dir", str(tmp_path / "cache"), "--seed", "3"]) == 0
    assert f"vsdpo train --model {out}" in capsys.readouterr().out
    model = transformers.AutoModelForImageTextToText.from_pretrained(out)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert model.config.text_config.hidden_size == 64 and model.config.text_config.num_hidden_layers == 2

    # What `vsdpo train --model OUT` does before its first step: resolve, then load the policy.
    config = resolve_policy(load_config(None, {"model": str(out), "run.cache_dir": str(tmp_path / "cache")}))
    policy, processor = load_policy(config, torch.device("cpu"))
    assert config.data.prompt_image and config.run.output_dir == "runs/tiny-qwen3-vl-chart"
    assert type(processor.tokenizer).__name__ in ("Qwen2Tokenizer", "Qwen2TokenizerFast")
    assert processor.image_processor.patch_size == 16
    assert all(
        torch.equal(a, b)
        for a, b in zip(policy.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_the_function_writes_a_text_only_model_too(tmp_path):
    folder = save_tiny_checkpoint(
        tmp_path / "qwen3", text_only=True, hidden_size=32, num_layers=1, cache_dir=tmp_path / "cache"
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "Qwen3ForCausalLM" and model.config.hidden_size == 32
    assert (
        tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    )


def test_a_size_the_architecture_cannot_take_is_refused(tmp_path, capsys):
    assert main(["tiny-model", str(tmp_path / "m"), "--hidden-size", "40"]) == 2
    assert "--hidden-size: expected a multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
