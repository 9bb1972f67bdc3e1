"""What the teacher's second attempts do, read from a run's held-out evaluations.

    .venv/bin/python bench/teacher_attempts.py RUN_DIR [RUN_DIR ...] [--json OUT.json]

Every evaluation writes its attempts to ``RUN_DIR/eval/step-NNNN.jsonl``: the first attempt, and the
second one sampled with the feedback on the first (the teacher's context). Per evaluation step and per
outcome of the first attempt (``failed``, ``flawed``: ran with a difference from the target or a
defect, ``matched``: ran with neither; the split of ``vsdpo.train.evaluate``), over every run given:

- **gain**: the second attempt's reward minus the first's (the logged teacher gain of that split);
- **second failed**: second attempts that did not run, and the gain over the others;
- **line similarity**: ``difflib`` ratio between the lines of the two programs (1: the second copies
  the first), and how many are identical;
- **colours repaired**: of the differences "... colour #RRGGBB (name) should be #RRGGBB (name)" in
  the feedback, those whose wanted colour name the second attempt writes. No prompt names a colour,
  so on a held-out task the feedback is where it is learnt (about 1 in 9 by chance: nine colours);
- **cuts repaired**: of the first attempts with text cut by the canvas edge (a ``clipped_text``
  defect), those whose second attempt runs with none.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

WANTED_COLOUR = re.compile(r"colour #[0-9A-Fa-f]{6} \([^)]*\) should be #[0-9A-Fa-f]{6} \(([^)]+)\)")


def colours_repaired(attempts: list[dict]) -> tuple[int, int]:
    """(wanted colours the second attempts write, wanted colours named in the feedback)."""
    named = repaired = 0
    for attempt in attempts:
        for difference in attempt["differences"] or []:
            match = WANTED_COLOUR.search(difference)
            if match:
                named += 1
                repaired += f"'{match.group(1)}'" in attempt["second"]["program"]
    return repaired, named


def cut(defects: list[str]) -> bool:
    return any(defect.startswith("clipped_text") for defect in defects or [])


def cuts_repaired(attempts: list[dict]) -> tuple[int, int]:
    """(second attempts that run without the cut, first attempts with text cut by the edge)."""
    cuts = [a for a in attempts if a["ran"] and cut(a["defects"])]
    return sum(a["second"]["ran"] and not cut(a["second"]["defects"]) for a in cuts), len(cuts)


def outcome(attempt: dict) -> str:
    if not attempt["ran"]:
        return "failed"
    return "flawed" if attempt["defects"] or attempt["differences"] else "matched"


def split(run_dirs: list[Path]) -> dict[int, dict[str, dict]]:
    """Per step, per outcome: the numbers of the module docstring."""
    groups: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run_dir in run_dirs:
        files = sorted((run_dir / "eval").glob("step-*.jsonl"))
        if not files:
            raise FileNotFoundError(f"{run_dir}: no eval/step-*.jsonl (a run with eval.teacher_gain)")
        for path in files:
            step = int(path.stem.split("-")[1])
            for line in path.read_text(encoding="utf-8").splitlines():
                attempt = json.loads(line)
                if "second" in attempt:
                    groups[step][outcome(attempt)].append(attempt)
    table: dict[int, dict[str, dict]] = {}
    for step in sorted(groups):
        table[step] = {}
        for name in ("failed", "flawed", "matched"):
            attempts = groups[step].get(name, [])
            if not attempts:
                continue
            second_ran = [a for a in attempts if a["second"]["ran"]]
            similarity = [
                difflib.SequenceMatcher(
                    None, a["program"].splitlines(), a["second"]["program"].splitlines()
                ).ratio()
                for a in attempts
            ]
            table[step][name] = {
                "n": len(attempts),
                "first_reward": statistics.fmean(a["reward"] for a in attempts),
                "second_reward": statistics.fmean(a["second"]["reward"] for a in attempts),
                "gain": statistics.fmean(a["second"]["reward"] - a["reward"] for a in attempts),
                "second_failed": len(attempts) - len(second_ran),
                "gain_when_second_ran": (
                    statistics.fmean(a["second"]["reward"] - a["reward"] for a in second_ran)
                    if second_ran
                    else None
                ),
                "line_similarity": statistics.fmean(similarity),
                "identical": sum(a["program"] == a["second"]["program"] for a in attempts),
                "colours_repaired": colours_repaired(attempts),
                "cuts_repaired": cuts_repaired(attempts),
            }
    return table


def render_table(table: dict[int, dict[str, dict]]) -> str:
    lines = [
        "| step | first attempt | n | first | second | gain | second failed | gain when second ran | line similarity | identical | colours repaired | cuts repaired |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step, rows in table.items():
        for name, row in rows.items():
            when_ran = "—" if row["gain_when_second_ran"] is None else f"{row['gain_when_second_ran']:+.3f}"
            repaired, named = row["colours_repaired"]
            fixed, cuts = row["cuts_repaired"]
            lines.append(
                f"| {step} | {name} | {row['n']} | {row['first_reward']:.3f} | {row['second_reward']:.3f} | "
                f"{row['gain']:+.3f} | {row['second_failed']} | {when_ran} | {row['line_similarity']:.2f} | "
                f"{row['identical']} | {repaired}/{named} | {fixed}/{cuts} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with eval/step-*.jsonl)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        table = split(args.runs)
    except FileNotFoundError as error:
        print(f"teacher_attempts: {error}", file=sys.stderr)
        return 2
    print(render_table(table))
    if args.json is not None:
        record = {"command": " ".join(["bench/teacher_attempts.py", *map(str, args.runs)]), "split": table}
        args.json.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
