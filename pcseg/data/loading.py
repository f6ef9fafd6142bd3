"""Which rooms a config's data section names: procedural, S3DIS, SemanticKITTI or your own folder.

    rooms = load_rooms(cfg.data, "val")        # dicts with coord (N, 3), color (N, 3), label (N,)

Procedural rooms are generated at once; S3DIS rooms, SemanticKITTI scans and the clouds of a
folder data set (``pcseg.data.folder``) come back as a `LazyRooms` that reads each one when it
is indexed, so a data set larger than memory can be cut into blocks or evaluated one room at a
time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pcseg.config import DataConfig
from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.data.synthetic import generate_room, generate_views
from pcseg.inputs import lidar_room_fields, multiscale_features
from pcseg.utils.progress import progress as progress_bar

__all__ = ["LazyRooms", "load_rooms", "check_data", "data_classes"]


class LazyRooms(Sequence):
    """Rooms (or scans) read from disk one at a time when indexed.

    Every consumer (cutting blocks, whole-room evaluation) walks them in order, so only one is
    in memory at once.

    Args:
        count: the number of rooms.
        read: ``read(i)`` returns room ``i`` (0 <= i < count) as a dict.
    """

    def __init__(self, count: int, read: Callable[[int], dict]):
        self._count, self._read = count, read

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> dict:
        if not -self._count <= index < self._count:
            raise IndexError(f"room index {index} is outside 0..{self._count - 1}")
        return self._read(index % self._count)


def load_rooms(data: DataConfig, split: str, progress: bool = False) -> Sequence[dict]:
    """The rooms (or scans) of a split.

    Coordinates keep their dtype: float64 map coordinates (a SemanticKITTI scan or a cache
    written in a map frame) stay float64, and the block cutters take them relative to each
    room, so float32 never sees the large offsets.

    Args:
        data: the data section of the config (``dataset``, ``root``, counts and seeds).
        split: ``"train"`` or ``"val"``.
        progress: report the generation of procedural rooms (``pcseg.utils.progress``).

    Returns:
        rooms: dicts with ``coord`` (N, 3) float32 or float64, ``color`` (N, 3) and ``label``
        (N,) int64: a list for procedural rooms, a `LazyRooms` for S3DIS, SemanticKITTI and
        folders. A SemanticKITTI scan read for a config with ``data.use_intensity`` or
        ``data.use_range`` also has ``intensity`` (N,) float32 in [0, 1] and ``range`` (N,)
        float32 metres (``pcseg.inputs.lidar_room_fields``) and a zero ``color``; without them
        (older configs) the remission repeated three times stands in for rgb. With
        ``data.multiscale_features`` every room also has ``multiscale`` (N, F) float32
        (``pcseg.inputs.multiscale_features``).

    Raises:
        ValueError: when ``split`` is neither train nor val, or the label config is invalid.
        FileNotFoundError: when the data folder, its rooms or the label config are missing.
        ValueError: naming the file for a folder data set's bad cloud, missing label field or
            labels that classes.yaml does not cover (when the room is indexed).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    if data.dataset == "synthetic":
        count, start = (
            (data.train_rooms, data.train_seed_start) if split == "train" else (data.val_rooms, data.val_seed_start)
        )
        seeds = progress_bar(
            range(start, start + count), desc=f"generating {split} rooms", unit="room", enabled=progress
        )
        num_views = data.synthetic_views if split == "train" else 0
        rooms, views = [], []
        for seed in seeds:
            rooms.append(generate_room(seed, data.points_per_room))
            if num_views:
                views += generate_views(seed, num_views, max(1, data.points_per_room // num_views))
        return [with_multiscale(room, data) for room in rooms + views]
    count, read = _room_source(data, split)
    return LazyRooms(count, lambda i: with_multiscale(read(i), data))


def with_multiscale(room: dict, data: DataConfig) -> dict:
    """The room with its ``multiscale`` field (``pcseg.inputs.multiscale_features`` of its
    coordinates) when the config's model takes it; else the room as it is."""
    if not data.multiscale_features or "multiscale" in room:
        return room
    return {**room, "multiscale": multiscale_features(room["coord"])}


def _room_source(data: DataConfig, split: str) -> tuple[int, Callable[[int], dict]]:
    """The number of rooms of an S3DIS, SemanticKITTI or folder split and the function reading
    one; building it lists the files only."""
    if data.dataset == "folder":
        from pcseg.data.folder import read_classes, read_labelled_cloud, split_files

        classes, paths = read_classes(data), split_files(data, split)
        return len(paths), lambda i: read_labelled_cloud(paths[i], data, classes)
    if data.dataset == "s3dis":
        from pcseg.data.s3dis import S3DISRooms

        rooms = S3DISRooms(data.root, split="train" if split == "train" else "test", test_area=data.test_area)
        return len(rooms), rooms.__getitem__
    from pcseg.data.kitti import SemanticKittiConfig, SemanticKITTIScans

    label_config = SemanticKittiConfig.from_yaml(data.label_config)
    scans = SemanticKITTIScans(data.root, label_config, split="train" if split == "train" else "valid")
    kept = range(0, len(scans), data.scan_stride)

    def read_scan(i: int) -> dict:
        scan = scans[kept[i]]
        coord = np.asarray(scan["coord"])
        lidar = lidar_room_fields(coord, scan["remission"], data)
        # a config with LiDAR channels sees the remission there only; older configs (colour
        # on, no LiDAR channel) keep the remission standing in for rgb
        shade = np.zeros(len(coord), np.float32) if lidar else np.asarray(scan["remission"], np.float32).clip(0, 1)
        return {
            "coord": coord if coord.dtype == np.float64 else coord.astype(np.float32),
            "color": np.repeat(shade[:, None], 3, 1),
            "label": scan["label"],
            **lidar,
        }

    return len(kept), read_scan


def data_classes(data: DataConfig) -> int:
    """The number of classes the data set's labels use (labels lie in ``0..count - 1``).

    Args:
        data: the data section of the config.

    Returns:
        count: 13 for procedural rooms and S3DIS, the label config's class count for SemanticKITTI,
        the names of classes.yaml for a folder.

    Raises:
        FileNotFoundError, ValueError: when the SemanticKITTI label config is missing or invalid.
    """
    if data.dataset in ("synthetic", "s3dis"):
        return len(S3DIS_CLASS_NAMES)
    if data.dataset == "folder":
        from pcseg.data.folder import read_classes

        return read_classes(data).num_classes
    from pcseg.data.kitti import SemanticKittiConfig

    return SemanticKittiConfig.from_yaml(data.label_config).num_classes


def check_data(data: DataConfig, splits: Sequence[str] = ("train", "val")) -> None:
    """Checks, before any room is generated or read, that the data a config names is there.

    Lists the files of each split (reads none of them) and compares the data's class count with
    ``data.num_classes``.

    Args:
        data: the data section of the config.
        splits: the splits that will be read.

    Raises:
        FileNotFoundError: naming the data folder, sequence folder or label config that is missing.
        ValueError: naming the key when ``data.num_classes`` is smaller than the data's class
            count, the label config is invalid, or a split to train on has no room (for a
            folder: naming the folder or split file of any empty split).
    """
    classes = data_classes(data)
    if data.num_classes < classes:
        raise ValueError(
            f"data.num_classes is {data.num_classes} but the {data.dataset} labels have {classes} "
            f"classes (0..{classes - 1}); set data.num_classes={classes}"
        )
    if data.dataset == "synthetic":
        return
    for split in splits:
        count, _ = _room_source(data, split)
        if count == 0 and split == "train":
            raise ValueError(f"data.root {data.root}: the {data.dataset} train split has no scans")
