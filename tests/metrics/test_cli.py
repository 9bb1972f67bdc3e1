"""`vsdpo eval` on the shared ChartMimic and Design2Code data."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from vsdpo.metrics import cli

CHARTMIMIC = Path("/work/shared/data/chartmimic")
DESIGN2CODE = Path("/work/shared/data/design2code")


def run_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vsdpo")
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


@pytest.mark.slow
def test_eval_chart_references_against_themselves(tmp_path, capsys):
    refs = tmp_path / "refs"
    preds = tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    for name in ("bar_1.py", "line_1.py", "pie_1.py"):
        shutil.copy(CHARTMIMIC / name, refs / name)
    shutil.copy(CHARTMIMIC / "bar_1.py", preds / "bar_1.py")
    shutil.copy(CHARTMIMIC / "line_1.py", preds / "line_1.py")
    (preds / "pie_1.py").write_text("raise SystemExit('no chart')\n")
    out = tmp_path / "scores.json"
    assert run_eval(["--kind", "chart", str(preds), str(refs), "--json", str(out), "--workers", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3 and report["n_failed"] == 1
    assert report["files"]["bar_1.py"]["mean"] == 1.0
    assert report["files"]["pie_1.py"]["mean"] == 0.0
    assert report["means"]["text"] == pytest.approx(2 / 3)
    printed = capsys.readouterr().out
    assert "mean" in printed and "bar_1.py" in printed


def test_pairs_by_name_and_missing_prediction_scores_zero(tmp_path):
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    (refs / "a.py").write_text("x")
    (refs / "b.py").write_text("x")
    (refs / "notes.txt").write_text("x")
    (preds / "a.py").write_text("x")
    pairs = cli.pair_files(preds, refs, "chart")
    assert [(name, pred is not None) for name, pred, _ in pairs] == [("a.py", True), ("b.py", False)]
    row = cli.score_pair("chart", None, refs / "b.py", timeout_s=5, clip=None)
    assert row["mean"] == 0.0 and not row["ok"]
    with pytest.raises(NotADirectoryError, match="pred_dir"):
        cli.pair_files(tmp_path / "missing", refs, "chart")


@pytest.mark.browser
@pytest.mark.slow
def test_eval_web_pages_against_themselves(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("1002.html", "9719.html"):
        shutil.copy(DESIGN2CODE / name, refs / name)
    shutil.copy(DESIGN2CODE / "rick.jpg", refs / "rick.jpg")
    report = cli.evaluate("web", refs, refs, workers=2, progress=False)
    assert report["n"] == 2
    for column in ("block", "text", "position", "color"):
        assert report["means"][column] == 1.0
    assert report["means"]["clip"] is None
