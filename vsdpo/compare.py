"""``vsdpo compare``: the base policy, ``grpo``, ``sdpo`` and ``vsdpo`` for equal steps over several
seeds, every run from the same base checkpoint (the warm start does not depend on the algorithm),
judged on held-out tasks.

    vsdpo compare --seeds 0,1,2 --run.max_steps 60 --output runs/compare
    python -m vsdpo.compare --algorithms grpo,vsdpo --seeds 0 --run.max_steps 2

Every run is ``python -m vsdpo.train`` in its own process, its log the run folder's ``train.log``,
with ``run.seed`` and ``algorithm.name`` set and the rest of the configuration shared (``--config``
and ``--KEY VALUE`` flags as for ``vsdpo train``). First one run of ``run.max_steps 0`` in
``OUTPUT/base`` makes the base policy (the cached warm start) and evaluates it; then the runs,
``--jobs`` at once, with ``eval.at_start false``: the step-0 evaluation would be the same in every
one of them (the same weights and sampling seed, and the training's random state is untouched by
an evaluation), so it is made once and heads each run's curve. Held-out evaluations come every 5
steps unless ``--eval.every`` says otherwise. Writes ``compare.json`` (the base evaluation, every
run's held-out curve and final numbers), ``compare.png`` (held-out reward over steps, mean and
spread over seeds) and prints the table with, against ``grpo``:

- the *paired* difference of the final held-out reward, each algorithm minus ``grpo`` of the same
  seed (the same base policy and data order), its mean over seeds and the standard error of that mean;
- *steps to reach*: per seed, the first evaluation step at which a run's held-out reward reaches the
  final reward of ``grpo`` of that seed (None when it never does), and their mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vsdpo.train.config import ConfigError, TrainConfig, load_config, parse_overrides

ALGORITHMS = ("grpo", "sdpo", "vsdpo")
FINAL_KEYS = (
    "reward",
    "teacher_gain",
    "teacher_gain_failed",
    "teacher_gain_flawed",
    "teacher_gain_matched",
    "execution_rate",
    "defect_rate",
)
BASELINE = "grpo"  # what the paired differences and the steps to reach are measured against
DEFAULTS = {"eval.every": "5"}  # a comparison's own defaults, unless a flag sets them


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="compare grpo / sdpo / vsdpo over seeds from one base policy, on held-out tasks",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Every other flag sets a configuration key of vsdpo train (docs/training.md).",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="YAML config file or packaged config name (default: the embedded tiny default)",
    )
    parser.add_argument(
        "--algorithms", default=",".join(ALGORITHMS), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", default="0,1,2", help="comma-separated run.seed values (default: %(default)s)"
    )
    parser.add_argument(
        "--output", default="runs/compare", help="folder of the runs, compare.json and compare.png"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process (default: %(default)s)"
    )
    parser.set_defaults(func=run_from_args, takes_overrides=True)
    return parser


def _int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{flag}: expected at least one integer >= 0, got {text!r}")
    return values


def plan(args: argparse.Namespace, extra: list[str]) -> tuple[list[str], list[int], dict[str, TrainConfig]]:
    """The algorithms, the seeds, and each run's validated configuration (before anything runs)."""
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown or not algorithms:
        raise ConfigError(f"--algorithms: expected some of {ALGORITHMS}, got {args.algorithms!r}")
    seeds = _int_list("--seeds", args.seeds)
    if args.jobs < 1:
        raise ConfigError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    overrides = parse_overrides(extra)
    for fixed in ("run.seed", "algorithm", "algorithm.name", "run.output_dir", "run.resume", "eval.at_start"):
        if fixed in overrides:
            raise ConfigError(f"{fixed}: set by vsdpo compare itself (use --algorithms, --seeds, --output)")
    configs = {}
    for algorithm in algorithms:
        for seed in seeds:
            run_dir = Path(args.output) / f"{algorithm}-seed{seed}"
            values = {
                **DEFAULTS,
                **overrides,
                "algorithm.name": algorithm,
                "run.seed": seed,
                "run.output_dir": str(run_dir),
            }
            configs[f"{algorithm}-seed{seed}"] = load_config(args.config, values)
    if any(c.eval.tasks == "none" for c in configs.values()):
        raise ConfigError("eval.tasks: vsdpo compare judges on held-out tasks; it cannot be 'none'")
    return algorithms, seeds, configs


