"""Experiment configs: one flat YAML per experiment with ``data``, ``model`` and ``train``
sections (and an optional ``refine`` section for the CRF), loaded into the dataclasses below.

    cfg = load_config("configs/pointnet_synthetic.yaml", overrides=["train.lr=0.01"])
    save_config(cfg, run_dir / "config.yaml")

An unknown or mistyped key (in the file or in an override), a ``model.name`` that is not in
``pcseg.models.MODELS`` or a ``model.options`` key its constructor does not take raises
``ConfigError`` (a ``ValueError``) at load time, naming the key and the valid ones. Override
values are parsed as YAML (``train.lr=1e-3`` is a float, ``data.train_rooms=[0,1]`` a list) and
converted to the field's type. Invalid YAML (in the file or an override), a non-finite number
and a value out of its range (``train.val_every=0``, a negative ``train.lr``, ``train.device=tpu7``)
are ``ConfigError`` at load time too, so nothing is generated, read or written for a config that
cannot run. What needs the file system or the data (the data folder, the class count of the
data, CUDA being present) is checked by ``pcseg.train.check_training`` before any work.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "RefineConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "save_config",
    "apply_overrides",
]

# The loss terms `train.loss` may name (alone or summed with "+"). cross_entropy and focal are
# per-point means; dice, tversky and lovasz are set losses over the whole batch.
TRAINING_LOSSES = ("cross_entropy", "focal", "dice", "tversky", "lovasz")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


# How training blocks are centred (DataConfig.block_centres).
BLOCK_CENTRES = ("random", "class_balanced")


@dataclass
class DataConfig:
    """Where the points come from and how they are cut into blocks.

    dataset: "synthetic" (procedural rooms, no download), "s3dis" (rooms prepared by
        ``pcseg prepare s3dis`` under ``root``), "semantickitti" (``root`` holding
        ``sequences/``, ``label_config`` the dataset's ``semantic-kitti.yaml``) or "folder"
        (your own labelled clouds under ``root``: ``pcseg.data.folder``).
    Folder data sets: ``label_field`` names the per-point label field of the files (e.g.
        ``label``, ``class``, LAS ``classification``); ``classes_file`` the ``classes.yaml``
        (default ``root/classes.yaml``); ``split_file`` an optional YAML listing the files of
        each split (default: the ``train/`` and ``val/`` sub-folders of ``root``).
    Synthetic rooms: seeds ``train_seed_start + i`` for ``i < train_rooms`` and
        ``val_seed_start + i`` for ``i < val_rooms``, ``points_per_room`` points each;
        ``synthetic_views`` > 0 adds that many partial RGB-D views of each training room
        (``pcseg.data.synthetic.generate_views``: a hand-held depth camera's occlusions,
        noise, holes and exposure; ``points_per_room / synthetic_views`` points each) to the
        training rooms, for models that will label single RGB-D frames; validation keeps whole
        rooms. Each view is a room of its own for ``blocks_per_room``.
    Blocks: ``block_size`` metres square columns of ``num_points`` points;
        ``blocks_per_room`` random training blocks are cut once per room and kept in memory,
        centred on points drawn alike (``block_centres: random``) or with every class of the
        room equally likely (``class_balanced``: KPConv's sampling, for rare small classes).
    Inputs per point: block xyz always; rgb (``use_color``), PointNet's room-normalised xyz
        (``room_coords``) and 7 local geometric features (``geometric_features``: normal,
        surface variation, offset to the centroid of the ``neighbours`` nearest points).
    LiDAR inputs (``pcseg.inputs``): ``use_intensity`` the intensity / remission as its own
        channel, divided by ``intensity_scale`` (the sensor's full scale: 1 for SemanticKITTI's
        remission, already 0..1; 255 for a Velodyne's raw 8-bit intensity; see
        ``pcseg.inputs.normalise_intensity``) and clipped to [0, 1]; ``use_range`` the range
        from the sensor. A LiDAR has no colour: with either on, a SemanticKITTI data set needs
        ``use_color: false``.
    ``multiscale_features``: ``pcseg.inputs.multiscale_features`` of the whole room or scan,
        computed once before blocks are cut: the shape of each point's neighbourhood at four
        scales (the full-density cloud and voxel grids of 0.25, 0.5 and 1 m) and its height
        above the ground (or floor) around it.
    ``eval_stride``: the sliding-block stride of whole-room evaluation and prediction.
    Training augmentation: ``augment_rotate`` turns each block about z; for LiDAR models
        ``augment_intensity`` = a multiplies each block's intensity by a gain between
        1 / (1 + a) and 1 + a (log-uniform; sensors and their calibrations differ in scale) and
        ``augment_height`` = h moves its sensor-frame heights by up to +-h metres (sensors are
        mounted at different heights): ``pcseg.inputs.augment_lidar_inputs``.
    """

    dataset: str = "synthetic"
    root: str = ""
    test_area: int = 5
    label_config: str = ""
    # SemanticKITTI: every scan_stride-th scan of each split. Consecutive scans (10 Hz) overlap
    # heavily, and the training blocks live in memory: about scans / scan_stride x
    # blocks_per_room x num_points x 100 bytes (inputs, labels, and the 9 block features
    # while they are cut).
    scan_stride: int = 1
    label_field: str = "label"
    classes_file: str = ""
    split_file: str = ""
    num_classes: int = 13
    ignore_index: int = -100
    train_rooms: int = 24
    val_rooms: int = 4
    train_seed_start: int = 0
    val_seed_start: int = 100_000
    points_per_room: int = 100_000
    block_size: float = 1.0
    num_points: int = 1024
    blocks_per_room: int = 48
    block_centres: str = "random"
    val_blocks_per_room: int = 16
    eval_stride: float = 0.5
    use_color: bool = True
    room_coords: bool = False
    geometric_features: bool = True
    neighbours: int = 16
    multiscale_features: bool = False
    use_intensity: bool = False
    use_range: bool = False
    intensity_scale: float = 1.0
    synthetic_views: int = 0
    augment_rotate: bool = True
    augment_intensity: float = 0.0
    augment_height: float = 0.0

    @property
    def lidar(self) -> bool:
        """Whether the model takes a LiDAR's channels (intensity or range): its points are then
        in the sensor's frame."""
        return bool(self.use_intensity or self.use_range)


@dataclass
class ModelConfig:
    """``name`` is a key of ``pcseg.models.MODELS``; ``block_preset`` uses
    ``acnn_block_preset(data.num_points)`` for A-CNN; ``options`` are further keyword arguments
    of the model's constructor (e.g. ``dropout``)."""

    name: str = "pointnet_sem_seg"
    width_multiplier: float = 0.5
    block_preset: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    ``epochs`` bounds the run; ``time_budget_s > 0`` also stops it after that many seconds of
    training and fits the cosine schedule to the steps that fit (at the pace of the first
    steps, re-fitted after every epoch: ``pcseg.train.TimeBudget``). ``amp``: "auto" (bf16
    autocast on CPUs with native bf16; bf16, else fp16, on CUDA), "bf16", "fp16" (CUDA) or
    "none". ``class_weights``: "none", "inverse_log" or "inverse"
    (``pcseg.losses.class_weights_from_counts`` over the training labels).
    ``label_transition``: a 2D network's confusion matrix (``.npy``, or text such as ``.csv``;
    (C, C), rows true classes, columns predicted; counts or row-normalised) when the labels
    are its pseudo-labels: the cross-entropy then learns the true classes through its errors
    (``pcseg.losses.noisy_label_cross_entropy_loss``); "" trains on the labels as they are.
    """

    seed: int = 0
    epochs: int = 20
    time_budget_s: float = 0.0
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 0.002
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    loss: str = "cross_entropy"  # or focal, dice, tversky, lovasz, or a sum: cross_entropy+lovasz
    class_weights: str = "inverse_log"
    label_transition: str = ""
    amp: str = "auto"
    val_every: int = 1
    device: str = "cpu"
    num_threads: int = 0
    out_dir: str = "runs/default"
    checkpoint_every: int = 1


@dataclass
class RefineConfig:
    """The CRF of ``pcseg eval --refine crf`` and ``Segmenter(refine="crf")`` (``pcseg.refine.crf``).

    ``k`` neighbours per point; ``position_sigma`` (metres), ``color_sigma`` (colour in [0, 1])
    and ``normal_sigma`` the kernel widths; ``compatibility`` "potts"; ``iterations`` mean-field
    steps; ``appearance_weight`` and ``smoothness_weight`` the two kernels' weights; ``normals``
    estimates normals (``pcseg.ops.estimate_normals`` over ``k`` neighbours) for the
    smoothness kernel, else it compares positions only.
    """

    k: int = 16
    position_sigma: float = 0.05
    color_sigma: float = 0.1
    normal_sigma: float = 0.3
    compatibility: str = "potts"
    iterations: int = 5
    appearance_weight: float = 3.0
    smoothness_weight: float = 1.0
    normals: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "refine": RefineConfig}


def _convert(value, annotation: str, key: str):
    """Converts a YAML value to the field's declared type (annotations are strings here)."""
    kind = annotation.split("[")[0]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if kind == "int":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or int(value) != value
        ):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, str):
            try:  # PyYAML reads 1e-3 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if kind == "dict":
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _section_from_dict(cls, values: dict, section: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {section}.{key}; valid keys of {section!r}: {sorted(fields)}")
        kwargs[key] = _convert(value, str(fields[key].type), f"{section}.{key}")
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """Builds a ``Config`` from a ``{"data": {...}, "model": {...}, "train": {...}}`` mapping."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    for section in values:
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section {section!r}; valid sections: {list(_SECTIONS)}")
    cfg = Config(**{name: _section_from_dict(cls, values.get(name), name) for name, cls in _SECTIONS.items()})
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    if cfg.data.dataset not in ("synthetic", "s3dis", "semantickitti", "folder"):
        raise ConfigError(f"data.dataset must be synthetic, s3dis, semantickitti or folder, got {cfg.data.dataset!r}")
    if cfg.train.optimizer not in ("adamw", "sgd"):
        raise ConfigError(f"train.optimizer must be adamw or sgd, got {cfg.train.optimizer!r}")
    if cfg.train.amp not in ("auto", "bf16", "fp16", "none"):
        raise ConfigError(f"train.amp must be auto, bf16, fp16 or none, got {cfg.train.amp!r}")
    if cfg.train.class_weights not in ("none", "inverse_log", "inverse"):
        raise ConfigError(f"train.class_weights must be none, inverse_log or inverse, got {cfg.train.class_weights!r}")
    terms = cfg.train.loss.split("+")
    unknown = [term for term in terms if term not in TRAINING_LOSSES]
    if unknown or len(set(terms)) != len(terms):
        raise ConfigError(
            f"train.loss must be one of {sorted(TRAINING_LOSSES)} or a sum of distinct ones "
            f"such as cross_entropy+lovasz, got {cfg.train.loss!r}"
        )
    if cfg.train.label_transition and terms != ["cross_entropy"]:
        raise ConfigError(
            f"train.label_transition corrects the cross-entropy only: train.loss must be cross_entropy, "
            f"got {cfg.train.loss!r}"
        )
    for key in ("num_classes", "num_points", "blocks_per_room", "val_blocks_per_room", "neighbours", "scan_stride"):
        if getattr(cfg.data, key) < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {getattr(cfg.data, key)}")
    if cfg.data.block_centres not in BLOCK_CENTRES:
        raise ConfigError(f"data.block_centres must be one of {list(BLOCK_CENTRES)}, got {cfg.data.block_centres!r}")
    if cfg.data.block_size <= 0 or cfg.data.eval_stride <= 0:
        raise ConfigError("data.block_size and data.eval_stride must be positive")
    if cfg.data.synthetic_views < 0:
        raise ConfigError(f"data.synthetic_views must be >= 0 (0: whole rooms), got {cfg.data.synthetic_views}")
    for key in ("augment_intensity", "augment_height"):
        if not getattr(cfg.data, key) >= 0:
            raise ConfigError(f"data.{key} must be >= 0 (0 turns it off), got {getattr(cfg.data, key)}")
    lidar = cfg.data.lidar
    if (cfg.data.augment_intensity > 0 and not cfg.data.use_intensity) or (cfg.data.augment_height > 0 and not lidar):
        raise ConfigError(
            "data.augment_intensity needs data.use_intensity, and data.augment_height a LiDAR model "
            "(data.use_intensity or data.use_range)"
        )
    if cfg.model.name == "acnn" and lidar and not cfg.data.geometric_features:
        raise ConfigError(
            "model.name acnn with LiDAR channels needs data.geometric_features: true: its normals then face "
            "the sensor; without them A-CNN would estimate normals facing each block's centre"
        )
    if cfg.data.intensity_scale <= 0:
        raise ConfigError(
            f"data.intensity_scale must be > 0 (the sensor's full-scale intensity), got {cfg.data.intensity_scale}"
        )
    if cfg.data.dataset == "semantickitti" and cfg.data.use_color and lidar:
        raise ConfigError(
            "data.use_color must be false with data.use_intensity / data.use_range on a semantickitti "
            "data set: a LiDAR scan has no colour"
        )
    if cfg.train.batch_size < 1 or cfg.train.epochs < 1:
        raise ConfigError("train.batch_size and train.epochs must be >= 1")
    _validate_data_source(cfg.data)
    _validate_train(cfg.train)
    _validate_model(cfg.model)
    _validate_refine(cfg.refine)


def _at_least(section: str, values, minimum, keys: typing.Iterable[str], exclusive: bool = False) -> None:
    for key in keys:
        value = getattr(values, key)
        if value < minimum or (exclusive and value == minimum):
            relation = ">" if exclusive else ">="
            raise ConfigError(f"{section}.{key} must be {relation} {minimum}, got {value}")


def _validate_data_source(data: DataConfig) -> None:
    """The keys of the chosen data set (the files themselves are checked before training)."""
    if data.dataset == "synthetic":
        _at_least("data", data, 1, ("train_rooms", "points_per_room"))
        _at_least("data", data, 0, ("val_rooms",))
    elif data.dataset == "s3dis":
        if not data.root:
            raise ConfigError("data.root must name the S3DIS cache folder (pcseg prepare s3dis) for dataset s3dis")
        if not 1 <= data.test_area <= 6:
            raise ConfigError(f"data.test_area must be 1..6, got {data.test_area}")
    elif data.dataset == "folder":
        if not data.root:
            raise ConfigError("data.root must name the folder of labelled clouds for dataset folder")
        if not data.label_field.strip():
            raise ConfigError(
                "data.label_field must name the label field of the files (e.g. label, class, "
                "classification) for dataset folder"
            )
    elif not data.root or not data.label_config:
        raise ConfigError(
            "data.root (the folder holding sequences/) and data.label_config (semantic-kitti.yaml) "
            "must both be set for dataset semantickitti"
        )


_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def _validate_train(train: TrainConfig) -> None:
    _at_least("train", train, 1, ("val_every", "checkpoint_every"))
    _at_least("train", train, 0, ("lr",), exclusive=True)
    _at_least(
        "train",
        train,
        0,
        ("weight_decay", "warmup_epochs", "grad_clip", "time_budget_s", "num_threads", "momentum", "min_lr_ratio"),
    )
    if train.momentum >= 1 or train.min_lr_ratio > 1:
        raise ConfigError(
            f"train.momentum must be in [0, 1) and train.min_lr_ratio in [0, 1], got "
            f"{train.momentum} and {train.min_lr_ratio}"
        )
    if not _DEVICE.fullmatch(train.device):
        raise ConfigError(f"train.device must be cpu, cuda or cuda:N, got {train.device!r}")
    if not train.out_dir:
        raise ConfigError("train.out_dir must name the run folder")


# constructor arguments that other config keys fill in (pcseg.checkpoint.build_model_from_config)
_SET_ELSEWHERE = {
    "num_classes": "data.num_classes",
    "in_channels": (
        "data.use_color / room_coords / use_intensity / use_range / geometric_features / multiscale_features"
    ),
    "width_multiplier": "model.width_multiplier",
}


def _validate_model(model: ModelConfig) -> None:
    """``model.name`` must be a key of ``pcseg.models.MODELS`` and every ``model.options`` key
    a keyword of that model's constructor: checked here, so a typo fails at load time and not
    after the rooms have been generated."""
    import inspect

    from pcseg.models import MODELS  # lazy: torch is heavy and the models never import configs

    if model.name not in MODELS:
        raise ConfigError(f"unknown model.name {model.name!r}; valid models: {sorted(MODELS)}")
    parameters = inspect.signature(MODELS[model.name]).parameters
    valid = sorted(name for name in parameters if name not in _SET_ELSEWHERE)
    for key in model.options:
        if key in _SET_ELSEWHERE:
            raise ConfigError(f"model.options.{key} is set by {_SET_ELSEWHERE[key]}, not in model.options")
        if key not in parameters:
            raise ConfigError(f"unknown key model.options.{key} for model {model.name!r}; valid options: {valid}")


def _validate_refine(refine: RefineConfig) -> None:
    _at_least("refine", refine, 1, ("k",))
    _at_least("refine", refine, 0, ("iterations", "appearance_weight", "smoothness_weight"))
    _at_least("refine", refine, 0, ("position_sigma", "color_sigma", "normal_sigma"), exclusive=True)
    if refine.compatibility != "potts":
        raise ConfigError(f"refine.compatibility must be potts, got {refine.compatibility!r}")


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(values: dict, overrides: typing.Sequence[str]) -> dict:
    """Applies ``section.key=value`` strings to a raw config mapping (values parsed as YAML)."""
    values = {k: dict(v or {}) for k, v in (values or {}).items()}
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(
                f"override key {dotted!r} must be section.key, e.g. train.lr; valid sections: {list(_SECTIONS)}"
            )
        section, key = parts
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section {section!r} in override {item!r}; valid sections: {list(_SECTIONS)}")
        valid = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        if key not in valid:
            raise ConfigError(f"unknown key {section}.{key} in override; valid keys of {section!r}: {sorted(valid)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r} is not valid YAML: {_yaml_problem(error)}") from None
        values.setdefault(section, {})[key] = value
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where it is."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Reads a YAML config (``None``: all defaults) and applies ``--set`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not a text file ({error.reason} at byte {error.start})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config must be a mapping with data/model/train sections")
        for section in values:
            if section not in _SECTIONS:
                raise ConfigError(f"{path}: unknown section {section!r}; valid sections: {list(_SECTIONS)}")
    try:
        return config_from_dict(apply_overrides(values, overrides))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Writes the resolved config as YAML (readable back by ``load_config``), atomically.

    Args:
        cfg: the config.
        path: the YAML file to write.
    """
    from pcseg.utils.atomic import atomic_write_file

    atomic_write_file(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
