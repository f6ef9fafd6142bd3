"""Pseudo-labels from 2D segmentations: fuse posed frames, keep what the views agree on.

A 3D training set from a 2D network and a sensor rig, with no 3D annotation:

    cloud, manifest = fused_cloud_from_folder("frames/")     # a `pcseg fuse` folder
    labels = pseudo_labels(cloud, PseudoLabelThresholds())    # -1 where not confident

The frames are fused twice with a `pcseg.Fuser`: in the folder's mode (its distribution gives
the label and its confidence) and in "vote" mode (the share of the observations whose 2D
label equals the fused label: agreement between views). A voxel keeps its fused label when
all three tests pass: max probability >= `min_probability`, frames that observed it >=
`min_observations`, agreement >= `min_agreement`; every other voxel gets the ignore label -1,
never a guess, so the loss skips it (`data.ignore_index: -1`).

Which points: one point per occupied voxel, at the mean position of the points that fell
into it, with their mean colour. The frames' back-projected points repeat every surface once
per view (and more densely near the cameras); the voxel points sample each surface once, at
the map's resolution, and each carries exactly the distribution that was tested.

`pcseg pseudolabel FRAMES... --out DATASET` writes a data set (`write_pseudo_dataset`):

    DATASET/train/<name>.ply   x y z (float32), red green blue (uint8), label (int32, -1 = unlabelled)
    DATASET/val/<name>.ply
    DATASET/classes.yaml       names, colors, ignore_label: -1
    DATASET/pseudolabel_report.json   thresholds, coverage per folder and threshold

With several folders the last `val_folders` go to val/; a single folder is split in space:
its points beyond the `1 - val_share` quantile of x go to val/.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.fuser import Fuser

__all__ = [
    "PseudoLabelThresholds",
    "FusedCloud",
    "thresholds_from_dict",
    "load_thresholds",
    "fused_cloud",
    "fused_cloud_from_folder",
    "confident_mask",
    "pseudo_labels",
    "threshold_report",
    "write_pseudo_dataset",
    "pseudolabel_folders",
    "IGNORE_LABEL",
]

# The label of points the views do not agree on; the folder data set's `ignore_label`.
IGNORE_LABEL = -1


@dataclass
class PseudoLabelThresholds:
    """When a fused voxel is confident enough to become a training label.

    Attributes:
        min_probability: the least max probability of the fused distribution.
        min_observations: the least number of frames that observed the voxel.
        min_agreement: the least share of the voxel's observations whose 2D label equals
            the fused label.
    """

    min_probability: float = 0.9
    min_observations: int = 2
    min_agreement: float = 0.6

    def __post_init__(self):
        for name in ("min_probability", "min_agreement"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if (
            not isinstance(self.min_observations, int)
            or isinstance(self.min_observations, bool)
            or self.min_observations < 0
        ):
            raise ValueError(f"min_observations must be an integer >= 0, got {self.min_observations!r}")


def thresholds_from_dict(values: dict) -> PseudoLabelThresholds:
    """Thresholds from a mapping of field names to values.

    Args:
        values: any of min_probability, min_observations, min_agreement.

    Returns:
        thresholds: the defaults with `values` applied.

    Raises:
        ValueError: on an unknown key (named) or a value out of range.
    """
    known = {field.name for field in dataclasses.fields(PseudoLabelThresholds)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown pseudo-label threshold {sorted(unknown)}; valid keys are {sorted(known)}")
    return PseudoLabelThresholds(**values)


def load_thresholds(path: str | Path) -> PseudoLabelThresholds:
    """Thresholds from a YAML file: the keys at the top, or under a ``pseudolabel:`` section.

    Args:
        path: the YAML file.

    Returns:
        thresholds: the file's values over the defaults.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when it is not a mapping, or on an unknown key or a bad value.
    """
    import yaml

    path = Path(path)
    values = yaml.safe_load(path.read_text()) or {}
    if isinstance(values, dict) and set(values) == {"pseudolabel"}:
        values = values["pseudolabel"] or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: must hold a mapping of thresholds")
    try:
        return thresholds_from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


@dataclass
class FusedCloud:
    """One point per fused voxel, with what the pseudo-label tests need.

    Attributes:
        points: (V, 3) float32 mean position of the points in each voxel.
        colors: (V, 3) uint8 mean colour (0 where the frames had none).
        probabilities: (V, C) float32 fused distribution.
        observations: (V,) int32 frames that observed the voxel.
        agreement: (V,) float32 share of the voxel's observations labelled with the fused label.
    """

    points: np.ndarray
    colors: np.ndarray
    probabilities: np.ndarray
    observations: np.ndarray
    agreement: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """(V,) int64 fused label of each voxel."""
        return self.probabilities.argmax(axis=1).astype(np.int64)

    def subset(self, keep: np.ndarray) -> FusedCloud:
        """The voxels where `keep` (a (V,) bool mask) holds."""
        return FusedCloud(*(getattr(self, field.name)[keep] for field in dataclasses.fields(self)))


def fused_cloud(fuser: Fuser, votes: Fuser) -> FusedCloud:
    """The voxels of a fused map with their distributions, observation counts and agreement.

    Args:
        fuser: the map fused in its own mode (its distribution gives labels and confidence).
        votes: the same frames fused in "vote" mode (the share of observations per class).

    Returns:
        cloud: a FusedCloud over `fuser`'s voxels.

    Raises:
        ValueError: when `votes` is not a "vote" map or the maps' voxel sizes differ.
    """
    if votes.mode != "vote" or votes.voxel_size != fuser.voxel_size:
        raise ValueError(
            f"votes must be a 'vote' Fuser of voxel size {fuser.voxel_size}, got {votes.mode!r} at {votes.voxel_size}"
        )
    points = fuser.voxel_points()
    probabilities = fuser.voxel_probabilities()
    labels = probabilities.argmax(axis=1)
    shares = votes.probabilities(points)
    colors = np.nan_to_num(fuser.voxel_colors(), nan=0.0)
    return FusedCloud(
        points=points.astype(np.float32),
        colors=np.clip(np.round(colors * 255.0), 0, 255).astype(np.uint8),
        probabilities=probabilities.astype(np.float32),
        observations=fuser.voxel_counts().astype(np.int32),
        agreement=shares[np.arange(len(points)), labels].astype(np.float32),
    )


def fused_cloud_from_folder(
    frames_dir: str | Path, *, voxel_size: float | None = None, progress: bool = False
) -> tuple[FusedCloud, dict]:
    """Fuse a `pcseg fuse` folder (`pcseg.fuse_folder`) for pseudo-labels.

    Args:
        frames_dir: the folder.
        voxel_size: overrides the manifest's, when given (metres).
        progress: report progress over the frames.

    Returns:
        (cloud, manifest): the fused voxels and the folder's manifest.

    Raises:
        FileNotFoundError, ValueError: as `pcseg.fuse_folder.fuser_from_folder`.
    """
    from pcseg.fuse_folder import fuser_from_folder

    fuser, manifest = fuser_from_folder(frames_dir, voxel_size=voxel_size, progress=progress)
    votes, _ = fuser_from_folder(frames_dir, voxel_size=fuser.voxel_size, mode="vote", progress=progress)
    return fused_cloud(fuser, votes), manifest


def _tests(cloud: FusedCloud, thresholds: PseudoLabelThresholds) -> dict[str, np.ndarray]:
    return {
        "probability": cloud.probabilities.max(axis=1, initial=0.0) >= thresholds.min_probability,
        "observations": cloud.observations >= thresholds.min_observations,
        "agreement": cloud.agreement >= thresholds.min_agreement,
    }


def confident_mask(cloud: FusedCloud, thresholds: PseudoLabelThresholds) -> np.ndarray:
    """(V,) bool: the voxels that pass all three thresholds."""
    tests = _tests(cloud, thresholds)
    return tests["probability"] & tests["observations"] & tests["agreement"]


def pseudo_labels(cloud: FusedCloud, thresholds: PseudoLabelThresholds) -> np.ndarray:
    """The training labels of a fused cloud.

    Args:
        cloud: the fused voxels.
        thresholds: the confidence thresholds.

    Returns:
        labels: (V,) int64 fused label where confident, `IGNORE_LABEL` (-1) elsewhere.
    """
    return np.where(confident_mask(cloud, thresholds), cloud.labels, IGNORE_LABEL)


def threshold_report(cloud: FusedCloud, thresholds: PseudoLabelThresholds, truth: np.ndarray | None = None) -> dict:
    """Each threshold's effect on coverage and, when the true labels are known, on accuracy.

    Args:
        cloud: the fused voxels.
        thresholds: the thresholds.
        truth: optional (V,) int true labels of the voxels (negative = unknown, left out).

    Returns:
        report: for "fused" (no threshold), "probability", "observations", "agreement" (each
        alone) and "all": voxels kept, coverage (their share of the voxels) and, with
        `truth`, accuracy (of the kept voxels' labels); plus thresholds and voxels.
    """
    tests = _tests(cloud, thresholds)
    everything = np.ones(len(cloud.points), dtype=bool)
    masks = {"fused": everything, **tests, "all": tests["probability"] & tests["observations"] & tests["agreement"]}
    labels = cloud.labels
    known = None if truth is None else np.asarray(truth) >= 0
    report = {"thresholds": dataclasses.asdict(thresholds), "voxels": int(len(everything))}
    for name, mask in masks.items():
        entry = {"kept": int(mask.sum()), "coverage": round(float(mask.mean()) if len(mask) else 0.0, 4)}
        if truth is not None:
            scored = mask & known
            entry["accuracy"] = round(float(np.mean(labels[scored] == truth[scored])), 4) if scored.any() else None
        report[name] = entry
    return report


def write_pseudo_dataset(
    out_dir: str | Path, splits: dict[str, Sequence[tuple[str, dict]]], class_names: Sequence[str], palette
) -> Path:
    """Write labelled clouds as a folder data set (layout in the module docstring).

    Args:
        out_dir: the data set folder (created).
        splits: "train" / "val" -> (name, cloud) pairs; a cloud is a dict with coord (N, 3)
            float, color (N, 3) uint8 and label (N,) int (-1 = unlabelled).
        class_names: the C class names.
        palette: (C, 3) class colours (uint8 or float in [0, 1]).

    Returns:
        out_dir: as a Path.

    Raises:
        ValueError: on a label outside [-1, C) or a palette of another length.
    """
    import yaml

    from pcseg import formats
    from pcseg.io import normalize_palette
    from pcseg.utils.atomic import atomic_write_file

    out_dir = Path(out_dir)
    palette = normalize_palette(palette, len(class_names))
    for split, clouds in splits.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for name, cloud in clouds:
            labels = np.asarray(cloud["label"])
            if labels.size and (labels.min() < IGNORE_LABEL or labels.max() >= len(class_names)):
                raise ValueError(
                    f"{name}: labels must lie in [{IGNORE_LABEL}, {len(class_names)}), got "
                    f"[{labels.min()}, {labels.max()}]"
                )
            coord, color = np.asarray(cloud["coord"], np.float32), np.asarray(cloud["color"], np.uint8)
            fields = {
                "x": coord[:, 0],
                "y": coord[:, 1],
                "z": coord[:, 2],
                "red": color[:, 0],
                "green": color[:, 1],
                "blue": color[:, 2],
                "label": labels.astype(np.int32),
            }
            formats.write_ply(out_dir / split / f"{name}.ply", fields, comment="pcseg pseudo-labels")
    classes = {"names": list(class_names), "colors": palette.tolist(), "ignore_label": IGNORE_LABEL}
    atomic_write_file(out_dir / "classes.yaml", yaml.safe_dump(classes, sort_keys=False))
    return out_dir


def _cloud_dict(cloud: FusedCloud, labels: np.ndarray) -> dict:
    return {"coord": cloud.points, "color": cloud.colors, "label": labels}


def pseudolabel_folders(
    frames_dirs: Sequence[str | Path],
    out_dir: str | Path,
    thresholds: PseudoLabelThresholds | None = None,
    *,
    val_folders: int | None = None,
    val_share: float = 0.2,
    voxel_size: float | None = None,
    progress: bool = True,
) -> dict:
    """`pcseg pseudolabel`: fuse folders of frames and write their pseudo-labels as a data set.

    Args:
        frames_dirs: `pcseg fuse` folders, one scene each.
        out_dir: the data set folder.
        thresholds: the confidence thresholds (defaults when None).
        val_folders: how many of the last folders go to val/ (default: a quarter, at least
            one, when there are several folders).
        val_share: with a single folder, the share of its extent along x that goes to val/.
        voxel_size: overrides the manifests', when given (metres).
        progress: report progress over the frames.

    Returns:
        summary: out_dir, thresholds, and per folder its split(s), voxels and coverage (the
        `threshold_report`, also written to pseudolabel_report.json).

    Raises:
        ValueError: on no folders, folders whose class names or counts differ, or a bad
            `val_folders` / `val_share`.
        FileNotFoundError: as `fused_cloud_from_folder`.
    """
    from pcseg.io import default_palette
    from pcseg.utils.atomic import atomic_write_file

    thresholds = thresholds or PseudoLabelThresholds()
    frames_dirs = [Path(folder) for folder in frames_dirs]
    if not frames_dirs:
        raise ValueError("FRAMES: give at least one folder of frames")
    if not 0.0 < val_share < 1.0:
        raise ValueError(f"val_share must lie in (0, 1), got {val_share}")
    if val_folders is None:
        val_folders = max(1, len(frames_dirs) // 4) if len(frames_dirs) > 1 else 0
    if not 0 <= val_folders < len(frames_dirs) or (len(frames_dirs) > 1 and val_folders == 0):
        raise ValueError(
            f"val_folders must lie in [1, {len(frames_dirs) - 1}] for {len(frames_dirs)} folders, got {val_folders}"
        )
    splits: dict[str, list] = {"train": [], "val": []}
    reports, class_names, palette, num_classes = {}, None, None, None
    for index, folder in enumerate(frames_dirs):
        cloud, manifest = fused_cloud_from_folder(folder, voxel_size=voxel_size, progress=progress)
        classes = cloud.probabilities.shape[1]
        names = manifest.get("class_names") or [f"class_{k}" for k in range(classes)]
        if num_classes is not None and (classes != num_classes or list(names) != class_names):
            raise ValueError(f"{folder}: its classes differ from those of {frames_dirs[0]}")
        num_classes, class_names = classes, list(names)
        palette = manifest.get("palette") if palette is None else palette
        labels = pseudo_labels(cloud, thresholds)
        name = f"{index:03d}_{folder.resolve().name}"
        reports[str(folder)] = threshold_report(cloud, thresholds)
        if len(frames_dirs) == 1:
            x = cloud.points[:, 0]
            to_val = x > np.quantile(x, 1.0 - val_share) if len(x) else np.zeros(0, dtype=bool)
            splits["train"].append((name, _cloud_dict(cloud.subset(~to_val), labels[~to_val])))
            splits["val"].append((name, _cloud_dict(cloud.subset(to_val), labels[to_val])))
            reports[str(folder)]["split"] = f"train (x <= {1.0 - val_share:.0%} quantile) and val"
        else:
            split = "val" if index >= len(frames_dirs) - val_folders else "train"
            splits[split].append((name, _cloud_dict(cloud, labels)))
            reports[str(folder)]["split"] = split
    out_dir = write_pseudo_dataset(
        out_dir, splits, class_names, palette if palette is not None else default_palette(num_classes)
    )
    summary = {"out_dir": str(out_dir), "thresholds": dataclasses.asdict(thresholds), "folders": reports}
    atomic_write_file(out_dir / "pseudolabel_report.json", json.dumps(summary, indent=2))
    return summary
