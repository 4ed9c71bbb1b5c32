"""The run configuration: one validated object that describes a whole experiment.

A config is built from a preset (a YAML data file under ``tap_engine/presets/`` or any
path a user gives) with overrides applied field by field. Overrides use dotted keys
(``backbone.name``, ``scenario.clients.0.tasks.0.labels``) and are validated by the
same pydantic models as the preset, so a typo or a wrong type names the exact field.
"""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from tap_engine import catalog, pairs

PRESETS_DIR = Path(__file__).parent / "presets"

TaskFamily = Literal[
    "image_classification", "text_classification", "image_generation", "text_generation"
]
Modality = Literal["image", "text"]
TASK_FAMILIES: tuple[str, ...] = TaskFamily.__args__  # type: ignore[attr-defined]


# Bounds of a config's settings. Each is far above any sensible experiment and far below
# what breaks something: a SQL INTEGER column (rounds, seed), memory (widths, batches), a
# float that overflows to inf. A value outside them is refused with its field's path.
MAX_ROUNDS = 100_000
MAX_STEPS = 1_000_000
"""Local steps, stage-2 iterations, warm-up rounds, evaluation intervals."""
MAX_BATCH = 65_536
MAX_GRAD_ACCUM = 1_024
MAX_WIDTH = 4_096
"""Width of a *-tiny backbone, and tokens of a text input or target."""
MAX_IMAGE_SIZE = 1_024
MAX_SAMPLES = 1_000_000_000
"""Caps on training and test items, and class counts."""
MAX_SEED = 2**31 - 1
"""A run's seed is stored in a SQL INTEGER column (and numpy takes seeds below 2**32)."""
MAX_LR = 10.0
MAX_WEIGHT = 1e6
"""Loss weights, margins, weight decay and clipping norms."""
MAX_TEXT_CHARS = 500
"""Names, paths, templates and every other text setting but the description."""
MAX_DESCRIPTION_CHARS = 2_000
"""Stored with each run of a sweep and sent with every listing: a paragraph, not a file."""
HUB_ID_PATTERN = r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$"
"""A hub dataset id, ``name`` or ``owner/name``; a local copy goes in ``path`` instead."""

Bounded = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT)]


class StrictModel(BaseModel):
    # allow_inf_nan=False: no setting means anything as NaN or infinity.
    model_config = ConfigDict(
        extra="forbid", frozen=False, allow_inf_nan=False, str_max_length=MAX_TEXT_CHARS
    )


