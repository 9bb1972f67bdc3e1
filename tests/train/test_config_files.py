"""`--config` finds a YAML file by path, or a config shipped in the package by name."""

from __future__ import annotations

import pytest

from vsdpo.train.cli import main
from vsdpo.train.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    ConfigError,
    find_config,
    load_config,
    packaged_configs,
)


def test_the_packaged_configs_live_inside_the_package():
    assert packaged_configs() == ["qwen3vl_8b_chart", "qwen3vl_8b_slides", "qwen3vl_8b_web", "tiny_chart"]
    assert DEFAULT_CONFIG.parent == CONFIG_DIR and CONFIG_DIR.parent.name == "vsdpo"


@pytest.mark.parametrize(
    "spelling",
    ["qwen3vl_8b_web", "qwen3vl_8b_web.yaml", "configs/qwen3vl_8b_web.yaml", "configs/qwen3vl_8b_web"],
)
def test_a_packaged_config_by_name(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)  # away from any checkout
    assert find_config(spelling) == CONFIG_DIR / "qwen3vl_8b_web.yaml"
    config = load_config(spelling)
    assert config.data.kind == "web" and config.model.name == "Qwen/Qwen3-VL-8B-Instruct"


def test_a_file_that_exists_wins_over_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    mine = tmp_path / "configs" / "qwen3vl_8b_web.yaml"
    mine.write_text("run:\n  seed: 7\n")
    assert find_config("configs/qwen3vl_8b_web.yaml") == mine.relative_to(tmp_path)
    assert load_config("configs/qwen3vl_8b_web.yaml").run.seed == 7
    assert load_config("qwen3vl_8b_web").data.kind == "web"  # no file of that bare name here


def test_an_unknown_name_lists_the_packaged_configs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"'qwen3vl_8b_charts' is neither a file nor a packaged config; "
        r"packaged configs: qwen3vl_8b_chart, qwen3vl_8b_slides, ",
    ):
        load_config("qwen3vl_8b_charts")
    with pytest.raises(ConfigError, match=r"cannot read .*elsewhere/c\.yaml: no such file .*tiny_chart"):
        load_config(tmp_path / "elsewhere" / "c.yaml")
    assert main(["--config", "nope"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'nope'" in error and "qwen3vl_8b_chart" in error
