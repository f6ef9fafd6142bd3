"""Building blocks shared by the models: masked batch norm, shared MLPs, masked max-pool.

Padding rule: a padded batch ``points (B, N, 3)`` with ``lengths (B,)`` has its real points
first. Point-wise layers never mix points, so padding can only leak into real points' outputs
through (1) max-pools and (2) batch-norm statistics in train mode. ``masked_max`` fills padding
with ``-inf`` before the max; ``MaskedBatchNorm`` computes train-mode statistics over the real
entries only (and updates the running statistics from them), so a padded batch trains like the
same clouds without padding. In eval mode batch norm is per-entry, hence exactly invariant.

Under ``torch.distributed`` (more than one process) every batch norm in train mode, masked or
not and in the fully connected heads too, takes its statistics over the real entries of all
processes (sums and counts all-reduced, gradients through them all-reduced back), so N
processes with batch B train like one process with batch N * B. (``nn.SyncBatchNorm`` does
this on GPUs only; this also works with gloo on CPUs, and with the padding mask.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def scaled(width: int, width_multiplier: float) -> int:
    """A hidden width scaled by ``width_multiplier`` (at least 1 channel)."""
    return max(1, int(round(width * width_multiplier)))


def no_aux_loss(points: torch.Tensor) -> dict[str, torch.Tensor]:
    """The aux dict of a model without an auxiliary training loss.

    Args:
        points: the model's (B, N, 3) input, which gives the dtype and device.

    Returns:
        aux: ``{"loss": 0-d zero tensor}``.
    """
    return {"loss": points.new_zeros(())}


def lengths_mask(lengths: torch.Tensor | None, batch: int, num_points: int, device) -> torch.Tensor | None:
    """The mask of real points of a padded batch.

    Args:
        lengths: (B,) int64 real points per cloud, or None.
        batch: B.
        num_points: N.
        device: where the mask goes.

    Returns:
        mask: (B, N) bool, or None when ``lengths`` is None (no padding).

    Raises:
        ValueError: when ``lengths`` is not (B,) or lies outside [1, N].
    """
    if lengths is None:
        return None
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if (lengths < 1).any() or (lengths > num_points).any():
        raise ValueError(f"lengths must lie in [1, {num_points}], got {lengths.tolist()}")
    return torch.arange(num_points, device=device)[None, :] < lengths.to(device)[:, None]


def check_inputs(points: torch.Tensor, features: torch.Tensor | None, in_channels: int) -> None:
    """Checks a model's inputs against the channels it was built for.

    Args:
        points: (B, N, 3) coordinates.
        features: (B, N, in_channels) per-point features, or None.
        in_channels: the model's feature channels.

    Raises:
        ValueError: naming the argument whose shape is wrong.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    if in_channels == 0:
        if features is not None and features.shape[-1] != 0:
            raise ValueError(f"model was built with in_channels=0 but got features {tuple(features.shape)}")
        return
    if features is None:
        raise ValueError(f"model was built with in_channels={in_channels}: pass features (B, N, {in_channels})")
    if features.shape != points.shape[:2] + (in_channels,):
        raise ValueError(
            f"features must be (B, N, {in_channels}) = {tuple(points.shape[:2]) + (in_channels,)}, "
            f"got {tuple(features.shape)}"
        )


# masked_max slices at most this many padded clouds one by one (a Python loop on the CPU); beyond,
# one masked copy of the batch is cheaper
_MAX_SLICED_CLOUDS = 32


