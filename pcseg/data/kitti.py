"""LiDAR: SemanticKITTI scans and labels, KITTI object frames.

SemanticKITTI layout: `ROOT/sequences/<ss>/velodyne/<nnnnnn>.bin` (float32 N x 4: x y z
remission) and `labels/<nnnnnn>.label` (uint32: semantic = l & 0xFFFF, instance = l >> 16);
`semantic-kitti.yaml` maps raw semantic ids to the training classes (`learning_map`,
0 = unlabelled/ignored, 1..19 the 19 evaluated classes).

KITTI object layout: `ROOT/training/{velodyne,image_2,calib,label_2}/<nnnnnn>.*`; the
calibration is parsed by `pcseg.bridge.KittiCalibration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data

from pcseg.bridge.camera import KittiCalibration
from pcseg.bridge.projection import project_points


def read_velodyne_bin(path: str | Path) -> np.ndarray:
    """Reads a KITTI / SemanticKITTI `.bin` scan.

    Args:
        path: the `.bin` file.

    Returns:
        scan: (N, 4) float32 x, y, z (metres) and remission.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when its size is not a whole number of 16-byte points
            (a truncated download).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LiDAR scan not found: {path}")
    from pcseg.formats.arrays import read_float_records

    return read_float_records(path, 4, "x y z remission")


