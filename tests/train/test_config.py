"""TrainConfig: nested YAML, dotted --key value overrides, errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsdpo.train.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    KEYS,
    ConfigError,
    TrainConfig,
    load_config,
    markdown_table,
    parse_overrides,
    save_config,
)
from vsdpo_kernels import SDPOLossConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_embedded_default_loads_and_is_the_tiny_model():
    config = load_config()
    assert config.model.name == "tiny" and config.algorithm.name == "vsdpo" and config.warmstart.steps > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    assert isinstance(load_config(path), TrainConfig)


def test_the_loss_section_is_the_kernels_config():
    config = load_config(None, {"algorithm.loss.beta": "0.25", "rollout.temperature": "0.7"})
    assert isinstance(config.algorithm.loss, SDPOLossConfig) and config.algorithm.loss.beta == 0.25
    loss = config.loss_config()  # the sampling temperature, dr_grpo's normaliser from max_new_tokens
    assert (loss.temperature, loss.max_completion_length) == (0.7, config.rollout.max_new_tokens)
    assert load_config(None, {"algorithm": "grpo"}).loss_config().sd_weight == 0.0


def test_overrides_win_over_the_file_and_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  max_steps: 5\nalgorithm: sdpo\noptimizer:\n  learning_rate: 1e-5\n")
    argv = [
        "--run.max_steps",
        "7",
        "--run.output_dir=/tmp/x",
        "--algorithm",
        "grpo",
        "--run.seed",
        "3",
        "--run.resume",
        "--algorithm.loss.beta",
        "0",
        "--model",
        "some/folder",
    ]
    config = load_config(path, parse_overrides(argv))
    assert (config.run.max_steps, config.run.output_dir, config.algorithm.name, config.run.seed) == (
        7,
        "/tmp/x",
        "grpo",
        3,
    )
    assert config.run.resume is True and config.algorithm.loss.beta == 0.0
    assert config.optimizer.learning_rate == 1e-5 and config.model.name == "some/folder"


def test_a_section_name_and_its_keys_combine():
    config = load_config(None, {"algorithm": "sdpo", "algorithm.teacher": "ema"})
    assert (config.algorithm.name, config.algorithm.teacher) == ("sdpo", "ema")


def test_lists_mappings_and_nulls_from_the_command_line():
    config = load_config(
        None,
        {
            "reward.funcs": "a.b:f, c:g",
            "reward.weights": "{executable: 1.0, defects: 0.5}",
            "data.image_max_pixels": "null",
            "rollout.max_new_tokens": "1e2",
        },
    )
    assert config.reward.funcs == ["a.b:f", "c:g"]
    assert config.reward.weights == {"executable": 1.0, "defects": 0.5}
    assert config.data.image_max_pixels is None and config.rollout.max_new_tokens == 100


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"run.max_stpes": "3"}, "run.max_stpes"),
        ({"algorithm": "ppo"}, "algorithm.name"),
        ({"run.max_steps": "three"}, "run.max_steps"),
        ({"run.max_steps": "-1"}, "run.max_steps"),
        ({"run.resume": "maybe"}, "run.resume"),
        ({"rollout.top_p": "1.5"}, "rollout.top_p"),
        ({"reward.scale_rewards": "rank"}, "reward.scale_rewards"),
        ({"algorithm.teacher": "frozen"}, "algorithm.teacher"),
        ({"reward.funcs": "no_colon"}, "reward.funcs"),
        ({"reward.weights": "{speed: 1}"}, "reward.weights"),
        ({"algorithm.loss.beta": "2"}, "algorithm.loss"),
        ({"algorithm.loss.epsilon_low": "-1"}, "algorithm.loss"),
        ({"run.cpu_threads": "-3"}, "run.cpu_threads"),
        ({"data.num_builtin_tasks": "0"}, "data.num_builtin_tasks"),
        ({"rollout.num_generations": "1"}, "rollout.num_generations"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert str(error.value).startswith(f"{key}:")


@pytest.mark.parametrize(
    ("old", "new"),
    [("max_steps", "run.max_steps"), ("beta", "algorithm.loss.beta"), ("warmstart_steps", "warmstart.steps")],
)
def test_a_key_without_its_section_names_the_key(old, new):
    with pytest.raises(
        ConfigError, match=rf"^{old}: unknown config key in the command line; did you mean '{new}'\?"
    ):
        load_config(None, {old: "1"})


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  learnign_rate: 0.1\n")
    with pytest.raises(
        ConfigError,
        match=r"optimizer.learnign_rate: unknown config key in .*c\.yaml; did you mean 'optimizer.learning_rate'",
    ):
        load_config(path)


@pytest.mark.parametrize(
    "text, message", [("run: [1, 2\n", "not valid YAML"), ("- 1\n", "expected a mapping")]
)
def test_bad_files_are_config_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_yaml(tmp_path):
    config = load_config(None, {"run.seed": "9", "algorithm": "sdpo", "reward.weights": "{defects: 1}"})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_bare_value_without_flag_is_an_error():
    with pytest.raises(ConfigError, match="bare value"):
        parse_overrides(["3"])


def test_defaults_are_the_embedded_default_file():
    assert DEFAULT_CONFIG.is_file() and load_config(DEFAULT_CONFIG) == TrainConfig()


def test_every_key_is_documented():
    documented = (ROOT / "docs" / "training.md").read_text()
    assert all(f"`{key}`" in documented for key in KEYS)
    assert markdown_table() in documented  # the reference table is the generated one
