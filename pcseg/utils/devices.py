"""Checks a device name before any work is done on it.

device = check_device("cuda:1", "--device")   # torch.device, or ValueError naming --device
"""

from __future__ import annotations

import torch

__all__ = ["check_device"]


def check_device(name: str, what: str = "device") -> torch.device:
    """The ``torch.device`` that ``name`` means, checked to be present on this machine.

    Args:
        name: ``cpu``, ``cuda`` or ``cuda:N``.
        what: how the error names the setting (``"--device"``, ``"train.device"``).

    Returns:
        device: the parsed device.

    Raises:
        ValueError: naming ``what`` when the name is not a device pcseg runs on, CUDA is not
            available, or the CUDA index is beyond the devices present.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{what} must be cpu, cuda or cuda:N, got {name!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} must be cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{what} is {name!r} but CUDA is not available here "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{what} is {name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