def read_label_file(path: str | Path, num_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads a SemanticKITTI `.label` file.

    Args:
        path: the `.label` file (one uint32 per point).
        num_points: the scan's number of points, checked against the file when given.

    Returns:
        semantic: (N,) int64 raw semantic ids (`l & 0xFFFF`).
        instance: (N,) int64 instance ids (`l >> 16`).

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when its size is not a whole number of labels or the
            count differs from `num_points`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SemanticKITTI label file not found: {path}")
    size = path.stat().st_size
    if size % 4:
        raise ValueError(f"{path}: {size} bytes is not a whole number of uint32 labels")
    raw = np.fromfile(path, dtype="<u4")
    if num_points is not None and len(raw) != num_points:
        raise ValueError(f"{path}: {len(raw)} labels but the scan has {num_points} points")
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


@dataclass(frozen=True)
class SemanticKittiConfig:
    """The parts of `semantic-kitti.yaml` pcseg uses.

    names: raw id -> class name; learning_map: raw id -> training class (0 = ignored);
    learning_map_inv: training class -> raw id; class_names: (num_classes,) names of the
    training classes (index 0 "unlabeled"); color_map_bgr: raw id -> (b, g, r);
    splits: "train" / "valid" / "test" -> sequence numbers.
    """

    names: dict[int, str]
    learning_map: dict[int, int]
    learning_map_inv: dict[int, int]
    class_names: tuple[str, ...]
    color_map_bgr: dict[int, tuple[int, int, int]]
    splits: dict[str, list[int]]

    @classmethod
    def from_yaml(cls, path: str | Path) -> SemanticKittiConfig:
        """Reads `semantic-kitti.yaml`.

        Args:
            path: the YAML file.

        Returns:
            config: the parsed `SemanticKittiConfig`.

        Raises:
            FileNotFoundError: when the file is missing.
            ValueError: naming the file when it is empty or not valid YAML, and the key when a
                required key is missing or inconsistent.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SemanticKITTI config not found: {path}")
        try:
            with open(path) as handle:
                config = yaml.safe_load(handle)
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise ValueError(f"{path}: not a valid semantic-kitti.yaml ({first_line})") from None
        if not isinstance(config, dict):
            what = "empty" if config is None else f"a {type(config).__name__}, not a mapping"
            raise ValueError(
                f"{path}: the SemanticKITTI config is {what}; it needs labels, learning_map and learning_map_inv"
            )
        for key in ("labels", "learning_map", "learning_map_inv"):
            if not isinstance(config.get(key), dict) or not config[key]:
                raise ValueError(
                    f"{path}: missing '{key}'"
                    if key not in config
                    else f"{path}: '{key}' must be a non-empty mapping of ids"
                )
        try:
            names = {int(k): str(v) for k, v in config["labels"].items()}
            learning_map = {int(k): int(v) for k, v in config["learning_map"].items()}
            inverse = {int(k): int(v) for k, v in config["learning_map_inv"].items()}
            class_names = tuple(names[inverse[i]] if i else "unlabeled" for i in range(max(inverse) + 1))
            colors = {int(k): tuple(int(c) for c in v) for k, v in (config.get("color_map") or {}).items()}
            splits = {k: [int(s) for s in v] for k, v in (config.get("split") or {}).items()}
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: inconsistent SemanticKITTI config ({type(error).__name__}: {error})") from None
        return cls(names, learning_map, inverse, class_names, colors, splits)

    @property
    def num_classes(self) -> int:
        """Training classes including 0 (unlabelled): 20 for the standard file."""
        return len(self.class_names)

    def lookup_table(self) -> np.ndarray:
        """(max raw id + 1,) int64 table: raw id -> training class, -1 for ids not in the map."""
        table = np.full(max(self.learning_map) + 1, -1, dtype=np.int64)
        for raw, mapped in self.learning_map.items():
            table[raw] = mapped
        return table

    def map_labels(self, semantic: np.ndarray, source: str | Path = "labels") -> np.ndarray:
        """Maps raw semantic ids to training classes.

        Args:
            semantic: (N,) integer raw semantic ids.
            source: what the ids came from, named in the error.

        Returns:
            labels: (N,) int64 training classes (0 = unlabelled).

        Raises:
            ValueError: naming `source` for ids the learning map does not know.
        """
        table = self.lookup_table()
        semantic = np.asarray(semantic, dtype=np.int64)
        unknown = (semantic < 0) | (semantic >= len(table))
        mapped = np.where(unknown, -1, table[np.clip(semantic, 0, len(table) - 1)])
        if (mapped < 0).any():
            bad = np.unique(semantic[mapped < 0])
            raise ValueError(f"{source}: semantic ids {bad[:10].tolist()} are not in the learning map")
        return mapped


def read_semantickitti_scan(
    scan_path: str | Path, label_path: str | Path | None, config: SemanticKittiConfig
) -> dict[str, np.ndarray]:
    """One SemanticKITTI scan with its labels.

    Args:
        scan_path: the `velodyne/*.bin` file.
        label_path: the matching `labels/*.label` file, or None for an unlabelled scan.
        config: the data set's `SemanticKittiConfig`.

    Returns:
        scan: a dict with coord (N, 3) float32, remission (N,) float32 and, with a label
            file, label (N,) int64 training classes (0 = unlabelled), raw_label (N,) int64
            and instance (N,) int64.
    """
    scan = read_velodyne_bin(scan_path)
    out = {"coord": np.ascontiguousarray(scan[:, :3]), "remission": np.ascontiguousarray(scan[:, 3])}
    if label_path is not None:
        semantic, instance = read_label_file(label_path, num_points=len(scan))
        out["label"] = config.map_labels(semantic, label_path)
        out["raw_label"] = semantic
        out["instance"] = instance
    return out


class SemanticKITTIScans(torch.utils.data.Dataset):
    """Scans of a SemanticKITTI `ROOT/sequences` tree.

    Item: coord (N, 3) float32, remission (N,) float32, label (N,) int64 (when labels
    exist), instance (N,) int64, name ("<seq>/<scan>").

    Args:
        root: the folder that holds `sequences/`.
        config: the data set's `SemanticKittiConfig`.
        split: "train", "valid" or "test" (sequences from the YAML's `split`), or a list of
            sequence numbers.

    Raises:
        ValueError: when `split` is not one of the config's splits.
        FileNotFoundError: naming the folder when a sequence has no `velodyne` folder.
    """

    def __init__(self, root: str | Path, config: SemanticKittiConfig, split="train"):
        self.root = Path(root)
        self.config = config
        if isinstance(split, str):
            if split not in config.splits:
                raise ValueError(f"split {split!r} is not in the config's splits {sorted(config.splits)}")
            sequences = config.splits[split]
        else:
            sequences = [int(s) for s in split]
        self.scans = []
        for seq in sequences:
            folder = self.root / "sequences" / f"{seq:02d}" / "velodyne"
            if not folder.is_dir():
                raise FileNotFoundError(f"SemanticKITTI sequence folder not found: {folder}")
            self.scans.extend(sorted(folder.glob("*.bin")))

    def __len__(self) -> int:
        return len(self.scans)

    def __getitem__(self, index: int) -> dict:
        scan = self.scans[index]
        label = scan.parent.parent / "labels" / (scan.stem + ".label")
        item = read_semantickitti_scan(scan, label if label.is_file() else None, self.config)
        item["name"] = f"{scan.parent.parent.name}/{scan.stem}"
        return item


# ----------------------------------------------------------------------------- KITTI object
@dataclass(frozen=True)
class KittiObjectLabel:
    """One line of a KITTI object `label_2/*.txt` (camera-rectified frame, metres)."""

    kind: str
    truncated: float
    occluded: int
    alpha: float
    box_2d: tuple[float, float, float, float]  # left, top, right, bottom (pixels)
    dimensions: tuple[float, float, float]  # height, width, length
    location: tuple[float, float, float]  # x, y, z of the bottom centre
    rotation_y: float


def read_kitti_object_labels(path: str | Path) -> list[KittiObjectLabel]:
    """Parses a KITTI object `label_2/*.txt` file.

    Args:
        path: the label file.

    Returns:
        labels: one `KittiObjectLabel` per line.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming `file:line` on a bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI label file not found: {path}")
    labels = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields[1:15]]
            if len(values) != 14:
                raise ValueError(f"expected 15 fields, got {len(fields)}")
        except ValueError as error:
            raise ValueError(f"{path}:{line_number}: {error}") from error
        labels.append(
            KittiObjectLabel(
                fields[0],
                values[0],
                int(values[1]),
                values[2],
                tuple(values[3:7]),
                tuple(values[7:10]),
                tuple(values[10:13]),
                values[13],
            )
        )
    return labels


def kitti_object_paths(root: str | Path, index: int, split: str = "training") -> dict[str, Path]:
    """Paths of one frame in the KITTI object layout (`ROOT/<split>/velodyne/000000.bin`...).

    Args:
        root: the data set folder.
        index: the frame number.
        split: "training" or "testing".

    Returns:
        paths: velodyne, image (image_2), calib and label (label_2) file paths.
    """
    base = Path(root) / split
    name = f"{index:06d}"
    return {
        "velodyne": base / "velodyne" / f"{name}.bin",
        "image": base / "image_2" / f"{name}.png",
        "calib": base / "calib" / f"{name}.txt",
        "label": base / "label_2" / f"{name}.txt",
    }


def read_kitti_object_frame(velodyne_path: str | Path, image_path: str | Path, calib_path: str | Path) -> dict:
    """A KITTI object frame: the LiDAR scan coloured from image_2 where it projects.

    Args:
        velodyne_path: the `velodyne/*.bin` scan.
        image_path: the `image_2/*.png` image.
        calib_path: the `calib/*.txt` calibration.

    Returns:
        frame: a dict with coord (N, 3) float32 (LiDAR frame), remission (N,) float32, color
            (N, 3) float32 in [0, 1] (0 for points outside the image), in_image (N,) bool,
            image (H, W, 3) uint8, calibration (KittiCalibration), camera (PinholeCamera of
            image_2), T_camera_from_velo (4, 4) float64.

    Raises:
        FileNotFoundError: naming the file when the scan, image or calibration is missing.
    """
    from PIL import Image

    scan = read_velodyne_bin(velodyne_path)
    image_path = Path(image_path)
    if not image_path.is_file():
        raise FileNotFoundError(f"KITTI image not found: {image_path}")
    image = np.asarray(Image.open(image_path).convert("RGB"))
    calib_path = Path(calib_path)
    if not calib_path.is_file():
        raise FileNotFoundError(f"KITTI calibration not found: {calib_path}")
    calibration = KittiCalibration.from_file(calib_path)
    camera, T_camera_from_velo = calibration.camera(2, image.shape[1], image.shape[0])
    coord = np.ascontiguousarray(scan[:, :3])
    projected = project_points(coord.astype(np.float64), camera, T_camera_from_velo)
    in_image = projected.in_image
    color = np.zeros((len(coord), 3), dtype=np.float32)
    pixels = np.floor(projected.pixels[in_image] + 0.5).astype(np.int64)
    color[in_image] = image[pixels[:, 1], pixels[:, 0]] / 255.0
    return {
        "coord": coord,
        "remission": np.ascontiguousarray(scan[:, 3]),
        "color": color,
        "in_image": in_image,
        "image": image,
        "calibration": calibration,
        "camera": camera,
        "T_camera_from_velo": T_camera_from_velo,
    }
