"""The checkpoint format: atomic save, safe load, compatibility check, the model it holds.

A checkpoint (``last.pt``, ``best.pt`` of a run folder) is a dict of tensors and plain Python
values, so it loads with ``torch.load(weights_only=True)``:

- ``format`` (``CHECKPOINT_FORMAT``), ``model`` (state dict), ``config`` (``config_to_dict``),
  ``model_name``, ``num_classes``: what inference needs;
- ``temperature`` (optional, written by ``pcseg calibrate``): the temperature scaling fitted on
  the validation rooms, applied before the softmax at inference; absent (older checkpoints,
  never calibrated) means 1;
- ``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``epoch_stats``,
  ``total_epochs``, ``best_miou``, ``rng``, ``history``: the trainer's state
  (``pcseg.train.TrainState``), for an exact ``--resume``.

Writes are atomic (``pcseg.utils.atomic.atomic_write``: a unique temporary file in the same
folder, flushed, synced and renamed), so a crash, a full disk or a SIGKILL never leaves a torn
``last.pt`` nor a temporary file behind. A file that cannot be loaded raises
``CheckpointError`` saying which file and why (empty, truncated, not a checkpoint, holding
Python objects that ``weights_only`` loading refuses). Inference (``pcseg.Segmenter``,
``pcseg predict``, ``pcseg eval``) needs this module, ``pcseg.inputs`` and ``pcseg.models``,
never the trainer.

    model, cfg, checkpoint = model_from_checkpoint("runs/x/best.pt", device="cpu")
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from pcseg.config import Config, config_from_dict
from pcseg.inputs import input_channels
from pcseg.models import acnn_block_preset, build_model
from pcseg.utils.atomic import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "CheckpointMismatchError",
    "atomic_save",
    "load_checkpoint",
    "check_compatible",
    "build_model_from_config",
    "model_from_checkpoint",
    "saved_config",
    "checkpoint_temperature",
    "store_temperature",
]

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A file that cannot be loaded as a pcseg checkpoint (the message names it and says why)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint made for another model or class count than the one asked for."""


def atomic_save(obj: dict, path: str | Path) -> None:
    """Writes ``obj`` with ``torch.save`` to ``path`` all at once (``pcseg.utils.atomic.atomic_write``).

    Args:
        obj: the checkpoint dict (tensors and plain values only).
        path: the file to write; a previous file stays intact when the write fails.

    Raises:
        OSError: when the write fails (full disk, file-size limit); nothing is left behind.
    """
    try:
        with atomic_write(path) as handle:
            torch.save(obj, handle)
    except RuntimeError as error:
        # torch.save reports a failed write (full disk, file-size limit) as the RuntimeError
        # of its zip writer; the OSError behind it says what happened
        cause = error.__cause__ or error.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, f"cannot write checkpoint {path}: {cause.strerror}") from error
        raise


def _load_failure(path: Path, error: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in words that never advise unsafe loading."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        return (
            f"the file is truncated or not a torch checkpoint ({size:,} bytes without the zip "
            "directory that ends every torch.save file)"
        )
    if isinstance(error, pickle.UnpicklingError):
        return (
            "it holds Python objects other than tensors and plain values, which pcseg never loads "
            "(a checkpoint could run code when unpickled)"
        )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"the file is damaged ({type(error).__name__}: {first_line})"


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Loads a pcseg checkpoint with ``weights_only=True``.

    Args:
        path: a ``last.pt`` / ``best.pt`` written by ``pcseg train``.
        map_location: where the tensors go (``torch.load``'s argument).

    Returns:
        checkpoint: the dict described in the module docstring.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        CheckpointError: (a ``ValueError``) naming ``path`` and the reason when it cannot be loaded
            (empty, truncated, damaged, unsafe objects) or is not a pcseg checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        KeyError,
        AttributeError,
        TypeError,
        IndexError,
        UnicodeDecodeError,
    ) as error:
        raise CheckpointError(f"cannot load checkpoint {path}: {_load_failure(path, error)}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a pcseg checkpoint (format {CHECKPOINT_FORMAT})")
    missing = [key for key in ("config", "model_name", "num_classes") if key not in checkpoint]
    if missing or not isinstance(checkpoint["config"], dict):
        raise CheckpointError(f"{path} is not a complete pcseg checkpoint: it lacks {missing or ['config']}")
    return checkpoint


