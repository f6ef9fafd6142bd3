"""Point-cloud augmentations, grid subsampling and batching.

A sample is a dict of numpy arrays with fixed keys: coord (N, 3) float32 and, when
present, color (N, 3) float32 in [0, 1], normal (N, 3) float32, label (N,) int64,
instance (N,) int64; other entries are carried along untouched (per-point arrays, i.e.
arrays whose first dimension is N, are subsampled together with the points).

Every transform is a small dataclass called as `transform(sample, rng)` with a
`numpy.random.Generator`, so augmentation is reproducible from one seed:

    augment = Compose([RandomRotateZ(), RandomScale(0.9, 1.1), RandomJitter(0.01)])
    sample = augment(sample, np.random.default_rng(seed))
    batch = collate([sample_a, sample_b])       # padded torch tensors + lengths
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Label written into padding (torch's cross-entropy default ignore_index, as pcseg.losses).
IGNORE_INDEX = -100
POINT_KEYS = ("coord", "color", "normal", "label", "instance")


def _per_point_keys(sample: dict) -> list[str]:
    n = len(sample["coord"])
    return [k for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n]


def select_points(sample: dict, index: np.ndarray) -> dict:
    """The sample restricted to some points, every per-point array at once.

    Args:
        sample: a sample dict (see the module docstring).
        index: (N,) bool mask or (M,) int64 rows.

    Returns:
        sample: a new dict with the per-point arrays indexed and the other entries as they were.
    """
    out = dict(sample)
    for key in _per_point_keys(sample):
        out[key] = sample[key][index]
    return out


@dataclass
class Compose:
    """Applies transforms in order.

    Args:
        transforms: callables `(sample, rng) -> sample`.
    """

    transforms: Sequence

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


@dataclass
class RandomRotateZ:
    """Rotates coord (and normal) about the z axis through the origin.

    Args:
        max_angle: the angle is uniform in [-max_angle, max_angle] radians.
    """

    max_angle: float = math.pi

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        angle = rng.uniform(-self.max_angle, self.max_angle)
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
        out = dict(sample)
        out["coord"] = (sample["coord"] @ rot.T).astype(np.float32)
        if "normal" in sample:
            out["normal"] = (sample["normal"] @ rot.T).astype(np.float32)
        return out


@dataclass
class RandomScale:
    """Scales coord by a random factor.

    Args:
        low: smallest factor.
        high: largest factor (the factor is uniform in [low, high]).
        anisotropic: one factor per axis instead of one for all.
    """

    low: float = 0.9
    high: float = 1.1
    anisotropic: bool = False

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        factor = rng.uniform(self.low, self.high, 3 if self.anisotropic else 1)
        out = dict(sample)
        out["coord"] = (sample["coord"] * factor).astype(np.float32)
        if "normal" in sample and self.anisotropic:
            # normals transform with the inverse scale, then renormalise
            normal = sample["normal"] / factor
            out["normal"] = (normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)).astype(
                np.float32
            )
        return out


@dataclass
class RandomJitter:
    """Adds clipped Gaussian noise to coord.

    Args:
        sigma: standard deviation in metres.
        clip: the noise is clipped to +-clip metres.
    """

    sigma: float = 0.01
    clip: float = 0.05

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        noise = np.clip(rng.normal(0.0, self.sigma, sample["coord"].shape), -self.clip, self.clip)
        out = dict(sample)
        out["coord"] = (sample["coord"] + noise).astype(np.float32)
        return out


@dataclass
class ColorJitter:
    """Adds Gaussian noise and a random global brightness shift to colours in [0, 1], then clips.

    Args:
        std: standard deviation of the per-value noise.
        brightness: the shift is uniform in +-brightness.
    """

    std: float = 0.05
    brightness: float = 0.1

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        color = sample["color"].astype(np.float32)
        color = color + rng.normal(0.0, self.std, color.shape) + rng.uniform(-self.brightness, self.brightness)
        out = dict(sample)
        out["color"] = np.clip(color, 0.0, 1.0).astype(np.float32)
        return out


@dataclass
class ColorDrop:
    """Sets every colour to one value, at random.

    So a model cannot rely on colour alone, as Pointcept's ChromaticAutoContrast/drop.

    Args:
        p: probability of dropping the colours of a sample.
        value: the colour written, in [0, 1].
    """

    p: float = 0.2
    value: float = 0.5

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        out["color"] = np.full_like(sample["color"], self.value, dtype=np.float32)
        return out


@dataclass
class RandomPointDropout:
    """Drops a random fraction of the points.

    Args:
        max_ratio: the fraction is uniform in [0, max_ratio].
    """

    max_ratio: float = 0.2

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        n = len(sample["coord"])
        ratio = rng.uniform(0.0, self.max_ratio)
        keep = rng.random(n) >= ratio
        if not keep.any():
            keep[rng.integers(n)] = True
        return select_points(sample, keep)


@dataclass
class NormalizeCoord:
    """Centres coord, optionally into the unit sphere.

    Args:
        center: "mean" centres on the mean, "floor" on (mean x, mean y, min z).
        unit_sphere: then divide by the largest distance from that centre.

    Raises:
        ValueError: on call, when `center` is neither "mean" nor "floor".
    """

    center: str = "mean"
    unit_sphere: bool = False

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        coord = sample["coord"].astype(np.float64)
        if self.center == "mean":
            origin = coord.mean(0)
        elif self.center == "floor":
            origin = np.array([coord[:, 0].mean(), coord[:, 1].mean(), coord[:, 2].min()])
        else:
            raise ValueError(f"center must be 'mean' or 'floor', got {self.center!r}")
        coord = coord - origin
        if self.unit_sphere:
            radius = np.linalg.norm(coord, axis=1).max()
            coord = coord / (radius if radius > 0 else 1.0)
        out = dict(sample)
        out["coord"] = coord.astype(np.float32)
        return out


def grid_subsample(sample: dict, voxel_size: float, num_classes: int | None = None) -> dict:
    """Keeps one point per occupied voxel.

    The kept point has the mean coord, mean colour and mean (renormalised) normal of its
    voxel and the voxel's majority label (ties -> smallest label; labels < 0, i.e.
    ignored, do not vote; a voxel of ignored points only gets IGNORE_INDEX). Other
    per-point arrays take the value of the voxel's first point. Voxels come out in
    lexicographic (x, y, z) voxel order.

    Args:
        sample: a sample dict (see the module docstring).
        voxel_size: voxel edge in metres.
        num_classes: labels must be < num_classes; None takes the largest label + 1.

    Returns:
        sample: the subsampled dict (M points) plus voxel_of_point (N,) int64, each input
            point's output row.

    Raises:
        ValueError: when `voxel_size` or `num_classes` is not positive, or a label is >=
            num_classes (its vote would land in the next voxel's row).
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    coord = np.asarray(sample["coord"], dtype=np.float64)
    keys = np.floor((coord - coord.min(0)) / voxel_size).astype(np.int64)
    _, first, inverse, counts = np.unique(keys, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    num_voxels = len(first)

    def mean(values: np.ndarray) -> np.ndarray:
        sums = np.zeros((num_voxels, values.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, values)
        return sums / counts[:, None]

    out = select_points(sample, first)
    out["coord"] = mean(coord).astype(np.float32)
    if "color" in sample:
        color = np.asarray(sample["color"])
        color_mean = mean(color.astype(np.float64))
        if color.dtype == np.uint8:
            color_mean = np.round(color_mean)
        out["color"] = color_mean.astype(color.dtype)
    if "normal" in sample:
        normal = mean(np.asarray(sample["normal"], np.float64))
        norm = np.linalg.norm(normal, axis=1, keepdims=True)
        out["normal"] = np.where(norm > 1e-12, normal / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
    if "label" in sample:
        label = np.asarray(sample["label"]).astype(np.int64)
        valid = label >= 0
        classes = num_classes if num_classes is not None else int(label.max(initial=-1)) + 1
        if label.size and label.max() >= classes:
            # votes are counted in one flat array of num_voxels * classes bins
            raise ValueError(
                f"sample['label'] holds label {int(label.max())}, out of range for "
                f"num_classes={classes} (labels must be 0..{classes - 1}, or < 0 to ignore)"
            )
        if classes > 0:
            votes = np.bincount(inverse[valid] * classes + label[valid], minlength=num_voxels * classes)
            votes = votes.reshape(num_voxels, classes)
            out["label"] = np.where(votes.sum(1) > 0, votes.argmax(1), IGNORE_INDEX).astype(np.int64)
        else:
            out["label"] = np.full(num_voxels, IGNORE_INDEX, dtype=np.int64)
    out["voxel_of_point"] = inverse.astype(np.int64)
    return out


@dataclass
class GridSubsample:
    """Transform wrapper of `grid_subsample` (drops the `voxel_of_point` map).

    Args:
        voxel_size: voxel edge in metres.
        num_classes: labels must be < num_classes; None takes the largest label + 1.
    """

    voxel_size: float = 0.04
    num_classes: int | None = None

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        out = grid_subsample(sample, self.voxel_size, self.num_classes)
        del out["voxel_of_point"]
        return out


def collate(samples: Sequence[dict]) -> dict:
    """Batches samples of different sizes into padded tensors.

    Per-point arrays (first dimension = that sample's number of points) become
    (B, N_max, ...) tensors padded with 0, except `label`, padded with IGNORE_INDEX (-100) so
    that losses skip the padding and returned int64 whatever its integer dtype (uint8 labels
    cannot hold -100). Other arrays of equal shape are stacked to (B, ...); anything else
    (names, ids) is returned as a list. Float arrays become float32 tensors except float64
    (kept).

    Args:
        samples: sample dicts with the same keys, each with a coord (N_i, 3).

    Returns:
        batch: a dict of the batched entries plus lengths (B,) int64, each sample's point count.

    Raises:
        ValueError: when `samples` is empty, the keys differ, a sample has no coord, or a
            `label` does not hold integers.
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    keys = list(samples[0].keys())
    for i, sample in enumerate(samples):
        if set(sample.keys()) != set(keys):
            raise ValueError(f"sample {i} has keys {sorted(sample.keys())}, sample 0 has {sorted(keys)}")
        if "coord" not in sample:
            raise ValueError(f"sample {i} has no 'coord'")
    lengths = [len(s["coord"]) for s in samples]
    n_max = max(lengths)
    batch: dict = {"lengths": torch.tensor(lengths, dtype=torch.int64)}
    for key in keys:
        values = [s[key] for s in samples]
        arrays = [v.numpy() if isinstance(v, torch.Tensor) else v for v in values]
        if all(isinstance(a, np.ndarray) for a in arrays):
            per_point = all(a.ndim >= 1 and len(a) == n for a, n in zip(arrays, lengths))
            if per_point and key != "lengths":
                first = arrays[0]
                fill, dtype = 0, first.dtype
                if key == "label":
                    fill, dtype = IGNORE_INDEX, np.int64
                    for i, a in enumerate(arrays):
                        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
                            raise ValueError(f"sample {i}: 'label' must hold integers, got dtype {a.dtype}")
                padded = np.full((len(arrays), n_max) + first.shape[1:], fill, dtype=dtype)
                for i, a in enumerate(arrays):
                    padded[i, : len(a)] = a
                batch[key] = torch.from_numpy(padded)
            elif all(a.shape == arrays[0].shape for a in arrays):
                batch[key] = torch.from_numpy(np.stack(arrays))
            else:
                batch[key] = [torch.from_numpy(np.asarray(a)) for a in arrays]
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
