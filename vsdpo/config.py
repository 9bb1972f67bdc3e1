"""The trainer's configuration: one flat dataclass, loaded from YAML, overridden by ``--key value``.

    vsdpo train --config configs/qwen3vl_8b_chart.yaml --max_steps 100 --algorithm sdpo

Every field below is a YAML key and a command-line flag of the same name. A value on the command
line wins over the file, the file over the defaults. The defaults are the embedded default (a tiny
Qwen3-VL on built-in charts), which ``configs/tiny_chart.yaml`` spells out.
Unknown keys and bad values raise ``ConfigError`` naming the key, the expected and the received value.
Booleans take ``true``/``false`` (a bare ``--resume`` means ``true``); ``None`` fields take ``null``.
The full reference with each key's meaning is ``docs/training.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALGORITHMS = ("vsdpo", "sdpo", "grpo")
TEACHERS = ("live", "ema")
SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
DTYPES = ("float32", "bfloat16", "float16", "auto")
LR_SCHEDULERS = ("constant_with_warmup", "linear", "cosine")
OLD_LOGPROBS = ("detached", "behaviour")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny_chart.yaml"


class ConfigError(ValueError):
    """A bad configuration key or value; the message names the key."""


@dataclass
class TrainConfig:
    # --- run
    run_name: str = "tiny-chart"
    output_dir: str = "runs/tiny-chart"  # the run directory: config, logs, plots, samples, checkpoints
    seed: int = 0
    max_steps: int = 24
    resume: bool = False  # continue from the newest checkpoint in output_dir
    cache_dir: str = "~/.cache/vsdpo"  # tokenizer, target images, warm-start weights (keyed by config)
    cpu_threads: int = (
        1  # torch intra-op threads on a CPU run; 0 keeps torch's default (tiny models run best on 1)
    )

    # --- model
    model: str = "tiny"  # "tiny" (embedded random Qwen3-VL), a hub id or a local path
    dtype: str = "float32"
    attn_implementation: str = "auto"  # "auto": flash_attention_2 when installed on a GPU, else sdpa
    gradient_checkpointing: bool = False
    use_liger_kernel: bool = False  # Liger's RMSNorm/RoPE/SwiGLU patches (GPU only)
    tiny_hidden_size: int = 64
    tiny_num_layers: int = 2

    # --- tasks
    task_kind: str = "chart"
    tasks: str = "builtin:charts"  # or a JSONL task file (see vsdpo.tasks)
    num_builtin_tasks: int = 64
    prompt_image: bool = True  # show the target image with the prompt
    image_max_pixels: int | None = None  # cap on image pixels (the processor's own when None; tiny: 128x96)

    # --- supervised warm-start on the tasks' reference programs (cached)
    warmstart_steps: int = 250
    warmstart_batch_size: int = 16
    warmstart_learning_rate: float = 3e-3

    # --- rollouts
    prompts_per_step: int = 4  # groups per optimiser step (per rank); gradients accumulate over them
    num_generations: int = 4  # G rollouts per prompt
    max_new_tokens: int = 120
    temperature: float = 1.0
    top_p: float = 1.0
    render_timeout_s: float = 20.0
    render_workers: int = 2

    # --- rewards
    reward_weights: dict[str, float] = field(
        default_factory=dict
    )  # vsdpo.rewards components: executable, similarity, defects, layout
    reward_funcs: list[str] = field(
        default_factory=list
    )  # extra TRL-style reward callables, "module:function", added with weight 1

    # --- algorithm
    algorithm: str = (
        "vsdpo"  # vsdpo: GRPO + credit-weighted distillation; sdpo: no credit; grpo: no distillation
    )
    teacher: str = "live"  # live: the policy itself; ema: an exponential moving average of it
    teacher_ema_rate: float = 0.05
    teacher_image: bool = True  # the render image in the teacher's feedback
    scale_rewards: str = "group"
    loss_type: str = "dapo"
    beta: float = 0.5  # generalized JSD: 0 forward KL, 1 reverse KL
    sd_weight: float = 1.0
    pg_weight: float = 1.0
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    kl_beta: float = 0.0  # KL penalty to the initial policy
    credit_alpha: float = 1.0
    credit_reduce: str = "max"  # "max" | "sum" of the severities touching a token
    old_logprobs: str = (
        "detached"  # detached: ratio 1 (one update per batch); behaviour: generate's log-probs
    )
    reuse_prefix: bool = True
    loss_impl: str = "auto"
    max_completion_length: int | None = None  # dr_grpo normaliser; default max_new_tokens

    # --- optimiser
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_steps: int = 2
    lr_scheduler: str = "constant_with_warmup"
    max_grad_norm: float = 1.0

    # --- robustness
    max_bad_steps: int = 5  # abort after this many skipped steps (NaN loss) in a row
    max_render_crashes: int = (
        20  # abort after this many crashed renders (sandbox failures, not program errors)
    )

    # --- logging and checkpoints
    logging_steps: int = 1
    save_steps: int = 8
    save_total_limit: int = 2
    num_sample_renders: int = 4  # rollout renders (defect boxes drawn) written per sampled step
    sample_every: int = 8
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, choices in (
            ("algorithm", ALGORITHMS),
            ("teacher", TEACHERS),
            ("scale_rewards", SCALE_REWARDS),
            ("loss_type", LOSS_TYPES),
            ("dtype", DTYPES),
            ("lr_scheduler", LR_SCHEDULERS),
            ("old_logprobs", OLD_LOGPROBS),
            ("credit_reduce", ("max", "sum")),
            ("task_kind", ("chart", "web", "slides")),
            ("loss_impl", ("auto", "triton", "cpu", "torch", "reference")),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name}: expected one of {choices}, got {getattr(self, name)!r}")
        for name in (
            "max_steps",
            "prompts_per_step",
            "num_generations",
            "max_new_tokens",
            "save_steps",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        for name in (
            "warmstart_steps",
            "warmup_steps",
            "save_total_limit",
            "num_sample_renders",
            "max_bad_steps",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        for name in ("temperature", "learning_rate", "render_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        for spec in self.reward_funcs:
            if ":" not in spec:
                raise ConfigError(f"reward_funcs: expected entries 'module:function', got {spec!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: expected a number in (0, 1], got {self.top_p!r}")
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"beta: expected a number in [0, 1], got {self.beta!r}")
        if not 0 < self.teacher_ema_rate <= 1:
            raise ConfigError(f"teacher_ema_rate: expected a number in (0, 1], got {self.teacher_ema_rate!r}")
        if self.num_generations < 2 and self.pg_weight > 0 and self.scale_rewards != "none":
            raise ConfigError(
                f"num_generations: group advantages need >= 2 rollouts per prompt, got {self.num_generations}"
            )

    @property
    def uses_distillation(self) -> bool:
        return self.algorithm in ("vsdpo", "sdpo") and self.sd_weight > 0

    @property
    def uses_credit(self) -> bool:
        return self.algorithm == "vsdpo"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------- parsing


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML or command-line value to the field's type, or raise naming the key."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        return _coerce(key, value, options[0])
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
        try:
            number = (
                annotation(float(value))
                if annotation is int and isinstance(value, str) and "e" in value.lower()
                else annotation(value)
            )
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if origin is dict:
        if isinstance(value, str):
            import yaml

            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): float(v) for k, v in value.items()}
    return value


def _check_key(key: str, known: dict[str, Any], where: str) -> None:
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}: unknown config key in {where}{hint}")


def parse_overrides(argv: list[str]) -> dict[str, str | bool]:
    """``["--max_steps", "3", "--resume"]`` -> ``{"max_steps": "3", "resume": True}``."""
    overrides: dict[str, str | bool] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("--"):
            raise ConfigError(f"{token}: expected a --key flag, got a bare value")
        key, _, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not value:
            if index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                value = argv[index + 1]
                index += 1
            else:
                value = True
        overrides[key] = value
        index += 1
    return overrides


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The defaults, then the YAML file at ``path`` (the embedded default when None), then ``overrides``."""
    import yaml

    known = _field_types()
    values: dict[str, Any] = {}
    if path is None and not DEFAULT_CONFIG.exists():  # an installed package without the configs folder
        loaded, path = {}, Path("<defaults>")
    else:
        path = Path(path) if path is not None else DEFAULT_CONFIG
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
    for where, source in ((str(path), loaded), ("the command line", overrides or {})):
        for key, value in source.items():
            _check_key(key, known, where)
            values[key] = _coerce(key, value, known[key])
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