def max_over(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.amax(dim)``, through ``x.max(dim)`` when a gradient will flow back.

    ``amax``'s backward spreads the gradient over tied maxima, which costs a float copy of the
    whole input's equality mask and two more passes over it; ``max`` keeps the index of one
    maximum and scatters the gradient there, a valid subgradient at ties. Its forward is slower,
    so inference keeps ``amax``.

    Args:
        x: float tensor.
        dim: the dimension reduced.

    Returns:
        pooled: ``x`` reduced over ``dim``.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return x.max(dim=dim).values
    return x.amax(dim=dim)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None, dim: int, channels_last: bool = False) -> torch.Tensor:
    """Max over ``dim`` ignoring masked-out entries.

    Args:
        x: (B, C, ...) features, or (B, ..., C) with ``channels_last``.
        mask: (B, ...) bool, True for real entries; None: all real.
        dim: the dimension reduced.
        channels_last: the layout of ``x``.

    Returns:
        pooled: ``x`` reduced over ``dim``.
    """
    if mask is None:
        return max_over(x, dim)
    if x.device.type == "cpu" and mask.dim() == 2 and len(mask) and dim == (1 if channels_last else 2):
        counts = mask.sum(-1)
        partial = (counts < mask.shape[-1]).nonzero().flatten()
        prefix = torch.arange(mask.shape[-1]) < counts[:, None]
        if len(partial) <= _MAX_SLICED_CLOUDS and bool(counts.min() > 0) and torch.equal(mask, prefix):
            # real points first (the models' padded batches): each padded cloud's max over its
            # real rows, a view, instead of a masked copy of the whole batch
            pooled = max_over(x, dim)
            if len(partial):
                ends = counts[partial].tolist()
                rows = [x[b, :end] if channels_last else x[b, :, :end] for b, end in zip(partial.tolist(), ends)]
                pooled = pooled.index_put((partial,), torch.stack([max_over(r, dim - 1) for r in rows]))
            return pooled
    x = x.masked_fill(~(mask.unsqueeze(-1) if channels_last else mask.unsqueeze(1)), float("-inf"))
    return max_over(x, dim)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes. Its gradient is again the sum over the processes: every
    process's loss depends on every process's contribution to the sum."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def _global_moments(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and biased variance ``(C,)`` of ``real (n, C)`` float32 over the entries of all
    processes, and their total count. Two passes (sum, then centred squares) as in one process;
    the gradients of the sums are all-reduced back, so every process's inputs get the gradient
    of the statistics of the whole global batch."""
    all_reduce = _AllReduceSum.apply
    count = real.new_tensor([real.shape[0]])
    total = all_reduce(torch.cat([real.sum(0), count]))
    n = int(total[-1])
    if n < 2:
        raise ValueError("batch norm in train mode needs at least 2 real entries per channel")
    mean = total[:-1] / n
    var = all_reduce((real - mean).square().sum(0)) / n
    return mean, var, n


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm whose train-mode statistics skip padding (and span all processes under
    ``torch.distributed``, see the module docstring).

    Channels at dim 1 of ``(B, C, *S)`` (``channels_last=False``) or at the last dim of
    ``(*S, C)`` (``channels_last=True``). ``mask`` (``(B, *S)`` or ``S`` bool) marks real entries;
    None means all are real (plain ``F.batch_norm`` in one process). Parameters and buffers are
    those of ``nn.BatchNorm1d``. Masked and synchronised statistics are taken in float32 even
    under bf16 autocast; the output has the input's dtype.
    """

    def __init__(self, num_features: int, channels_last: bool = False, **kwargs):
        super().__init__(num_features, **kwargs)
        self.channels_last = channels_last

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,  # type: ignore[override]
        channels_last: bool | None = None,
    ) -> torch.Tensor:
        """``channels_last`` overrides the layout given at construction for this call."""
        channels_last = self.channels_last if channels_last is None else channels_last
        y = _batch_norm(
            x, mask, channels_last, self.weight, self.bias, self.running_mean, self.running_var, self._settings()
        )
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return y

    def _settings(self) -> tuple[bool, bool, float, float]:
        """(use batch statistics, synchronise across processes, momentum, eps)."""
        use_batch_stats = self.training or self.running_mean is None
        momentum = self.momentum if self.momentum is not None else 0.1
        # train mode only: in eval mode the processes may run different numbers of batches
        # (validation shares), so a collective there could wait forever
        synchronise = self.training and _distributed()
        return use_batch_stats, synchronise, momentum, self.eps


