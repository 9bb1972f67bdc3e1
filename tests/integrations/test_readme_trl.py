"""The README's TRL example runs as written (one step instead of ten) on the tiny Qwen3-VL checkpoint
that `vsdpo tiny-model tiny-qwen3-vl` writes, on a CPU: bf16 off, the processor loaded without
torchvision, the dataset built inline."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

pytest.importorskip("trl")

README = Path(__file__).resolve().parents[2] / "README.md"


def trl_example() -> str:
    """The python block of the README's "### With TRL" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### With TRL\n") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return block


@pytest.mark.slow
def test_the_readme_trl_example_trains(tmp_path, monkeypatch, qwen3_vl_folder):
    code = trl_example()
    assert code.count("max_steps=10,") == 1 and 'model="tiny-qwen3-vl"' in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-qwen3-vl").symlink_to(qwen3_vl_folder)  # what `vsdpo tiny-model tiny-qwen3-vl` writes
    namespace: dict = {"__name__": "readme_trl_example"}
    exec(compile(code.replace("max_steps=10,", "max_steps=1,"), str(README), "exec"), namespace)

    trainer = namespace["trainer"]
    assert trainer.state.global_step == 1
    logged = trainer.state.log_history[-1]  # one step, under logging_steps: the end-of-training record
    assert math.isfinite(logged["train_loss"]) and logged["sdpo/sd_loss"] > 0
    assert len(namespace["dataset"]) == 8 and (tmp_path / "out").is_dir()
