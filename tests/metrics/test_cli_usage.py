"""`vsdpo eval` misuse: one line on stderr and exit code 2, checked before anything is scored."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vsdpo.cli import main
from vsdpo.metrics import cli


@pytest.fixture
def folders(tmp_path):
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    (refs / "a.py").write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n")
    (preds / "a.py").write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n")
    return preds, refs


@pytest.fixture
def no_scoring(monkeypatch):
    """Any scoring at all fails the test: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("scored before the command line was checked")

    monkeypatch.setattr(cli, "score_pair", refuse)
    monkeypatch.setattr(cli, "evaluate", refuse)


def one_line_error(capsys, argv):
    code = main(["eval", "--kind", "chart", *argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("vsdpo eval: error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_a_missing_prediction_folder(capsys, folders, no_scoring):
    preds, refs = folders
    line = one_line_error(capsys, [str(preds.parent / "nowhere"), str(refs)])
    assert "PRED_DIR" in line and "nowhere" in line and "no such folder" in line


def test_a_file_given_as_the_reference_folder(capsys, folders, no_scoring):
    preds, refs = folders
    line = one_line_error(capsys, [str(preds), str(refs / "a.py")])
    assert "REF_DIR" in line and "a.py" in line and "not a folder" in line


def test_json_into_a_missing_folder_is_refused_before_scoring(capsys, folders, no_scoring):
    preds, refs = folders
    out = preds.parent / "missing" / "scores.json"
    line = one_line_error(capsys, [str(preds), str(refs), "--json", str(out)])
    assert "--json" in line and "does not exist" in line and str(out.parent) in line


def test_json_onto_a_folder_is_refused(capsys, folders, no_scoring):
    preds, refs = folders
    line = one_line_error(capsys, [str(preds), str(refs), "--json", str(refs)])
    assert "--json" in line and "is a folder" in line


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--limit", "-1"], "--limit: expected a number of pairs >= 1, got -1"),
        (["--limit", "0"], "--limit: expected a number of pairs >= 1, got 0"),
        (["--workers", "0"], "--workers: expected"),
        (["--timeout", "inf"], "--timeout: expected seconds in (0, 3600], got inf"),
        (["--timeout", "nan"], "--timeout: expected seconds in (0, 3600], got nan"),
        (["--timeout", "-5"], "--timeout: expected seconds in (0, 3600], got -5"),
    ],
)
def test_numbers_out_of_range(capsys, folders, no_scoring, flags, expected):
    preds, refs = folders
    line = one_line_error(capsys, [str(preds), str(refs), *flags])
    assert expected in line


def test_evaluate_refuses_a_negative_limit(folders):
    preds, refs = folders
    with pytest.raises(ValueError, match=r"limit: expected a number of pairs >= 0 or None, got -1"):
        cli.evaluate("chart", preds, refs, limit=-1, progress=False)


def test_the_process_exits_with_code_2(folders):
    preds, refs = folders
    argv = [sys.executable, "-m", "vsdpo", "eval", "--kind", "chart", str(preds), str(refs), "--limit", "-1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "vsdpo eval: error: --limit: expected a number of pairs >= 1, got -1"
    ]