def run_from_args(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        algorithms, seeds, configs = plan(args, extra)
    except ConfigError as error:
        print(f"vsdpo compare: config error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    names = list(configs)
    # The base policy (the cached warm start that every run loads), evaluated once for all of them.
    first = configs[names[0]]
    base_config = first.model_copy(
        update={"run": first.run.model_copy(update={"output_dir": str(output / "base")})}
    )
    base = run_one("base", base_config, args, extra, ["--run.max_steps", "0"])
    if base["exit_code"] != 0 or not base["eval"]:
        print(
            f"vsdpo compare: the base policy's run failed (exit {base['exit_code']}); see {output / 'base' / 'train.log'}",
            file=sys.stderr,
        )
        return 1
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = pool.map(lambda n: run_one(n, configs[n], args, extra, ["--eval.at_start", "false"]), names)
        runs = dict(zip(names, results, strict=True))
    for run in runs.values():
        run["eval"] = base["eval"][:1] + run["eval"]
    summary = summarise(runs, algorithms, seeds)
    (output / "compare.json").write_text(
        json.dumps({"summary": summary, "base": base, "runs": runs}, indent=1), encoding="utf-8"
    )
    plot(runs, summary, output / "compare.png")
    print(table(summary))
    print(f"written: {output / 'compare.json'}, {output / 'compare.png'}")
    failed = [name for name, run in runs.items() if run["exit_code"] != 0]
    if failed:
        print(
            f"vsdpo compare: {len(failed)} run(s) failed and are left out: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def run_one(
    name: str, config: TrainConfig, args: argparse.Namespace, extra: list[str], flags: list[str] = ()
) -> dict:
    """One ``vsdpo.train`` run in its own process (its output in ``run.output_dir``/train.log); ``flags``
    come last, over ``extra``."""
    log = logging.getLogger("vsdpo.compare")
    run_dir = Path(config.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    defaults = [
        part for key, value in DEFAULTS.items() if f"--{key}" not in extra for part in (f"--{key}", value)
    ]
    command = [
        sys.executable,
        "-m",
        "vsdpo.train",
        *(["--config", args.config] if args.config else []),
        *defaults,
        *extra,
        "--algorithm.name",
        config.algorithm.name,
        "--run.seed",
        str(config.run.seed),
        "--run.output_dir",
        str(run_dir),
        "--logging.progress",
        "false",
        *flags,
    ]
    log.info("run %s: %s", name, " ".join(command[1:]))
    start = time.perf_counter()
    with open(run_dir / "train.log", "w", encoding="utf-8") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
    wall_s = time.perf_counter() - start
    if code != 0:
        log.error("run %s failed (exit %d); see %s", name, code, run_dir / "train.log")
    else:
        log.info("run %s done in %.0f s", name, wall_s)
    return {
        "algorithm": config.algorithm.name,
        "seed": config.run.seed,
        "wall_s": wall_s,
        "exit_code": code,
        "eval": read_eval(run_dir),
    }


def read_eval(run_dir: Path) -> list[dict]:
    from vsdpo.train.logs import EVAL, read_records

    return read_records(run_dir, EVAL)


def _spread(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(runs: dict, algorithms: list[str], seeds: list[int]) -> dict:
    """Per row (the base policy, then each algorithm): mean and std over seeds of the final held-out
    numbers and the wall time."""
    rows = {}
    runs = {name: run for name, run in runs.items() if run.get("exit_code", 0) == 0 and run["eval"]}
    base = [run["eval"][0] for run in runs.values() if run["eval"][0]["step"] == 0]
    rows["base"] = {key: _spread([record.get(key) for record in base]) for key in FINAL_KEYS}
    rows["base"]["wall_s"] = _spread([])
    for algorithm in algorithms:
        finals = [run for run in runs.values() if run["algorithm"] == algorithm and run["eval"]]
        rows[algorithm] = {key: _spread([run["eval"][-1].get(key) for run in finals]) for key in FINAL_KEYS}
        rows[algorithm]["wall_s"] = _spread([run["wall_s"] for run in finals])
        rows[algorithm]["steps"] = max((run["eval"][-1]["step"] for run in finals), default=0)
    return {"seeds": seeds, "rows": rows, **against_baseline(runs, algorithms, seeds)}


def first_step_reaching(curve: list[dict], target: float) -> int | None:
    """The first evaluation step whose held-out reward is at least ``target``."""
    return next((record["step"] for record in curve if record["reward"] >= target), None)


def against_baseline(runs: dict, algorithms: list[str], seeds: list[int]) -> dict:
    """Paired differences of the final reward against ``grpo`` of the same seed, and steps to reach
    ``grpo``'s final reward (see the module docstring); empty without ``grpo`` runs."""
    by_key = {(run["algorithm"], run["seed"]): run["eval"] for run in runs.values() if run["eval"]}
    paired, reach = {}, {}
    for algorithm in algorithms:
        differences, steps = {}, {}
        for seed in seeds:
            baseline, curve = by_key.get((BASELINE, seed)), by_key.get((algorithm, seed))
            if not baseline or not curve:
                continue
            target = baseline[-1]["reward"]
            differences[seed] = curve[-1]["reward"] - target
            steps[seed] = first_step_reaching(curve, target)
        if algorithm != BASELINE and differences:
            values = list(differences.values())
            se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
            paired[f"{algorithm}-{BASELINE}"] = {
                "mean": statistics.fmean(values),
                "se": se,
                "n": len(values),
                "per_seed": differences,
            }
        if steps:
            reached = [s for s in steps.values() if s is not None]
            reach[algorithm] = {
                "per_seed": steps,
                "reached": len(reached),
                "n": len(steps),
                "mean": statistics.fmean(reached) if reached else None,
            }
    return {"paired": paired, "steps_to_reach": reach}


def table(summary: dict) -> str:
    def cell(stat: dict, digits: int = 3) -> str:
        return "—" if not stat["n"] else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    lines = [
        f"held-out, final step, mean ± std over seeds {summary['seeds']}",
        "| policy | reward | teacher gain | on failed | on flawed | on matched | execution rate | defect rate | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["rows"].items():
        cells = [cell(row[k]) for k in FINAL_KEYS] + [cell(row["wall_s"], 0)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, stat in summary.get("paired", {}).items():
        seeds = ", ".join(f"{seed}: {value:+.3f}" for seed, value in stat["per_seed"].items())
        lines.append(
            f"{name}, paired over {stat['n']} seeds: {stat['mean']:+.3f} ± {stat['se']:.3f} (se); {seeds}"
        )
    for name, stat in summary.get("steps_to_reach", {}).items():
        mean = "never" if stat["mean"] is None else f"{stat['mean']:.1f}"
        seeds = ", ".join(f"{seed}: {step}" for seed, step in stat["per_seed"].items())
        lines.append(
            f"{name} reaches {BASELINE}'s final reward: {stat['reached']}/{stat['n']} seeds, mean step {mean}; {seeds}"
        )
    return "\n".join(lines)


def plot(runs: dict, summary: dict, path: Path) -> None:
    """Held-out reward over steps: per algorithm, the mean over seeds with a band of one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    base = summary["rows"]["base"]["reward"]
    if base["n"]:
        ax.axhline(base["mean"], color="gray", linestyle="--", label=f"base {base['mean']:.3f}")
    for algorithm in [name for name in summary["rows"] if name != "base"]:
        curves = [run["eval"] for run in runs.values() if run["algorithm"] == algorithm and run["eval"]]
        steps = sorted({record["step"] for curve in curves for record in curve})
        means, stds = [], []
        for step in steps:
            values = [r["reward"] for curve in curves for r in curve if r["step"] == step]
            means.append(statistics.fmean(values))
            stds.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
        line = ax.plot(steps, means, marker="o", markersize=3, label=algorithm)[0]
        ax.fill_between(
            steps,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            color=line.get_color(),
            alpha=0.2,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("held-out reward")
    ax.set_title(f"held-out reward, mean ± std over seeds {summary['seeds']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vsdpo.compare")
    add_parser(parser.add_subparsers(dest="command"))
    args, extra = parser.parse_known_args(["compare", *(sys.argv[1:] if argv is None else argv)])
    return run_from_args(args, extra)


if __name__ == "__main__":
    sys.exit(main())
