"""Non-finite numbers in the training config are refused with one line naming the key, exit code 2."""

from __future__ import annotations

import math

import pytest

from vsdpo.cli import main
from vsdpo.train.config import ConfigError, load_config
from vsdpo_kernels import SDPOLossConfig


@pytest.mark.parametrize(
    "key, value",
    [
        ("rollout.render_timeout_s", "inf"),
        ("rollout.render_timeout_s", "nan"),
        ("rollout.temperature", "inf"),
        ("optimizer.learning_rate", "-inf"),
        ("algorithm.loss.sd_weight", "inf"),
        ("algorithm.loss.epsilon_high", "inf"),
        ("algorithm.loss.kl_beta", "nan"),
    ],
)
def test_non_finite_values_name_their_key(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}: .*finite.*{value}"):
        load_config(None, {key: value})


def test_non_finite_values_in_a_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("rollout:\n  render_timeout_s: .inf\n")
    with pytest.raises(ConfigError, match=r"^rollout.render_timeout_s: .*finite"):
        load_config(path)


def test_vsdpo_train_exits_2_with_one_line(capsys, tmp_path):
    code = main(["train", "--rollout.render_timeout_s", "inf", "--run.output_dir", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "rollout.render_timeout_s" in lines[0] and "inf" in lines[0], captured.err
    assert not (tmp_path / "run").exists()  # refused before the run started


@pytest.mark.parametrize(
    "field", ["beta", "temperature", "sd_weight", "pg_weight", "epsilon_low", "epsilon_high", "kl_beta"]
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_the_loss_config_refuses_non_finite_floats(field, value):
    with pytest.raises(ValueError, match=rf"SDPOLossConfig.{field}: expected a finite number, got {value!r}"):
        SDPOLossConfig(**{field: value})


def test_the_loss_config_refuses_an_infinite_completion_length():
    with pytest.raises(ValueError, match=r"SDPOLossConfig.max_completion_length: expected a positive int"):
        SDPOLossConfig(max_completion_length=math.inf)
