"""Loads the native extension and holds the input plumbing every op wrapper shares."""

from __future__ import annotations

import importlib.util
import warnings

import torch

try:
    from pcseg import _C  # noqa: F401  (registers torch.ops.pcseg.* and the CPU kernels)
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "pcseg's native extension (pcseg._C) is not built or does not match this PyTorch "
        f"({torch.__version__}): {err}. Build it with `pip install -e . --no-build-isolation` "
        "from the repository root (again after every PyTorch upgrade)."
    ) from err

HAS_CUDA_KERNELS = False
if importlib.util.find_spec("pcseg._C_cuda") is not None:
    try:
        from pcseg import _C_cuda  # noqa: F401  (registers the CUDA kernels)

        HAS_CUDA_KERNELS = True
    except ImportError as err:  # built but broken: say so rather than silently lose the GPU
        warnings.warn(f"pcseg's CUDA kernels failed to load ({err}); CUDA tensors will be refused", stacklevel=2)


def check_device(*tensors: torch.Tensor | None) -> None:
    """Refuses CUDA tensors with a clear message when the CUDA kernels were not built."""
    if HAS_CUDA_KERNELS:
        return
    for t in tensors:
        if t is not None and t.is_cuda:
            raise RuntimeError(
                "pcseg was built without CUDA support: rebuild on a machine with the CUDA "
                "toolkit (FORCE_CUDA=1 pip install -e . --no-build-isolation) or move the "
                "tensors to the CPU"
            )


def as_batch(points: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """(N, 3) -> (1, N, 3) and a flag to undo it; anything else passes through for the
    native shape check, whose message names the argument."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if points.dim() == 2:
        return points.unsqueeze(0), True
    return points, False


def full_lengths(points: torch.Tensor, lengths, name: str) -> torch.Tensor:
    """The lengths (B,) int64 of a padded (B, N, 3) batch; None means every cloud is full."""
    if lengths is None:
        batch = points.shape[0] if points.dim() >= 1 else 0
        size = points.shape[1] if points.dim() >= 2 else 0
        return torch.full((batch,), size, dtype=torch.long, device=points.device)
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=points.device)
    if lengths.dtype != torch.long:
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor (B,), got {lengths.dtype}")
        lengths = lengths.long()
    return lengths


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