def check_compatible(checkpoint: dict, cfg: Config, path: str | Path) -> None:
    """Checks that ``checkpoint`` holds the model ``cfg`` describes.

    Args:
        checkpoint: a dict from ``load_checkpoint``.
        cfg: the config it is to be used with.
        path: the checkpoint's file, named in the error.

    Raises:
        CheckpointMismatchError: when the model name, class count, input channels or width differ.
    """
    saved = saved_config(checkpoint, path)
    if saved.model.name != cfg.model.name:
        raise CheckpointMismatchError(
            f"checkpoint {path} holds model {saved.model.name!r}, the config asks for {cfg.model.name!r}"
        )
    if saved.data.num_classes != cfg.data.num_classes:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained for {saved.data.num_classes} classes, the config asks for "
            f"{cfg.data.num_classes}"
        )
    if (
        input_channels(saved.data) != input_channels(cfg.data)
        or saved.model.width_multiplier != cfg.model.width_multiplier
    ):
        raise CheckpointMismatchError(
            f"checkpoint {path} has {input_channels(saved.data)} input channels and width "
            f"{saved.model.width_multiplier}, the config {input_channels(cfg.data)} and {cfg.model.width_multiplier}"
        )


def build_model_from_config(cfg: Config) -> torch.nn.Module:
    """A freshly initialised model as ``cfg`` describes it.

    Args:
        cfg: the config: ``model.name``, ``model.width_multiplier``, ``model.block_preset`` and
            ``model.options``; the class count and input channels come from ``cfg.data``.

    Returns:
        model: the ``pcseg.models`` segmentation model (in train mode, on the CPU).
    """
    kwargs = {
        "num_classes": cfg.data.num_classes,
        "in_channels": input_channels(cfg.data),
        "width_multiplier": cfg.model.width_multiplier,
    }
    if cfg.model.block_preset:
        kwargs.update(acnn_block_preset(cfg.data.num_points))
    kwargs.update(cfg.model.options)
    return build_model(cfg.model.name, **kwargs)


def model_from_checkpoint(
    path: str | Path, device="cpu", cfg: Config | None = None
) -> tuple[torch.nn.Module, Config, dict]:
    """Builds the checkpoint's model from its own config and loads its weights.

    Args:
        path: a checkpoint written by ``pcseg train``.
        device: where the model goes.
        cfg: when given, the config the checkpoint must be compatible with (``check_compatible``).

    Returns:
        model: the model in eval mode on ``device``.
        config: the checkpoint's own ``Config``.
        checkpoint: the loaded dict.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        CheckpointError: when it is not a loadable pcseg checkpoint or its weights do not fit
            the model its config describes.
        CheckpointMismatchError: when it does not match ``cfg``.
    """
    checkpoint = load_checkpoint(path)
    saved = saved_config(checkpoint, path)
    if cfg is not None:
        check_compatible(checkpoint, cfg, path)
    model = build_model_from_config(saved)
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit model {saved.model.name!r} ({reason})"
        ) from None
    return model.to(device).eval(), saved, checkpoint


def saved_config(checkpoint: dict, path: str | Path) -> Config:
    """The ``Config`` a loaded checkpoint was trained with.

    Args:
        checkpoint: a dict from ``load_checkpoint``.
        path: its file, named in the error.

    Returns:
        config: the checkpoint's own config.

    Raises:
        CheckpointError: when the stored config no longer fits the schema (e.g. a removed key).
    """
    try:
        return config_from_dict(checkpoint["config"])
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} holds a config pcseg cannot read: {error}") from None


def checkpoint_temperature(checkpoint: dict, path: str | Path = "checkpoint") -> float:
    """The temperature a loaded checkpoint stores (``pcseg calibrate``); 1 when it has none.

    Args:
        checkpoint: a dict from ``load_checkpoint``.
        path: its file, named in the error.

    Returns:
        temperature: T > 0; inference divides the logits by it before the softmax.

    Raises:
        CheckpointError: when the stored temperature is not a positive finite number.
    """
    value = checkpoint.get("temperature", 1.0)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise CheckpointError(f"checkpoint {path} holds temperature {value!r}, not a positive number")
    return float(value)


def store_temperature(path: str | Path, temperature: float) -> None:
    """Rewrites a checkpoint with ``temperature`` stored in it (atomically: ``atomic_save``).

    Args:
        path: a checkpoint written by ``pcseg train``.
        temperature: T > 0 (``pcseg.calibration.fit_temperature``).

    Raises:
        ValueError: when ``temperature`` is not a positive finite number.
        FileNotFoundError: when ``path`` is not a file.
        CheckpointError: when it is not a loadable pcseg checkpoint.
    """
    if isinstance(temperature, bool) or not (0 < float(temperature) < float("inf")):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    checkpoint = load_checkpoint(path)
    checkpoint["temperature"] = float(temperature)
    atomic_save(checkpoint, path)