class DatasetSpec(StrictModel):
    """Where a dataset comes from and which columns hold what.

    ``source``: ``builtin`` (data generated or shipped inside installed packages),
    ``hub`` (``datasets.load_dataset``) or ``disk`` (``datasets.load_from_disk``).
    """

    source: Literal["builtin", "hub", "disk"] = "builtin"
    name: str = Field(description="builtin name, hub id, or a path saved with save_to_disk")
    config: str | None = Field(default=None, description="the hub dataset's configuration")
    path: str | None = Field(
        default=None,
        description="a local copy (save_to_disk) to read instead of the hub: one override "
        "redirects a preset's dataset, e.g. scenario.datasets.cifar100.path=/data/cifar100",
    )
    train_split: str = "train"
    test_split: str | None = Field(
        default=None, description="a split to test on; None holds out `test_fraction`"
    )
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    group_column: str | None = Field(
        default=None,
        description="rows sharing this value (e.g. an image id) stay on one side of a "
        "held-out split, so no test image is seen in training under another question",
    )
    image_column: str | None = "image"
    text_column: str | None = Field(default=None, description="model input text")
    target_column: str | None = Field(default=None, description="text generation target")
    label_column: str | None = "label"
    label_offset: int = Field(
        default=0,
        ge=-MAX_SAMPLES,
        le=MAX_SAMPLES,
        description="subtracted from labels (AG News: 1)",
    )
    num_classes: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = None
    text_template: str | None = Field(
        default=None, description="input text from columns, e.g. '{title} {description}'"
    )
    target_template: str | None = Field(
        default=None,
        description="target text from columns, e.g. 'Answer: {answer}'; the literal text "
        "before the first field ('Answer:') is the answer prefix, which metrics do not score",
    )
    prompt: Literal["vqa", "mmlu", "commongen"] | None = Field(
        default=None, description="a paper prompt template building input and target text"
    )

    @field_validator("name")
    @classmethod
    def _hub_id(cls, name: str, info: ValidationInfo) -> str:
        # A hub id that is a path would make `datasets` read that folder of the server.
        if info.data.get("source") == "hub" and (
            not re.match(HUB_ID_PATTERN, name) or ".." in name
        ):
            raise ValueError(
                f"{name!r} is not a hub dataset id (`name` or `owner/name`); give a local "
                "copy as `path`"
            )
        return name

    @field_validator("path")
    @classmethod
    def _copy_of_a_real_dataset(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is not None and info.data.get("source") == "builtin":
            raise ValueError("a builtin dataset is generated; it has no local copy to read")
        return path


class TaskPart(StrictModel):
    """One source of a task's data: a slice of a dataset, with its domain."""

    dataset: str = Field(description="a key of scenario.datasets")
    domain: str = "general"
    shards: list[tuple[int, int]] = Field(
        default_factory=list,
        description="successive (index, count) splits: [[0, 3], [1, 2]] = 2nd half of 1st third",
    )
    labels: list[int] | None = Field(default=None, description="keep only these labels")
    max_train: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = None
    max_test: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = None

    @field_validator("shards")
    @classmethod
    def _shards_in_range(cls, shards: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for index, count in shards:
            if count < 1 or not 0 <= index < count:
                raise ValueError(f"shard ({index}, {count}) needs 0 <= index < count")
        return shards


class TaskSpec(StrictModel):
    """One task of one client: which data, which part of it, which domain."""

    task: str = Field(
        description="task name, e.g. digits_image_classification; pooled test sets, "
        "replacement decisions and metrics are per task name"
    )
    family: TaskFamily
    head: str | None = Field(
        default=None,
        description="the head this task trains; tasks of one family may share one (the "
        "paper shares one text-generation and one image-generation head). Default: the "
        "task name",
    )
    modalities: list[Modality] | None = Field(
        default=None,
        description="input modalities; two make a fused task (VQA). Default: the family's",
    )
    # One source, given inline ...
    dataset: str | None = Field(default=None, description="a key of scenario.datasets")
    domain: str = "general"
    shards: list[tuple[int, int]] = Field(default_factory=list)
    labels: list[int] | None = None
    max_train: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = None
    max_test: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = None
    # ... or several (a task over several domains, e.g. MMLU's three subjects).
    parts: list[TaskPart] | None = Field(
        default=None, description="several sources, each with its domain; replaces dataset"
    )

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> TaskSpec:
        if self.parts is None:
            if self.dataset is None:
                raise ValueError("a task needs `dataset` or `parts`")
            inline = ("dataset", "domain", "shards", "labels", "max_train", "max_test")
            self.parts = [TaskPart(**{k: getattr(self, k) for k in inline})]
            # The resolved config says it one way only, so that it validates again as is.
            for name in inline:
                setattr(
                    self, name, TaskSpec.model_fields[name].get_default(call_default_factory=True)
                )
        elif self.dataset is not None:
            raise ValueError("give either `dataset` or `parts`, not both")
        return self

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys(p.domain for p in self.parts or ()))

    @model_validator(mode="after")
    def _default_modalities(self) -> TaskSpec:
        if self.modalities is None:
            self.modalities = ["text"] if self.family.startswith("text") else ["image"]
        if len(set(self.modalities)) != len(self.modalities) or not self.modalities:
            raise ValueError(f"modalities must be distinct and non-empty, got {self.modalities}")
        self.modalities = sorted(self.modalities)
        return self

    @property
    def input_modalities(self) -> tuple[Modality, ...]:
        return tuple(self.modalities or ())

    @property
    def head_name(self) -> str:
        return self.head or self.task


class ClientSpec(StrictModel):
    tasks: list[TaskSpec] = Field(min_length=1)


class ScenarioSpec(StrictModel):
    datasets: dict[str, DatasetSpec] = Field(min_length=1)
    clients: list[ClientSpec] = Field(min_length=1)
    max_train: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SAMPLES,
        description="cap on every task part's training items (quick runs)",
    )
    max_test: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SAMPLES,
        description="cap on every task part's test items (quick runs)",
    )
    pairs_order: list[str] | None = Field(
        default=None,
        description="the study order of the modality-task pairs (MODALITIES:FAMILY, e.g. "
        "image+text:text_generation): the setting `pairs` keeps the first ones. Default: "
        "the order they first appear in; pairs it does not list come after, in that order",
    )

    @model_validator(mode="after")
    def _pairs_order_covers_every_pair(self) -> ScenarioSpec:
        if self.pairs_order is None:
            return self
        bad = [p for p in self.pairs_order if not pairs.PAIR_PATTERN.match(p)]
        if bad:
            raise ValueError(
                f"pairs_order: {bad[0]!r} is not a pair MODALITIES:FAMILY "
                "(e.g. image:image_classification)"
            )
        if len(set(self.pairs_order)) != len(self.pairs_order):
            raise ValueError("pairs_order: a pair is listed twice")
        # A pair the scenario lacks may be listed: a variant keeps the whole order. A pair
        # it does not list (a task edited by an override) comes after the listed ones.
        return self

    @model_validator(mode="after")
    def _shared_heads_agree(self) -> ScenarioSpec:
        owners: dict[str, tuple[str, str]] = {}  # head -> (family, where first seen)
        for i, client in enumerate(self.clients):
            for j, task in enumerate(client.tasks):
                where = f"clients.{i}.tasks.{j}"
                family, first = owners.setdefault(task.head_name, (task.family, where))
                if family != task.family:
                    raise ValueError(
                        f"{where}.head: head {task.head_name!r} serves {family} at {first}, "
                        f"not {task.family}"
                    )
        return self

    @model_validator(mode="after")
    def _datasets_exist(self) -> ScenarioSpec:
        for i, client in enumerate(self.clients):
            for j, task in enumerate(client.tasks):
                for part in task.parts or ():
                    if part.dataset not in self.datasets:
                        known = ", ".join(sorted(self.datasets))
                        raise ValueError(
                            f"clients.{i}.tasks.{j}.dataset: unknown dataset {part.dataset!r} "
                            f"(known: {known})"
                        )
        return self


