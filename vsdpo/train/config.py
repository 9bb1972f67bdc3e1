"""The trainer's configuration: nested sections validated by pydantic, loaded from YAML, overridden
from the command line with dotted keys.

    vsdpo train --config qwen3vl_8b_chart --run.max_steps 100 --algorithm sdpo
    vsdpo train --model /path/to/checkpoint --algorithm.loss.beta 0 --optimizer.learning_rate 1e-6

Sections mirror the trainer's modules: ``run`` (the loop, vsdpo.train.loop), ``model``
(vsdpo.train.model), ``data`` (vsdpo.train.data), ``warmstart``, ``rollout`` (generation and
rendering), ``reward`` (vsdpo.train.scoring), ``algorithm`` (the teacher, credit and the loss, whose
``loss`` section *is* ``vsdpo_kernels.SDPOLossConfig``, validated by it), ``optimizer``, ``eval``
(held-out evaluation, vsdpo.train.evaluate), ``logging`` and ``checkpoint``. A value on the command line wins over the
file, the file over the defaults; the defaults are the embedded default (a tiny Qwen3-VL on built-in
charts) that the packaged ``tiny_chart`` config spells out. ``--config`` takes a YAML file or the name of
a config shipped in the package (``vsdpo/configs/``: ``qwen3vl_8b_chart``, ``_web``, ``_slides``,
``tiny_chart``); a file that exists wins over a name. ``model`` and ``algorithm`` also take a bare
name (``--model FOLDER``, ``--algorithm grpo``). An unknown key raises ``ConfigError`` with the key
it most likely meant (``--max_steps``: ``run.max_steps``). ``vsdpo train --list-keys`` prints
every key with its value and meaning (``keys_text``); ``docs/training.md`` of the source repository has
the same table, generated from the descriptions below (``python -m vsdpo.train.config --markdown``).

The embedded default's run name, output folder and warm start are its tiny model's: with any other
``model.name`` the keys of them that the user did not set (in a ``--config`` file or on the command
line) follow that model instead (``fit_to_model``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vsdpo.feedback.rewards import COMPONENTS
from vsdpo_kernels import IMPLS, SDPOLossConfig

# Shipped inside the package (package data), so that an installed vsdpo finds them by name.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny_chart.yaml"

Algorithm = Literal["vsdpo", "sdpo", "grpo"]


class ConfigError(ValueError):
    """A bad configuration key or value; the message starts with the dotted key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class RunConfig(Section):
    name: str = Field(
        "tiny-chart",
        description="the run's name, for logs; unset with a model other than tiny: <model folder name>-<data.kind>",
    )
    output_dir: str = Field(
        "runs/tiny-chart",
        description="the run directory: config, logs, plots, samples, checkpoints; unset: runs/<run.name>",
    )
    seed: int = Field(
        0, ge=0, description="seed of the data order and of sampling (the base policy is model.seed's)"
    )
    max_steps: int = Field(
        30, ge=0, description="optimiser steps (0: the warm start and the base policy's evaluation only)"
    )
    resume: bool = Field(False, description="continue from the newest complete checkpoint in output_dir")
    cache_dir: str = Field(
        "~/.cache/vsdpo",
        description="tokenizer, target images and warm-start weights (keyed by what shapes them)",
    )
    cpu_threads: int = Field(
        1,
        ge=0,
        description="torch intra-op threads on a CPU run; 0 keeps torch's default (tiny models run best on 1)",
    )
    max_bad_steps: int = Field(
        5, ge=0, description="abort after this many skipped steps (non-finite loss) in a row"
    )
    max_render_crashes: int = Field(
        20, ge=0, description="abort after this many crashed renders (sandbox failures, not program errors)"
    )