def batch_norm_side_by_side(norms: Sequence[MaskedBatchNorm], x: torch.Tensor, mask: torch.Tensor | None):
    """Several channels-last ``MaskedBatchNorm`` applied to their channels of one tensor.

    ``x (..., C_1 + C_2 + ...)`` holds the inputs of ``norms[0]``, ``norms[1]``, ... side by side;
    the result equals ``torch.cat([norm_i(x_i, mask) for i])`` (per-channel statistics do not mix
    channels) in one batch-norm call instead of one per module, and each module's running
    statistics and batch counter are updated as its own call would.

    Args:
        norms: modules in one mode (train or eval) with equal momentum and eps.
        x: (..., sum of num_features) float.
        mask: (...) bool real entries, or None.

    Returns:
        y: like ``x``.
    """
    if len(norms) == 1:
        return norms[0](x, mask, channels_last=True)
    settings = norms[0]._settings()
    tracked = norms[0].running_mean is not None
    running_mean = torch.cat([n.running_mean for n in norms]) if tracked else None
    running_var = torch.cat([n.running_var for n in norms]) if tracked else None
    weight = torch.cat([n.weight for n in norms]) if norms[0].weight is not None else None
    bias = torch.cat([n.bias for n in norms]) if norms[0].bias is not None else None
    y = _batch_norm(x, mask, True, weight, bias, running_mean, running_var, settings)
    if norms[0].training and tracked:
        sizes = [n.num_features for n in norms]
        with torch.no_grad():
            for n, mean, var in zip(norms, running_mean.split(sizes), running_var.split(sizes)):
                n.running_mean.copy_(mean)
                n.running_var.copy_(var)
                n.num_batches_tracked.add_(1)
    return y


def _batch_norm(x, mask, channels_last, weight, bias, running_mean, running_var, settings):
    """``MaskedBatchNorm``'s computation on explicit parameters and buffers (updated in place)."""
    use_batch_stats, synchronise, momentum, eps = settings
    if not synchronise and (mask is None or not use_batch_stats):
        flat = x.reshape(-1, x.shape[-1]) if channels_last else x
        y = F.batch_norm(flat, running_mean, running_var, weight, bias, use_batch_stats, momentum, eps)
        return y.reshape(x.shape)
    entries = x if channels_last else x.movedim(1, -1)  # (..., C)
    real = (entries.reshape(-1, entries.shape[-1]) if mask is None else entries[mask]).float()  # (n_real, C)
    if synchronise:
        mean, var, n = _global_moments(real)
    else:
        n = real.shape[0]
        if n < 2:
            raise ValueError("batch norm in train mode needs at least 2 real entries per channel")
        mean = real.mean(0)
        var = real.var(0, unbiased=False)
    if use_batch_stats and running_mean is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    view = (-1,) if channels_last else (1, -1) + (1,) * (x.dim() - 2)
    return (x.float() * scale.view(view) + shift.view(view)).to(x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on the CPU (``dropout_scale``); same expectation and
    variance, drawn from torch's generator like ``F.dropout`` (so ``torch.manual_seed`` makes
    it reproducible), in one multiply forward and one backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        return x * dropout_scale(x, self.p)


def dropout_scale(x: torch.Tensor, p: float) -> torch.Tensor:
    """The dropout multiplier of each element of ``x``: 0 with probability ``p`` (rounded to a
    multiple of 2^-16), else ``1 / (1 - p)``.

    torch's generator spends one draw per element in ``rand_like`` or ``bernoulli_``; here
    each 64-bit draw gives four 16-bit uniform integers, one per element.

    Args:
        x: any tensor (its shape, dtype and device are used).
        p: the drop probability, in (0, 1).

    Returns:
        scale: like ``x``, each element 0 or ``1 / (1 - p)``.
    """
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    uniform16 = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-2^15, 2^15)
    threshold = min(round(p * 65536), 65535) - 32768
    return (uniform16 >= threshold).to(x.dtype) * (1.0 / (1.0 - p))