class BackboneSpec(StrictModel):
    name: Literal["flava", "vilt", "flava-tiny", "vilt-tiny"] = "flava-tiny"
    path: str | None = Field(
        default=None,
        description="hub id or local directory; default: the hub model, or for *-tiny a "
        "random-weight model built offline",
    )
    tiny_hidden_size: int = Field(
        default=48, ge=1, le=MAX_WIDTH, description="width of *-tiny backbones"
    )
    max_text_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WIDTH,
        description="input tokens; default 256 (FLAVA) / 40 (ViLT)",
    )
    max_target_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WIDTH,
        description="text generation target tokens; default max_text_length",
    )
    image_size: int | None = Field(
        default=None,
        ge=1,
        le=MAX_IMAGE_SIZE,
        description="side the image adaptor resizes to before the backbone; default: 224 as "
        "in the paper's code, or the backbone's own image size where that is smaller",
    )

    @property
    def kind(self) -> str:
        return self.name.removesuffix("-tiny")


# TAP_SPEC section 3: margins, learning rates and local steps per backbone.
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "flava": {
        "margins": {
            "image_classification": 0.01,
            "text_generation": 0.01,
            "image_generation": 0.005,
            "text_classification": 0.005,
        },
        "min_lr": 1e-4,
        "peak_lr": 3e-4,
        "local_steps": 20,
        "max_text_length": 256,
    },
    "vilt": {
        "margins": {
            "image_classification": 0.02,
            "text_generation": 0.02,
            "image_generation": 0.01,
            "text_classification": 0.01,
        },
        "min_lr": 1e-4,
        "peak_lr": 4e-4,
        "local_steps": 30,
        "max_text_length": 40,
        # The paper's ViLT scenario has no image classification: ViLT serves it no head.
        "unsupported_families": ["image_classification"],
    },
}