class ModelConfig(Section):
    name: str = Field("tiny", description='"tiny" (the embedded random Qwen3-VL), a hub id or a local folder')
    seed: int = Field(
        0,
        ge=0,
        description="seed of the tiny model's initialisation and of the warm start: the base policy, shared by every run.seed",
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field("float32", description="parameter dtype")
    attn_implementation: str = Field(
        "auto", description='"auto": flash_attention_2 when installed on a GPU, else sdpa'
    )
    gradient_checkpointing: bool = Field(False, description="non-reentrant activation checkpointing")
    use_liger_kernel: bool = Field(
        False, description="Liger-Kernel's RMSNorm/RoPE/SwiGLU patches (GPU only; the loss stays ours)"
    )
    tiny_hidden_size: int = Field(64, ge=8, description="the tiny model's text hidden size")
    tiny_num_layers: int = Field(2, ge=1, description="the tiny model's decoder layers")


class DataConfig(Section):
    kind: Literal["chart", "web", "slides"] = Field("chart", description="the artifact the programs draw")
    tasks: str = Field(
        "builtin:charts", description="builtin:charts, dir:FOLDER or a JSONL task file (see vsdpo.tasks)"
    )
    num_builtin_tasks: int = Field(128, ge=1, description="tasks drawn from the built-in generator")
    seed: int = Field(
        0, ge=0, description="seed of the built-in task generator (training and held-out splits)"
    )
    prompt_image: bool = Field(True, description="show the target image with the prompt")
    image_max_pixels: int | None = Field(
        None, ge=1, description="cap on image pixels (the processor's own when null; tiny: 128x96)"
    )


class WarmstartConfig(Section):
    steps: int = Field(
        250,
        ge=0,
        description="supervised steps on first attempts (task -> reference program) before RL; the base policy, cached; unset with a model other than tiny: 0",
    )
    repair_steps: int = Field(
        800,
        ge=0,
        description="then supervised steps on a mix of first attempts and repairs (task + real feedback on a flawed program -> reference); unset with a model other than tiny: 0",
    )
    corruptions: int = Field(
        2,
        ge=0,
        description="flawed programs made per task by corrupting its reference, half failing (syntax, names, arguments), half running (values, colours, texts, chart type, series, layout)",
    )
    own_samples: int = Field(
        1, ge=0, description="flawed programs per task sampled from the model itself after the first stage"
    )
    repair_tasks: int = Field(
        256,
        ge=0,
        description="built-in training-split tasks beyond data.num_builtin_tasks whose references, each kept and once corrupted, join the repairs (builtin:charts only): programs the model cannot recall, so it learns to read the feedback",
    )
    recoloured: int = Field(
        2,
        ge=0,
        description="repair targets per task that are its reference drawn in another colour, the reference itself the flawed attempt: the answer is not in the prompt (no prompt names a colour), only in the feedback and the target image (builtin:charts only)",
    )
    laid_out: bool = Field(
        True,
        description="a repair's answer is its reference with plt.tight_layout() added where that removes the text its own render cuts at the figure's edge, so that the feedback's clipped text is fixed, not kept (chart tasks)",
    )
    batch_size: int = Field(16, ge=1, description="examples per warm-start step")
    learning_rate: float = Field(
        3e-3, gt=0, description="the warm-start's peak learning rate (cosine decay per stage)"
    )


class RolloutConfig(Section):
    prompts_per_step: int = Field(
        4, ge=1, description="groups per optimiser step (per rank); gradients accumulate over them"
    )
    num_generations: int = Field(4, ge=1, description="G rollouts per prompt")
    max_new_tokens: int = Field(120, ge=1, description="response length cap")
    temperature: float = Field(1.0, gt=0, description="sampling temperature, also the loss's")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    render_timeout_s: float = Field(20.0, gt=0, description="per-render deadline in the sandbox")
    render_workers: int = Field(2, ge=1, description="renders in flight")
    groups_per_generate: int = Field(
        0,
        ge=0,
        description="groups sampled per generate call, each call's renders started while the next is sampled; 0: every group of the step in one call, rendered after it (synchronous)",
    )
    max_lag: int = Field(
        0,
        ge=0,
        le=1,
        description="0: synchronous, each step samples from the policy it updates; 1: the next step's rollouts are sampled, rendered and scored on a thread of their own while this step updates, by a copy of the policy one update behind (the ratio's denominator is then generate's log-probs; one process only)",
    )


class ScoringConfig(Section):
    """The ``reward`` section: how vsdpo.train.scoring scores rollouts. (The weights and failure reward of
    one artifact kind are ``vsdpo.feedback.rewards.RewardConfig``, built from it.)"""

    weights: dict[str, float] = Field(
        default_factory=dict,
        description="weights of vsdpo.feedback.rewards' components: executable, similarity, defects, layout",
    )
    funcs: list[str] = Field(
        default_factory=list,
        description='extra TRL-style reward callables, "module:function", added with weight 1',
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="advantage = reward minus the group mean, divided by the group's std, the batch's, or nothing",
    )

    @field_validator("weights")
    @classmethod
    def _known_components(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"expected keys among {COMPONENTS}, got {unknown}")
        return weights

    @field_validator("funcs")
    @classmethod
    def _module_function(cls, funcs: list[str]) -> list[str]:
        for spec in funcs:
            if ":" not in spec:
                raise ValueError(f"expected entries 'module:function', got {spec!r}")
        return funcs


class AlgorithmConfig(Section):
    name: Algorithm = Field(
        "vsdpo",
        description="vsdpo: GRPO + credit-weighted distillation; sdpo: no credit; grpo: no distillation",
    )
    teacher: Literal["live", "ema"] = Field(
        "ema", description="live: the policy itself; ema: an exponential moving average of it (a frozen copy)"
    )
    teacher_ema_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="the EMA teacher's step towards the policy after each step; 0 keeps it the base policy",
    )
    teacher_image: bool = Field(True, description="the render image in the teacher's feedback")
    feedback: Literal["compare", "defects"] = Field(
        "compare",
        description="the teacher's feedback on a program that ran: compare, how its render differs from the target (texts, chart types, colours, layout; vsdpo.feedback.differences) and its defects, the differences also credited; defects, its layout defects only (the paper's template)",
    )
    credit_alpha: float = Field(
        1.0, ge=0, description="credit weight 1 + alpha * severity on the tokens behind a defect"
    )
    credit_reduce: Literal["max", "sum"] = Field(
        "max", description="how the severities touching one token combine"
    )
    distill_on: Literal["all", "flawed", "failed"] = Field(
        "all",
        description="the rollouts distilled: all; flawed (failed to run, or a defect in the render); failed (did not run)",
    )
    old_logprobs: Literal["detached", "behaviour"] = Field(
        "detached",
        description="the ratio's denominator: detached, the policy's log-probs as the step starts (ratio 1 on its first iteration); behaviour, generate's",
    )
    num_iterations: int = Field(
        1,
        ge=1,
        description="optimiser steps on each step's rollouts (GRPO's mu, TRL's num_iterations), the ratio clipped by epsilon_low/high",
    )
    reuse_prefix: bool = Field(
        True, description="student and teacher continue the prompt's KV cache (vsdpo.sharing)"
    )
    loss_impl: Literal[IMPLS] = Field("auto", description="vsdpo_kernels implementation")
    loss: SDPOLossConfig = Field(
        default_factory=SDPOLossConfig,
        description="vsdpo_kernels.SDPOLossConfig: beta, sd_weight, pg_weight, epsilon_low, epsilon_high, kl_beta, loss_type, max_completion_length (its temperature is rollout.temperature)",
    )

    @property
    def uses_distillation(self) -> bool:
        return self.name in ("vsdpo", "sdpo") and self.loss.sd_weight > 0

    @property
    def uses_credit(self) -> bool:
        return self.name == "vsdpo"

    @property
    def weighs_distillation(self) -> bool:
        """Whether the distillation term needs per-token weights (credit, or rollouts left out)."""
        return self.uses_distillation and (self.uses_credit or self.distill_on != "all")


