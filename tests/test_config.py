"""TrainConfig: YAML loading, --key value overrides, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsdpo.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config, parse_overrides, save_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_embedded_default_loads_and_is_the_tiny_model():
    config = load_config()
    assert config.model == "tiny" and config.algorithm == "vsdpo" and config.warmstart_steps > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)


def test_overrides_win_over_the_file_and_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 5\nalgorithm: sdpo\nlearning_rate: 1e-5\n")
    argv = [
        "--max_steps",
        "7",
        "--output_dir=/tmp/x",
        "--algorithm",
        "grpo",
        "--seed",
        "3",
        "--resume",
        "--beta",
        "0",
    ]
    config = load_config(path, parse_overrides(argv))
    assert (config.max_steps, config.output_dir, config.algorithm, config.seed) == (7, "/tmp/x", "grpo", 3)
    assert config.resume is True and config.beta == 0.0 and config.learning_rate == 1e-5


def test_lists_and_mappings_from_the_command_line():
    config = load_config(
        None, {"reward_funcs": "a.b:f, c:g", "reward_weights": "{executable: 1.0, defects: 0.5}"}
    )
    assert config.reward_funcs == ["a.b:f", "c:g"]
    assert config.reward_weights == {"executable": 1.0, "defects": 0.5}


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"max_stpes": "3"}, "max_stpes"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"max_steps": "three"}, "max_steps"),
        ({"max_steps": "0"}, "max_steps"),
        ({"resume": "maybe"}, "resume"),
        ({"top_p": "1.5"}, "top_p"),
        ({"scale_rewards": "rank"}, "scale_rewards"),
        ({"teacher": "frozen"}, "teacher"),
        ({"reward_funcs": "no_colon"}, "reward_funcs"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert str(error.value).startswith(f"{key}:")


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learnign_rate: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"learnign_rate: unknown config key in .*c\.yaml; did you mean 'learning_rate'"
    ):
        load_config(path)


def test_round_trip_through_yaml(tmp_path):
    config = load_config(None, {"seed": "9", "algorithm": "sdpo", "reward_weights": "{defects: 1}"})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_bare_value_without_flag_is_an_error():
    with pytest.raises(ConfigError, match="bare value"):
        parse_overrides(["3"])


def test_default_file_exists():
    assert DEFAULT_CONFIG.is_file()


def test_dataclass_defaults_are_the_embedded_default_file():
    assert load_config(DEFAULT_CONFIG) == TrainConfig()
