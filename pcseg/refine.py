"""Label refinement on the kNN graph: DeepLab's fully connected CRF made for points.

`crf` takes per-point class probabilities (a network's softmax, a fused voxel map's
distributions, painted 2D scores) and returns refined probabilities of the same shape, by
mean-field inference in a CRF whose pairwise kernels compare position, colour and normal, as
in Krähenbühl & Koltun's dense CRF (the one DeepLab applies to images). A point cloud has no
pixel lattice and millions of points, so each point talks to its k nearest neighbours
(`pcseg.ops.knn`) instead of to every other point; a message pass is then one sparse
(N, N) x (N, C) product.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from pcseg.ops import knn

__all__ = ["crf", "knn_kernel", "mean_field", "morton_order"]

# Probabilities are clipped here before the log, so a hard 0 gives a large finite unary.
_MIN_PROBABILITY = 1e-6
_ROWS_PER_THREAD = 32768


def crf(
    points,
    probabilities,
    colors=None,
    normals=None,
    *,
    k: int = 16,
    position_sigma: float = 0.05,
    color_sigma: float = 0.1,
    normal_sigma: float = 0.3,
    compatibility: str | np.ndarray = "potts",
    iterations: int = 5,
    weights: Sequence[float] = (3.0, 1.0),
) -> np.ndarray:
    """Refine per-point class probabilities by mean-field inference in a CRF on the kNN graph.

    The energy of a labelling x is  E(x) = sum_i U_i(x_i) + sum_i sum_{j in N(i)} mu(x_i, x_j) K_ij,
    with the unary U_i(l) = -log P_i(l) (P clipped at 1e-6) and N(i) the k nearest
    neighbours of point i, itself excluded. The kernel sums two Gaussians (SEGCloud's
    variant of the dense CRF's appearance and smoothness kernels):

        K_ij = w_a exp(-|p_i - p_j|^2 / (2 s_p^2) - |c_i - c_j|^2 / (2 s_c^2))
             + w_s exp(-|p_i - p_j|^2 / (2 s_p^2) - (1 - |n_i . n_j|) / s_n^2)

    where (w_a, w_s) = `weights`, s_p, s_c, s_n the sigmas; a kernel loses its colour or
    normal term when `colors` or `normals` is None. The normal term equals
    min(|n_i - n_j|^2, |n_i + n_j|^2) / (2 s_n^2), so unoriented normals work. Mean-field
    inference starts at Q^0 = P and repeats `iterations` times, for every point i and class l:

        m_i(l')   = sum_{j in N(i)} K_ij Q_j(l')                 (message passing)
        Q_i(l)    = exp(-U_i(l) - sum_{l'} mu(l, l') m_i(l')) / Z_i  (compatibility, unary, normalise)

    Potts compatibility is mu(l, l') = [l != l']: a point is pulled towards the classes its
    similar neighbours hold. The kNN graph is directed (i listens to its own k neighbours),
    which keeps every point's cost at k messages whatever the density around it.

    Args:
        points: (N, 3) float coordinates in metres (any float dtype; centred in float64, then
            float32).
        probabilities: (N, C) float class probabilities, non-negative; each row is divided by
            its sum.
        colors: (N, 3) colours, uint8 in 0..255 or float in [0, 1], or None.
        normals: (N, 3) float unit normals (oriented or not), or None.
        k: neighbours per point, >= 1.
        position_sigma: s_p, metres, > 0.
        color_sigma: s_c, in [0, 1] colour units, > 0.
        normal_sigma: s_n, > 0 (dimensionless; 1 - |cos| of the angle between normals).
        compatibility: "potts" or a (C, C) float array mu (mu[l, l'] is the cost of class l
            beside class l'; learned or hand-set).
        iterations: mean-field steps, >= 0; 0 returns the normalised input.
        weights: (w_a, w_s), the appearance (position + colour) and smoothness (position +
            normal) kernel weights, each >= 0.

    Returns:
        refined: (N, C) float32 probabilities, rows summing to 1, in the input's point order.

    Raises:
        TypeError: when `k` or `iterations` is not an int.
        ValueError: naming the argument, when `points`, `probabilities`, `colors` or `normals`
            has the wrong shape or non-finite values, `probabilities` has a negative entry
            or a row summing to 0, a sigma is not positive, `k` < 1, `iterations` < 0,
            `weights` is not two non-negative numbers, or `compatibility` is neither "potts"
            nor a finite (C, C) array.
    """
    points = _float_array(points, "points", columns=3, dtype=np.float64)
    probabilities = _float_array(probabilities, "probabilities")
    num_points, num_classes = probabilities.shape
    _check_rows(points, "points", num_points)
    if (probabilities < 0).any():
        raise ValueError("probabilities must be non-negative")
    totals = probabilities.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError(f"probabilities has {int((totals <= 0).sum())} rows summing to 0")
    colors = None if colors is None else _colors(colors, num_points)
    if normals is not None:
        normals = _float_array(normals, "normals", columns=3)
        _check_rows(normals, "normals", num_points)
    _check_int(k, "k", 1)
    _check_int(iterations, "iterations", 0)
    for value, name in (
        (position_sigma, "position_sigma"),
        (color_sigma, "color_sigma"),
        (normal_sigma, "normal_sigma"),
    ):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value}")
    weights = _weights(weights)
    mu = _compatibility(compatibility, num_classes)

    normalised = probabilities / totals
    if iterations == 0 or num_points < 2 or num_classes < 2:
        return normalised

    order = morton_order(points)

    def sorted_rows(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).index_select(0, order)

    centred = sorted_rows((points - points.mean(axis=0)).astype(np.float32))
    kernel = knn_kernel(
        centred,
        None if colors is None else sorted_rows(colors),
        None if normals is None else sorted_rows(normals),
        k=k,
        position_sigma=position_sigma,
        color_sigma=color_sigma,
        normal_sigma=normal_sigma,
        weights=weights,
    )
    p = sorted_rows(normalised)
    unary = p.clamp_min(_MIN_PROBABILITY).log_().neg_()
    q = mean_field(unary, kernel, torch.from_numpy(mu), iterations, initial=p)
    refined = torch.empty_like(q).index_copy_(0, order, q)
    return refined.numpy()


def mean_field(
    unary: torch.Tensor,
    kernel: torch.Tensor,
    compatibility: torch.Tensor,
    iterations: int,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean-field inference of a CRF with a sparse pairwise kernel (the loop inside `crf`).

    Args:
        unary: (N, C) float32 unary costs U (-log probabilities).
        kernel: (N, N) float32 sparse (CSR or COO) or dense kernel K; row i weighs the
            messages that point i receives.
        compatibility: (C, C) float32 mu.
        iterations: mean-field steps, >= 0.
        initial: (N, C) float32 Q^0; None starts from softmax(-U).

    Returns:
        q: (N, C) float32 marginals after `iterations` steps.
    """
    negative_unary = -unary
    q = initial
    if q is None:
        q = torch.empty_like(unary)
        for rows in _row_chunks(len(unary)):
            q[rows] = _softmax_over_classes(negative_unary[rows])
    for _ in range(iterations):
        messages = kernel @ q
        q = torch.empty_like(q)
        for rows in _row_chunks(len(q)):
            q[rows] = _softmax_over_classes(
                torch.addmm(negative_unary[rows], messages[rows], compatibility.T, alpha=-1.0)
            )
    return q


def _row_chunks(num_rows: int) -> list[slice]:
    """Slices of _ROWS_PER_THREAD rows per torch thread covering 0..num_rows.

    Element-wise work on (N, k + 1) or (N, C) tensors is bound by memory traffic; done a
    block of rows at a time, its temporaries stay in cache. Each thread gets a whole block:
    smaller shares add thread synchronisations, which cost most on a busy machine.
    """
    step = _ROWS_PER_THREAD * torch.get_num_threads()
    return [slice(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]


def _softmax_over_classes(logits: torch.Tensor) -> torch.Tensor:
    """softmax(logits, dim=1) of an (N, C) tensor, computed on its (C, N) transpose.

    Along the C classes of a row the softmax is a short, slow inner loop; over (C, N) it runs
    along long contiguous rows of points.
    """
    return torch.softmax(logits.T.contiguous(), dim=0).T.contiguous()


def knn_kernel(
    points: torch.Tensor,
    colors: torch.Tensor | None,
    normals: torch.Tensor | None,
    *,
    k: int,
    position_sigma: float,
    color_sigma: float,
    normal_sigma: float,
    weights: tuple[float, float],
) -> torch.Tensor:
    """The CRF's pairwise kernel K (see `crf`) over each point's k nearest neighbours, as a sparse matrix.

    Unchecked: `crf` validates the arguments and orders the points (Morton order keeps the
    rows that a message pass gathers close in memory).

    Args:
        points: (N, 3) float32 coordinates in metres, near the origin (centred).
        colors: (N, 3) float32 in [0, 1], or None.
        normals: (N, 3) float32 unit normals, or None.
        k: neighbours per point (the point itself excluded).
        position_sigma: s_p, metres.
        color_sigma: s_c.
        normal_sigma: s_n.
        weights: (w_a, w_s).

    Returns:
        kernel: (N, N) float32 sparse CSR with k + 1 stored entries per row, the point itself
            and padding (fewer than k + 1 points) stored as 0.
    """
    num_points = points.shape[0]
    # One more neighbour than asked for: the point itself comes back among them.
    dists2, idx = knn(points, points, k + 1)
    colour_channels = None if colors is None else colors.T.contiguous()
    normal_channels = None if normals is None else normals.T.contiguous()
    values = torch.empty_like(dists2)
    for rows in _row_chunks(num_points):
        values[rows] = _kernel_rows(
            dists2[rows],
            idx[rows],
            rows.start,
            colour_channels,
            normal_channels,
            position_sigma,
            color_sigma,
            normal_sigma,
            weights,
        )
    # 32-bit column indices halve the index traffic of every message pass.
    index_dtype = torch.int32 if num_points * (k + 1) < 2**31 else torch.int64
    row_starts = torch.arange(0, num_points * (k + 1) + 1, k + 1, dtype=index_dtype, device=points.device)
    with warnings.catch_warnings():
        # CSR is marked beta; the matrix is built valid by construction, so its checks are off.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            row_starts,
            idx.clamp_min(0).reshape(-1).to(index_dtype),
            values.reshape(-1),
            size=(num_points, num_points),
            check_invariants=False,
        )


def _kernel_rows(
    dists2, idx, first_row, colour_channels, normal_channels, position_sigma, color_sigma, normal_sigma, weights
) -> torch.Tensor:
    """K_ij for a block of rows i (first_row onwards) and their neighbours j = idx (see `crf`)."""
    is_self = idx == torch.arange(first_row, first_row + len(idx), device=idx.device).unsqueeze(1)
    idx = idx.clamp_min(0)
    # Padding (fewer than k + 1 points) has dists2 = +inf, so its kernel value exp(-inf) is 0.
    position = dists2 * (0.5 / position_sigma**2)
    appearance = position
    if colour_channels is not None:
        squared = _neighbour_products(colour_channels, idx, first_row, squared_difference=True)
        appearance = squared.mul_(0.5 / color_sigma**2).add_(position)
    smoothness = position
    if normal_channels is not None:
        cosine = _neighbour_products(normal_channels, idx, first_row, squared_difference=False).abs_().clamp_max_(1.0)
        smoothness = cosine.neg_().add_(1.0).mul_(1.0 / normal_sigma**2).add_(position)
    appearance_weight, smoothness_weight = weights
    values = torch.exp(-appearance).mul_(appearance_weight).add_(torch.exp(-smoothness), alpha=smoothness_weight)
    return values.masked_fill_(is_self, 0.0)


def _neighbour_products(
    channels: torch.Tensor, idx: torch.Tensor, first_row: int, squared_difference: bool
) -> torch.Tensor:
    """(R, K) |f_i - f_j|^2 (or f_i . f_j) between rows i = first_row.. and their neighbours j = idx[i].

    Features come channels first, (D, N): gathering and combining 3-wide rows is much slower
    than the same work on long contiguous rows of one channel.
    """
    flat = idx.reshape(-1)
    total = torch.zeros(idx.shape, dtype=channels.dtype, device=channels.device)
    for channel in channels:
        neighbours = channel.index_select(0, flat).view(idx.shape)
        own = channel[first_row : first_row + len(idx)].unsqueeze(1)
        if squared_difference:
            total.add_((neighbours - own).square_())
        else:
            total.addcmul_(neighbours, own)
    return total


def morton_order(points: np.ndarray) -> torch.Tensor:
    """A permutation that puts nearby points next to each other in memory (Morton order).

    The message pass gathers the rows of every point's neighbours; in Morton order those rows
    are mostly in cache, where in scan or random order each is a miss.

    Args:
        points: (N, 3) float coordinates, N >= 1.

    Returns:
        order: (N,) int64, `points[order]` sorted by the Morton code of a 1024^3 grid over
            the bounding box.
    """
    bits = 10
    extent = np.ptp(points, axis=0).max()
    scale = (2**bits - 1) / extent if extent > 0 else 0.0
    # 3 x 10 bits fit an int32, which sorts faster than an int64.
    cells = torch.from_numpy(((points - points.min(axis=0)) * scale).astype(np.int32))
    code = torch.zeros(points.shape[0], dtype=torch.int32)
    for axis in range(3):
        code |= _spread_bits(cells[:, axis]) << axis
    return torch.argsort(code)


def _spread_bits(x: torch.Tensor) -> torch.Tensor:
    """Inserts two zero bits after each of the 10 low bits of x (the Morton interleave)."""
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    return (x | (x << 2)) & 0x09249249


# ----- argument checks ------------------------------------------------------------------------
def _float_array(array, name: str, columns: int | None = None, dtype=np.float32) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 2 or (columns is not None and array.shape[1] != columns):
        expected = f"(N, {columns})" if columns is not None else "(N, C)"
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(dtype, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds non-finite values")
    return array


def _check_rows(array: np.ndarray, name: str, num_points: int) -> None:
    if array.shape[0] != num_points:
        raise ValueError(f"{name} has {array.shape[0]} rows but probabilities has {num_points}")


def _colors(colors, num_points: int) -> np.ndarray:
    raw = colors.detach().cpu().numpy() if isinstance(colors, torch.Tensor) else np.asarray(colors)
    converted = _float_array(raw, "colors", columns=3)
    _check_rows(converted, "colors", num_points)
    if raw.dtype == np.uint8:
        converted = converted / np.float32(255.0)
    return converted


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _weights(weights) -> tuple[float, float]:
    try:
        values = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array([])
    if values.shape != (2,) or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"weights must be two non-negative numbers (appearance, smoothness), got {weights!r}")
    return float(values[0]), float(values[1])


def _compatibility(compatibility, num_classes: int) -> np.ndarray:
    if isinstance(compatibility, str):
        if compatibility != "potts":
            raise ValueError(f'compatibility must be "potts" or a (C, C) array, got {compatibility!r}')
        return (1.0 - np.eye(num_classes)).astype(np.float32)
    mu = np.asarray(compatibility, dtype=np.float64)
    if mu.shape != (num_classes, num_classes) or not np.isfinite(mu).all():
        raise ValueError(f"compatibility must be a finite ({num_classes}, {num_classes}) array, got shape {mu.shape}")
    return mu.astype(np.float32)