class RunConfig(StrictModel):
    """Everything that determines a run; equal configs give equal results on CPU."""

    name: str = "run"
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    preset: str | None = None
    algorithm: str = "tap"
    seed: int = Field(default=41, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: autocast on CUDA (ignored on CPU)"
    )
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    # Paper defaults (TAP_SPEC section 3); None takes the backbone's default.
    rounds: int = Field(default=200, ge=1, le=MAX_ROUNDS)
    clients_per_round: PositiveInt = 2
    local_steps: Bounded | None = None
    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH)
    grad_accum: int = Field(default=4, ge=1, le=MAX_GRAD_ACCUM)
    min_lr: float | None = Field(default=None, gt=0, le=MAX_LR)
    peak_lr: float | None = Field(default=None, gt=0, le=MAX_LR)
    warmup_rounds: int = Field(default=20, ge=0, le=MAX_ROUNDS)
    weight_decay: Weight = 0.01
    grad_clip: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    # A negative margin would replace parameters that are worse than the global ones.
    margins: dict[TaskFamily, Weight] | None = Field(
        default=None, description="replacement margin per task family (>= 0, finite)"
    )
    post_iterations: int = Field(
        default=50,
        ge=0,
        le=MAX_STEPS,
        description="stage-2 fine-tuning length in micro-batches, as the paper's code counts "
        "it: an optimizer step every grad_accum of them and after the last",
    )
    # The old name, refused with a pointer to the new one (never part of a resolved config).
    post_steps: SkipJsonSchema[Any] = Field(default=None, exclude=True)
    kd_lambda: Weight = Field(default=2e-3, description="stage-2 distillation weight")
    kd_text_classification_factor: Weight = Field(
        default=500.0, description="kd_lambda multiplier for text classification"
    )
    kd_text_positions: Literal["all", "target"] = Field(
        default="all",
        description="text generation KD over every position up to max_target_length "
        "(all: the paper's code) or over each sample's target tokens only (target)",
    )
    disentafl_weight: Weight = Field(default=0.5, description="DisentAFL orthogonality")
    eval_every: Bounded = 10
    eval_batch_size: int = Field(default=64, ge=1, le=MAX_BATCH)
    eval_max_samples: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SAMPLES,
        description="cap on each evaluation set in rounds before the last (a fixed seeded "
        "subset); the last round and stage 2 read the full sets; None: all",
    )
    bertscore_model: str | None = Field(
        default="bert-base-uncased",
        description="hub id or folder of BERTScore's model; None: no BERTScore",
    )
    bertscore_num_layers: int | None = Field(
        default=None,
        ge=1,
        le=1_000,
        description="BERTScore layer; None: bert-score's default for the model",
    )
    pairs: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SAMPLES,
        description="keep only the scenario's first N modality-task pairs (in "
        "scenario.pairs_order); None: all. Clients left without a task copy a donor's "
        "(docs/STUDIES.md)",
    )
    scenario: ScenarioSpec

    @model_validator(mode="after")
    def _scenario_variant(self) -> RunConfig:
        # First of the checks, so that the others see the variant a run trains on. The
        # variant of a variant is itself: a resolved config validates again unchanged.
        if self.pairs is None:
            return self
        available = len(pairs.scenario_pairs(self.scenario))
        if self.pairs > available:
            raise ValueError(
                f"pairs ({self.pairs}) exceeds the scenario's {available} modality-task pairs"
            )
        self.scenario = pairs.keep_pairs(self.scenario, self.pairs)
        return self

    @field_validator("post_steps")
    @classmethod
    def _renamed(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "renamed post_iterations: stage 2 is counted in micro-batches, as in the "
                "paper's code (post_iterations = the old post_steps x grad_accum)"
            )
        return None

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, name: str) -> str:
        if name not in catalog.algorithm_names():
            names = ", ".join(catalog.algorithm_names())
            raise ValueError(f"unknown algorithm {name!r}; choose one of {names}")
        return name

    @model_validator(mode="after")
    def _backbone_defaults(self) -> RunConfig:
        defaults = BACKBONE_DEFAULTS[self.backbone.kind]
        self.margins = {**defaults["margins"], **(self.margins or {})}
        for name in ("min_lr", "peak_lr", "local_steps"):
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])
        if self.backbone.max_text_length is None:
            self.backbone.max_text_length = defaults["max_text_length"]
        if self.backbone.max_target_length is None:
            self.backbone.max_target_length = self.backbone.max_text_length
        return self

    @model_validator(mode="after")
    def _backbone_serves_every_task(self) -> RunConfig:
        unsupported = BACKBONE_DEFAULTS[self.backbone.kind].get("unsupported_families", [])
        for i, client in enumerate(self.scenario.clients):
            for j, task in enumerate(client.tasks):
                if task.family in unsupported:
                    raise ValueError(
                        f"scenario.clients.{i}.tasks.{j}.family: the {self.backbone.kind} "
                        f"backbone cannot serve {task.family} ({task.task})"
                    )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        n = len(self.scenario.clients)
        if self.clients_per_round > n:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) exceeds the scenario's {n} clients"
            )
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({self.min_lr}) exceeds peak_lr ({self.peak_lr})")
        return self