class OptimizerConfig(Section):
    learning_rate: float = Field(2e-4, gt=0, description="AdamW peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="on matrices only")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2")
    warmup_steps: int = Field(2, ge=0, description="linear warm-up steps")
    lr_scheduler: Literal["constant_with_warmup", "linear", "cosine"] = Field(
        "constant_with_warmup", description="the schedule after warm-up"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")


class EvalConfig(Section):
    tasks: str = Field(
        "auto",
        description='held-out tasks: "auto" (the held-out split of builtin:charts, none for other sources), "none", or a second task source (a JSONL file or dir:FOLDER)',
    )
    num_tasks: int = Field(
        64, ge=1, description="held-out tasks (drawn from the generator, or the first of the source)"
    )
    samples: int = Field(2, ge=1, description="first attempts sampled per held-out task")
    every: int = Field(
        15, ge=0, description="evaluate every this many steps (and at step 0 and at the end); 0: only then"
    )
    at_start: bool = Field(
        True,
        description="evaluate the starting policy at step 0 (vsdpo compare evaluates the shared base policy once and turns this off in its runs)",
    )
    teacher_gain: bool = Field(
        True,
        description="also sample a second attempt given the feedback on each first attempt, and log the reward gained",
    )
    seed: int = Field(
        1234,
        ge=0,
        description="the sampling seed of every evaluation (the training's random state is left untouched)",
    )


class LoggingConfig(Section):
    logging_steps: int = Field(1, ge=1, description="log every this many steps")
    num_sample_renders: int = Field(
        4, ge=0, description="rollout renders (defect boxes drawn) written per sampled step"
    )
    sample_every: int = Field(10, ge=1, description="write sample renders every this many steps")
    tensorboard: bool = Field(True, description="TensorBoard events in the run directory")
    progress: bool = Field(True, description="a progress bar")


class CheckpointConfig(Section):
    save_steps: int = Field(8, ge=1, description="save every this many steps (and at the end)")
    save_total_limit: int = Field(2, ge=0, description="checkpoints kept (0: all)")


class TrainConfig(Section):
    """The whole configuration; ``config.rollout.num_generations``, ``config.algorithm.loss.beta``."""

    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    warmstart: WarmstartConfig = Field(default_factory=WarmstartConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: ScoringConfig = Field(default_factory=ScoringConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @field_validator("model", "algorithm", mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        """``model: tiny`` and ``algorithm: grpo`` stand for ``{name: ...}``."""
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainConfig:
        loss = self.algorithm.loss
        if self.rollout.num_generations < 2 and loss.pg_weight > 0 and self.reward.scale_rewards != "none":
            raise ValueError(
                "rollout.num_generations: group advantages need >= 2 rollouts per prompt, "
                f"got {self.rollout.num_generations}"
            )
        return self

    def loss_config(self) -> SDPOLossConfig:
        """The loss as the update runs it: the sampling temperature, no distillation for ``grpo``,
        and the dr_grpo normaliser defaulting to ``rollout.max_new_tokens``."""
        loss = self.algorithm.loss
        return dataclasses.replace(
            loss,
            temperature=self.rollout.temperature,
            sd_weight=loss.sd_weight if self.algorithm.uses_distillation else 0.0,
            max_completion_length=loss.max_completion_length or self.rollout.max_new_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        data["algorithm"]["loss"] = {
            k: v for k, v in data["algorithm"]["loss"].items() if k != "temperature"
        }  # the loss's temperature is rollout.temperature
        return data


# ----------------------------------------------------------------------------------------- the keys


def _leaves(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> pydantic FieldInfo (or a dataclass Field for the loss section)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_leaves(annotation, f"{prefix}{name}."))
        elif dataclasses.is_dataclass(annotation):
            for field in dataclasses.fields(annotation):
                if field.name != "temperature":
                    out[f"{prefix}{name}.{field.name}"] = field
        else:
            out[f"{prefix}{name}"] = info
    return out


KEYS: dict[str, Any] = _leaves(TrainConfig)


def _annotation(key: str) -> Any:
    info = KEYS[key]
    return (
        info.annotation if hasattr(info, "annotation") else typing.get_type_hints(SDPOLossConfig)[info.name]
    )


# The names other configs give our keys (VisualSDPOConfig's former ones, TRL's), each pointing to ours.
OTHER_NAMES = {"jsd_beta": "algorithm.loss.beta", "impl": "algorithm.loss_impl"}


def _check_key(key: str, where: str) -> None:
    if key in KEYS or key in ("model", "algorithm"):
        return
    name = key.rsplit(".", 1)[-1]
    if name in OTHER_NAMES:
        raise ConfigError(f"{key}: unknown config key in {where}; did you mean {OTHER_NAMES[name]!r}?")
    # A key without its section (``max_steps``) names the one key it ends, else the closest spelling.
    ending = [known for known in KEYS if known.rsplit(".", 1)[-1] == key]
    close = ending if len(ending) == 1 else difflib.get_close_matches(key, list(KEYS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{key}: unknown config key in {where}{hint}")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"run": {"seed": 1}}`` -> ``{"run.seed": 1}``; section shorthands stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in KEYS:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _command_line_value(key: str, value: Any) -> Any:
    """A command-line string as the key's type wants it (pydantic does the rest)."""
    if not isinstance(value, str) or key in ("model", "algorithm"):
        return value
    annotation = _annotation(key)
    origin = typing.get_origin(annotation)
    if value.lower() in ("null", "none") and type(None) in typing.get_args(annotation):
        return None
    if origin is list:
        return [part.strip() for part in value.split(",") if part.strip()]
    if origin is dict:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    if annotation in (int, float, int | None, float | None) and "e" in value.lower():
        try:
            number = float(value)
            return int(number) if annotation in (int, int | None) and number.is_integer() else number
        except ValueError:
            return value
    return value


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # `algorithm: grpo` and `algorithm.loss.beta` together
                child = node[part] = {"name": child}
            node = child
        if leaf in ("model", "algorithm") and not parents and isinstance(node.get(leaf), dict):
            node[leaf]["name"] = value
        else:
            node[leaf] = value
    return tree


def _validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
    message = first["msg"].removeprefix("Value error, ")
    if "input" in first and first["type"] not in ("value_error",):
        message += f", got {first['input']!r}"
    return f"{key}: {message}" if key else message


def parse_overrides(argv: list[str]) -> dict[str, str | bool]:
    """``["--run.max_steps", "3", "--run.resume"]`` -> ``{"run.max_steps": "3", "run.resume": True}``."""
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


def packaged_configs() -> list[str]:
    """The names of the configs shipped in the package, for ``--config NAME``."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def find_config(path_or_name: str | Path) -> Path:
    """The YAML file ``--config`` names: a file that exists, else a packaged config by name
    (``qwen3vl_8b_chart``, also spelt ``qwen3vl_8b_chart.yaml`` or ``configs/qwen3vl_8b_chart.yaml``)."""
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path
    names = ", ".join(packaged_configs())
    if path.parent in (Path("."), Path("configs")) and path.suffix in ("", ".yaml", ".yml"):
        packaged = CONFIG_DIR / f"{path.stem}.yaml"
        if packaged.is_file():
            return packaged
        raise ConfigError(
            f"config: {str(path_or_name)!r} is neither a file nor a packaged config; packaged configs: {names}"
        )
    raise ConfigError(f"config: cannot read {path}: no such file (packaged configs, by name: {names})")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The defaults, then the YAML file ``path`` names (see ``find_config``; the embedded default when
    None), then ``overrides`` (dotted keys); ``ConfigError`` names the first bad key. The keys of the
    user's file and of ``overrides`` are the ones the user set (``fit_to_model``)."""
    user_file = path is not None
    path = DEFAULT_CONFIG if path is None else find_config(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"config: cannot read {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config: {path} is not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
    flat: dict[str, Any] = {}
    given: set[str] = set()
    for where, source in ((str(path), _flatten(loaded)), ("the command line", overrides or {})):
        for key, value in source.items():
            _check_key(key, where)
            flat[key] = value if source is not overrides else _command_line_value(key, value)
            if user_file or source is overrides:
                given.add(f"{key}.name" if key in ("model", "algorithm") else key)
    try:
        return fit_to_model(TrainConfig.model_validate(_nest(flat)), given)
    except ValidationError as error:
        raise ConfigError(_validation_message(error)) from None
    except (TypeError, ValueError) as error:  # SDPOLossConfig's own checks
        raise ConfigError(f"algorithm.loss: {error}") from None


def fit_to_model(config: TrainConfig, given: set[str]) -> TrainConfig:
    """``config`` with the keys the user did not set (``given``: dotted keys) that the embedded default
    sets for its tiny model made to fit ``model.name`` instead.

    The tiny default's run name and folder (``runs/tiny-chart``) would mix another model's run into
    the tiny one's, and its warm start (hundreds of supervised steps at a learning rate made for a
    random model) would overwrite what a pretrained model knows: another model gets its own name
    (``<model folder name>-<data.kind>``) and no warm start unless asked. Whatever the model,
    ``run.output_dir`` follows ``run.name`` (``runs/<run.name>``) unless set.
    """
    changes: dict[tuple[str, str], Any] = {}
    if config.model.name != "tiny":
        if "run.name" not in given:
            changes["run", "name"] = f"{model_basename(config.model.name)}-{config.data.kind}"
        for key in ("steps", "repair_steps"):
            if f"warmstart.{key}" not in given:
                changes["warmstart", key] = 0
    if "run.output_dir" not in given:
        changes["run", "output_dir"] = f"runs/{changes.get(('run', 'name'), config.run.name)}"
    fitted = config.model_copy(deep=True)
    for (section, key), value in changes.items():
        setattr(getattr(fitted, section), key, value)
    return fitted


def model_basename(name: str) -> str:
    """A folder name for a run of ``name`` (a hub id or a local folder): its last part, in the
    characters a file name takes everywhere (``Qwen/Qwen3-VL-8B-Instruct`` -> ``Qwen3-VL-8B-Instruct``)."""
    last = Path(name.rstrip("/\\")).expanduser().name or Path(name).expanduser().resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.") or "model"


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def key_rows(config: TrainConfig | None = None) -> list[tuple[str, Any, str]]:
    """(dotted key, value, meaning) of every key, the values ``config``'s (the pydantic defaults when
    None): the one source of ``markdown_table`` and ``keys_text``."""
    values = _flatten((config or TrainConfig()).to_dict())
    rows = []
    for key, info in KEYS.items():
        description = getattr(info, "description", None)
        if description is None:  # the loss section: documented by SDPOLossConfig
            description = "see vsdpo_kernels.SDPOLossConfig"
        rows.append((key, values.get(key), description))
    return rows


def markdown_table() -> str:
    """Every key with its default and meaning: the reference table of docs/training.md."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, description in key_rows():
        description = description.replace("vsdpo_kernels.SDPOLossConfig", "`vsdpo_kernels.SDPOLossConfig`")
        rows.append(f"| `{key}` | `{default!r}` | {description} |")
    return "\n".join(rows)


def keys_text(config: TrainConfig | None = None) -> str:
    """Every key with its value in ``config`` (the pydantic defaults when None) and its meaning, as
    ``vsdpo train --list-keys`` prints it: what ``docs/training.md`` says, for an install that does not
    carry the docs."""
    lines = []
    for key, value, description in key_rows(config):
        lines += [f"--{key} {value!r}", f"      {description}"]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
    elif sys.argv[1:] == ["--text"]:
        print(keys_text())