class SharedMLP(nn.Module):
    """Point-wise ``Conv1d(k=1) -> MaskedBatchNorm -> ReLU`` layers on ``(B, C, N)``.

    ``last_plain=True`` makes the last layer a bare convolution (a classifier head).
    ``forward_channels_last`` computes the same on ``(B, N, C)`` with the same parameters, as
    ``F.linear``: one GEMM per layer, cheaper forward and backward than ``conv1d`` at the demo
    model's widths on the CPU. Models whose inputs are channels-last use it (PointNetSemSeg);
    for (B, C, N) callers the two transposes would cost more than the GEMMs gain (figures in
    benchmarks/RESULTS.md).
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], last_plain: bool = False, dropout_before_last: float = 0.0
    ):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.last_plain = last_plain
        self.dropout = Dropout(dropout_before_last) if dropout_before_last > 0 else None
        c = in_channels
        for i, w in enumerate(widths):
            self.convs.append(nn.Conv1d(c, w, 1))
            if not (last_plain and i == len(widths) - 1):
                self.norms.append(MaskedBatchNorm(w))
            c = w
        self.out_channels = c

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, C_in, N)``, ``mask (B, N)`` or None -> ``(B, C_out, N)``."""
        n = len(self.convs)
        for i, conv in enumerate(self.convs):
            if self.last_plain and i == n - 1:
                if self.dropout is not None:
                    x = self.dropout(x)
                return conv(x)
            x = F.relu(self.norms[i](conv(x), mask, channels_last=False))
        return x

    def forward_channels_last(
        self, h: torch.Tensor, mask: torch.Tensor | None = None, first_applied: bool = False
    ) -> torch.Tensor:
        """``h (B, N, C_in)`` contiguous, ``mask (B, N)`` or None -> ``(B, N, C_out)``; what
        ``forward`` computes, without its two transposes. ``first_applied``: ``h`` already holds
        the first layer's linear map, ``F.linear`` with ``linear_weights(0)``, computed by the
        caller (``h`` is then scratch: it may be overwritten). In eval mode each batch norm is
        folded into its layer's weights (``linear_weights``): one GEMM and one ReLU per layer,
        no normalisation pass."""
        n = len(self.convs)
        for i in range(n):
            last = self.last_plain and i == n - 1
            if last and self.dropout is not None:
                h = self.dropout(h)
            if not (first_applied and i == 0):
                h = F.linear(h, *self.linear_weights(i))
            if not last:
                if not self._folds(i):
                    h = self.norms[i](h, mask, channels_last=True)
                # in place only without autograd: on the batch norm's reshaped output (a view) an
                # in-place ReLU makes the backward copy the whole gradient (CopySlices)
                h = F.relu(h, inplace=not (h.requires_grad and torch.is_grad_enabled()))
        return h

    def linear_weights(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s ``(C_out, C_in)`` weight and ``(C_out,)`` bias as ``F.linear`` takes them;
        in eval mode with the batch norm's running statistics and affine map folded in
        (``W s``, ``(b - mean) s + beta`` with ``s = gamma / sqrt(var + eps)``)."""
        weight, bias = self.convs[i].weight.squeeze(-1), self.convs[i].bias
        if not self._folds(i):
            return weight, bias
        norm = self.norms[i]
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.weight is not None:
            scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        return weight * scale[:, None], bias * scale + shift

    def _folds(self, i: int) -> bool:
        """Whether layer ``i``'s batch norm is an affine map folded into its weights: eval mode
        with running statistics."""
        if i >= len(self.norms):
            return False
        norm = self.norms[i]
        return not norm.training and norm.running_mean is not None


class FullyConnected(nn.Module):
    """``Linear -> BatchNorm1d -> ReLU (-> Dropout)`` stack on ``(B, C)`` global features (the
    batch norm is a ``MaskedBatchNorm``, a subclass, so that it synchronises under DDP)."""

    def __init__(self, in_channels: int, widths: Sequence[int], dropout: float = 0.0, dropout_every: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            # MaskedBatchNorm without a mask is nn.BatchNorm1d in one process and synchronised in several
            layers += [nn.Linear(c, w), MaskedBatchNorm(w), nn.ReLU(inplace=True)]
            if dropout > 0 and dropout_every:
                layers.append(nn.Dropout(dropout))
            c = w
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