class ConfigError(ValueError):
    """A preset or override that cannot be resolved; ``loc`` names the field."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc = loc
        self.msg = msg


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


_PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_preset(name_or_path: str) -> dict[str, Any]:
    """The raw data of a built-in preset by name, or of a YAML file by path."""
    path = Path(name_or_path)
    if _PRESET_NAME.match(name_or_path) and name_or_path in list_presets():
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    elif not (path.suffix in {".yaml", ".yml"} and path.is_file()):
        known = ", ".join(list_presets())
        raise ConfigError(("preset",), f"unknown preset {name_or_path!r} (known: {known})")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(("preset",), f"{path} does not hold a mapping")
    data.setdefault("preset", path.stem)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"rounds=3"`` -> ``("rounds", 3)``; values are read as YAML scalars or lists."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(("overrides",), f"{text!r} is not of the form key=value")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads "1e-3" as a string
            value = float(value)
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted-key override set; nested dicts merge."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[: depth + 1], create=True)
        last = parts[-1]
        if isinstance(node, list):
            index = _index(node, last, parts)
            node[index] = value
        elif isinstance(node, dict):
            if isinstance(value, dict) and isinstance(node.get(last), dict):
                node[last] = apply_overrides(node[last], value)
            else:
                node[last] = value
        else:
            raise ConfigError(tuple(parts), "cannot set a field inside a scalar value")
    return out


def _child(node: Any, part: str, loc: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, loc)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            if not create:
                raise ConfigError(tuple(loc), "no such field")
            node[part] = {}
        return node[part]
    raise ConfigError(tuple(loc), "cannot set a field inside a scalar value")


def _index(node: list[Any], part: str, loc: list[str]) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(tuple(loc), f"list index out of range (length {len(node)})")
    return int(part)


def resolve_config(
    preset: str,
    algorithm: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Preset + algorithm + overrides -> a validated RunConfig.

    Raises ``ConfigError`` for an unknown preset or a bad override path and pydantic's
    ``ValidationError`` (with field locations) for invalid values.
    """
    data = load_preset(preset)
    if algorithm is not None:
        data["algorithm"] = algorithm
    data = apply_overrides(data, overrides or {})
    return RunConfig.model_validate(data)
