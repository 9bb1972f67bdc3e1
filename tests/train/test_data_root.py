"""Relative task paths resolve against $VSDPO_DATA_ROOT (default: the current folder); a missing one
is a config error that names the key, the path looked at and the variable."""

from __future__ import annotations

import json

import pytest
import yaml

from vsdpo.tasks import data_root, load_tasks
from vsdpo.train.config import CONFIG_DIR, ConfigError, load_config
from vsdpo.train.data import prepare_tasks

CHART = "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\n"


@pytest.fixture
def data(tmp_path):
    """A data root with a folder of two chart programs and a task file."""
    root = tmp_path / "data"
    (root / "charts").mkdir(parents=True)
    for name in ("a", "b"):
        (root / "charts" / f"{name}.py").write_text(CHART)
    (root / "tasks.jsonl").write_text(json.dumps({"prompt": "Plot it.", "reference": CHART}) + "\n")
    return root


def test_relative_paths_resolve_against_the_data_root(data, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("VSDPO_DATA_ROOT", str(data))
    assert data_root() == data
    assert [task.id for task in load_tasks("dir:charts")] == ["a", "b"]
    assert len(load_tasks("tasks.jsonl")) == 1
    assert len(load_tasks(f"dir:{data / 'charts'}")) == 2  # an absolute path is taken as it is


def test_without_the_variable_the_current_folder_is_the_root(data, monkeypatch):
    monkeypatch.delenv("VSDPO_DATA_ROOT", raising=False)
    monkeypatch.chdir(data)
    assert data_root() == data
    assert len(load_tasks("dir:charts")) == 2


def test_a_missing_folder_names_the_key_the_path_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("VSDPO_DATA_ROOT", str(tmp_path))
    config = load_config(None, {"data.tasks": "dir:chartmimic"})
    with pytest.raises(ConfigError) as error:
        prepare_tasks(config, render_pool=None)  # fails before any render
    message = str(error.value)
    assert message.startswith("data.tasks: 'dir:chartmimic': no folder")
    assert str(tmp_path / "chartmimic") in message and f"VSDPO_DATA_ROOT={tmp_path}" in message


def test_a_missing_task_file_says_the_root_is_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("VSDPO_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"'pages\.jsonl': no task file .*pages\.jsonl .*VSDPO_DATA_ROOT unset"
    ):
        load_tasks("pages.jsonl", kind="web")


@pytest.mark.parametrize(
    "name, folder", [("qwen3vl_8b_chart", "chartmimic"), ("qwen3vl_8b_web", "design2code")]
)
def test_packaged_configs_name_their_data_under_the_root(name, folder):
    path = CONFIG_DIR / f"{name}.yaml"
    assert yaml.safe_load(path.read_text())["data"]["tasks"] == f"dir:{folder}"
    text = path.read_text()
    assert "VSDPO_DATA_ROOT" in text and ("Apache-2.0" in text or "ODC-By" in text)
