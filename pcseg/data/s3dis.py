"""S3DIS: the raw `Stanford3dDataset_v1.2_Aligned_Version` layout, a per-room cache,
PointNet's released HDF5 blocks, and the area splits.

Raw layout: `RAW/Area_k/<room>/Annotations/<class>_<i>.txt`, one `x y z r g b` point per
line (or `x y z`: the colour is then unknown and set to mid-grey, see `read_points_txt`).
`prepare_s3dis(RAW, OUT)` turns each room into `OUT/Area_k/<room>.npz` holding
coord (N, 3) float32 (float64 for map-frame coordinates, see `save_room`), color (N, 3)
uint8, label (N,) uint8 (S3DIS order), instance (N,) int32; `load_room` reads it back.
`S3DISRooms(OUT, split, test_area)` is the room-level torch Dataset; `pcseg.data.blocks`
cuts rooms into PointNet's 1 m blocks.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data

from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.utils.atomic import atomic_write
from pcseg.utils.progress import progress as report_progress

NUM_AREAS = 6
DEFAULT_TEST_AREA = 5
_CLASS_INDEX = {name: i for i, name in enumerate(S3DIS_CLASS_NAMES)}
CLUTTER_INDEX = _CLASS_INDEX["clutter"]
_NOT_NUMBER = re.compile(r"[^0-9eE+\-.\s]")
# the colour of points whose file gives xyz only: mid-grey, the colour that biases no class
UNKNOWN_COLOR = 128.0
# beyond this |coordinate| (metres) float32 steps exceed 1 mm, so a cache keeps float64
FLOAT32_EXACT_EXTENT = 1.0e4


class S3DISFormatWarning(UserWarning):
    """A raw S3DIS line was repaired or skipped, or a whole room could not be converted."""


def class_index(annotation_name: str) -> int:
    """Label of an annotation file stem such as `chair_3`.

    Names outside the 13 classes (`stairs`) map to clutter, as PointNet's
    `collect_indoor3d_data.py` does.

    Args:
        annotation_name: the file stem, `<class>_<k>`.

    Returns:
        label: the S3DIS class index, 0..12.
    """
    return _CLASS_INDEX.get(annotation_name.split("_")[0], CLUTTER_INDEX)


def read_points_txt(path: str | Path) -> np.ndarray:
    """Reads an S3DIS `x y z r g b` text file.

    Bad lines never abort the read; each emits an `S3DISFormatWarning` naming `file:line`:

    - a line whose 6 numbers are recoverable after dropping stray characters (the real
      data set has a `\\x10` byte in Area_5/hallway_6/Annotations/ceiling_1.txt) is
      repaired, any other malformed line is skipped;
    - a line with a `nan` or `inf` value is skipped (a point without a position cannot be
      repaired, and one non-finite point would poison the room's min/extent);
    - a colour outside 0..255 is clipped to that range (the position and the label, which
      is the file's, are still good, so the point is kept).
    - a line of 3 numbers (`x y z`, a file without colour) gets the colour
      `UNKNOWN_COLOR` (mid-grey) in all three channels; one warning names the file and the
      number of such points.

    Args:
        path: the text file.

    Returns:
        points: (N, 6) float64 finite x, y, z, r, g, b with colours in 0..255.

    Raises:
        FileNotFoundError: when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"S3DIS point file not found: {path}")
    try:
        # fast path: numpy's C parser; a line it cannot parse, or a value out of range, makes
        # us redo the file line by line, which knows the line numbers for the warnings
        points = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None)
        if points.size == 0:
            return points.reshape(-1, 6)
        if points.shape[1] == 3 and np.isfinite(points).all():
            return _with_unknown_color(path, points)
        if (
            points.shape[1] == 6
            and np.isfinite(points).all()
            and points[:, 3:].min() >= 0
            and points[:, 3:].max() <= 255
        ):
            return points
    except ValueError:
        pass
    rows, colourless = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            values = _parse_point_line(f"{path}:{line_number}", line)
            if values is not None:
                if len(values) == 3:
                    colourless.append(len(rows))
                    values = values + [UNKNOWN_COLOR] * 3
                rows.append(values)
    if colourless:
        _warn_unknown_color(path, len(colourless))
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def _warn_unknown_color(path: Path, count: int) -> None:
    warnings.warn(
        f"{path}: {count} points have xyz only (3 columns); their colour is unknown and set to "
        f"mid-grey ({UNKNOWN_COLOR:g}, {UNKNOWN_COLOR:g}, {UNKNOWN_COLOR:g})",
        S3DISFormatWarning,
        stacklevel=4,
    )


def _with_unknown_color(path: Path, xyz: np.ndarray) -> np.ndarray:
    """An ``x y z`` file's points with the mid-grey colour the module documents."""
    _warn_unknown_color(path, len(xyz))
    return np.concatenate([xyz, np.full((len(xyz), 3), UNKNOWN_COLOR)], axis=1)


def _floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _parse_point_line(where: str, line: str) -> list[float] | None:
    """The 6 values (or 3, xyz only) of one raw line (repaired / clipped), or None to skip
    it; `where` is the `file:line` the warnings name."""
    if not line.strip():
        return None
    fields = line.split()
    values = _floats(fields) if len(fields) in (3, 6) else None
    if values is None:
        values = _floats(_NOT_NUMBER.sub(" ", line).split())
        if values is None or len(values) not in (3, 6):
            warnings.warn(f"{where}: skipped malformed line {line.rstrip()!r}", S3DISFormatWarning, stacklevel=3)
            return None
        warnings.warn(
            f"{where}: repaired malformed line {line.rstrip()!r} -> {values}", S3DISFormatWarning, stacklevel=3
        )
    if not all(np.isfinite(values)):
        warnings.warn(
            f"{where}: skipped line with a non-finite value {line.rstrip()!r}", S3DISFormatWarning, stacklevel=3
        )
        return None
    color = values[3:]
    if color and (min(color) < 0 or max(color) > 255):
        values = values[:3] + [min(max(c, 0.0), 255.0) for c in color]
        warnings.warn(
            f"{where}: clipped colour {color} outside 0..255 to {values[3:]}", S3DISFormatWarning, stacklevel=3
        )
    return values


def read_raw_room(room_dir: str | Path) -> dict[str, np.ndarray]:
    """Reads one raw room folder (with `Annotations/*.txt`).

    Args:
        room_dir: the room folder.

    Returns:
        room: a dict with coord (N, 3) float64 metres, color (N, 3) uint8, label (N,) uint8
            in S3DIS order, instance (N,) int32 (one id per annotation file, in sorted file
            order).

    Raises:
        FileNotFoundError: naming the folder when it has no Annotations folder.
        ValueError: naming the folder when it has no annotation files or no valid point.
    """
    room_dir = Path(room_dir)
    annotation_dir = room_dir / "Annotations"
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"S3DIS room has no Annotations folder: {annotation_dir}")
    files = sorted(annotation_dir.glob("*.txt"))
    if not files:
        raise ValueError(f"S3DIS room has no annotation files: {annotation_dir}")
    coords, colors, labels, instances = [], [], [], []
    for instance_id, file in enumerate(files):
        points = read_points_txt(file)  # finite, colours already in 0..255
        coords.append(points[:, :3])
        colors.append(np.round(points[:, 3:]).astype(np.uint8))
        labels.append(np.full(len(points), class_index(file.stem), dtype=np.uint8))
        instances.append(np.full(len(points), instance_id, dtype=np.int32))
    room = {
        "coord": np.concatenate(coords),
        "color": np.concatenate(colors),
        "label": np.concatenate(labels),
        "instance": np.concatenate(instances),
    }
    if len(room["coord"]) == 0:
        # an empty cache would only fail later, far from its cause (blocks need points)
        raise ValueError(f"S3DIS room has no valid point in its annotation files: {annotation_dir}")
    return room


@dataclass(frozen=True)
class RawRoom:
    """One room of the raw layout.

    Attributes:
        area: the area number, 1..6.
        name: the room name (`office_1`).
        path: the room folder.
        cache_name: the cache file's path relative to the cache folder (`Area_k/<room>.npz`).
    """

    area: int
    name: str
    path: Path

    @property
    def cache_name(self) -> str:
        return f"Area_{self.area}/{self.name}.npz"


def list_raw_rooms(raw_dir: str | Path) -> list[RawRoom]:
    """The rooms of a raw S3DIS tree, sorted by area and name.

    Args:
        raw_dir: a folder with `Area_k/<room>/Annotations`, or one holding
            `Stanford3dDataset_v1.2_Aligned_Version` with that layout.

    Returns:
        rooms: one `RawRoom` per room.

    Raises:
        FileNotFoundError: when `raw_dir` is missing.
        ValueError: when `raw_dir` holds no room.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"S3DIS raw folder not found: {raw_dir}")
    nested = raw_dir / "Stanford3dDataset_v1.2_Aligned_Version"
    if not any(raw_dir.glob("Area_*")) and nested.is_dir():
        raw_dir = nested  # pointed at the folder the archive was unpacked into
    rooms = []
    for area_dir in sorted(raw_dir.glob("Area_*")):
        match = re.fullmatch(r"Area_(\d+)", area_dir.name)
        if not match or not area_dir.is_dir():
            continue
        for room_dir in sorted(area_dir.iterdir()):
            if (room_dir / "Annotations").is_dir():
                rooms.append(RawRoom(int(match.group(1)), room_dir.name, room_dir))
    if not rooms:
        raise ValueError(f"no S3DIS rooms (Area_k/<room>/Annotations) under {raw_dir}")
    return rooms


def save_room(path: str | Path, room: dict[str, np.ndarray]) -> None:
    """Writes a room cache file atomically (`pcseg.utils.atomic.atomic_write`).

    An interrupted or failed write never leaves a truncated `.npz` nor a temporary file
    behind, and an existing cache stays as it was. Coordinates are stored as float32, or as
    float64 when some |coordinate| exceeds `FLOAT32_EXACT_EXTENT` metres (a map frame), where
    float32 would move points by more than a millimetre.

    Args:
        path: the cache file (`.npz`).
        room: the arrays of `read_raw_room`.
    """
    coord = np.asarray(room["coord"])
    exact = coord.size == 0 or float(np.abs(coord).max()) <= FLOAT32_EXACT_EXTENT
    with atomic_write(path) as handle:
        np.savez(
            handle,
            coord=coord.astype(np.float32 if exact else np.float64),
            color=np.asarray(room["color"], np.uint8),
            label=np.asarray(room["label"], np.uint8),
            instance=np.asarray(room["instance"], np.int32),
        )


def load_room(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a room cache file written by `prepare_s3dis`.

    Args:
        path: the cache file.

    Returns:
        room: a dict with coord (N, 3) float32 (float64 when so stored: map coordinates),
            color (N, 3) uint8, label (N,) int64, instance (N,) int64.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when it is truncated or damaged, lacks an array or holds a
            label outside 0..12.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"S3DIS room cache not found: {path}")
    try:
        with np.load(path) as data:
            missing = {"coord", "color", "label", "instance"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a pcseg S3DIS room cache, missing {sorted(missing)}")
            coord = data["coord"]
            room = {
                "coord": coord if coord.dtype == np.float64 else coord.astype(np.float32),
                "color": data["color"].astype(np.uint8),
                "label": data["label"].astype(np.int64),
                "instance": data["instance"].astype(np.int64),
            }
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(
            f"{path}: truncated or damaged S3DIS room cache ({type(error).__name__}: {error}); "
            "delete it and run pcseg prepare s3dis again"
        ) from None
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(
            f"{path}: truncated or damaged S3DIS room cache ({error}); delete it and run pcseg prepare s3dis again"
        ) from None
    lengths = {key: len(value) for key, value in room.items()}
    if room["coord"].ndim != 2 or room["coord"].shape[1:] != (3,) or len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: inconsistent S3DIS room cache, array lengths {lengths}")
    if room["label"].size and room["label"].max() >= len(S3DIS_CLASS_NAMES):
        raise ValueError(f"{path}: label {room['label'].max()} out of range 0..{len(S3DIS_CLASS_NAMES) - 1}")
    return room


class PreparedRooms(list):
    """What `prepare_s3dis` returns: a list of the cache paths of the rooms that are
    prepared (written now or found from an earlier run), in room order, plus `failed`, a
    list of (room, error message) for the rooms that could not be converted."""

    def __init__(self, paths=(), failed=()):
        super().__init__(paths)
        self.failed: list[tuple[RawRoom, str]] = list(failed)


def prepare_s3dis(
    raw_dir: str | Path, out_dir: str | Path, progress: bool = True, overwrite: bool = False
) -> PreparedRooms:
    """Converts every raw room under `raw_dir` into `out_dir/Area_k/<room>.npz`.

    Rooms whose cache file exists are skipped (unless `overwrite`), so an interrupted run
    resumes where it stopped; each file is written atomically (`save_room`). A room that
    cannot be read (no annotation files, no valid point, unreadable file) does not stop
    the run: it emits an `S3DISFormatWarning` naming the room, writes nothing (so the
    next run tries it again), and the run ends with one warning listing all such rooms.

    Args:
        raw_dir: the `Stanford3dDataset_v1.2_Aligned_Version` folder (`Area_k/<room>/...`).
        out_dir: the cache folder, created if needed.
        progress: report progress on stderr (a bar at a terminal, one line per step in logs).
        overwrite: convert rooms whose cache file already exists too.

    Returns:
        rooms: a `PreparedRooms`, the cache paths of the prepared rooms in order, with
            `.failed` the rooms that were not.

    Raises:
        FileNotFoundError: when `raw_dir` is missing.
        ValueError: when `raw_dir` holds no room.
    """
    out_dir = Path(out_dir)
    rooms = list_raw_rooms(raw_dir)
    result = PreparedRooms()
    for room in report_progress(rooms, desc="S3DIS rooms", unit="room", enabled=progress):
        target = out_dir / room.cache_name
        if target.is_file() and not overwrite:
            result.append(target)
            continue
        try:
            data = read_raw_room(room.path)
        except (OSError, ValueError) as error:  # bad data; KeyboardInterrupt and bugs still stop the run
            warnings.warn(f"S3DIS room Area_{room.area}/{room.name} skipped: {error}", S3DISFormatWarning, stacklevel=2)
            result.failed.append((room, str(error)))
            continue
        save_room(target, data)
        result.append(target)
    if result.failed:
        names = ", ".join(f"Area_{room.area}/{room.name}" for room, _ in result.failed)
        warnings.warn(
            f"{len(result.failed)} of {len(rooms)} S3DIS rooms under {raw_dir} were not prepared: {names}",
            S3DISFormatWarning,
            stacklevel=2,
        )
    return result


# ----------------------------------------------------------------------------- splits
def split_areas(split: str, test_area: int = DEFAULT_TEST_AREA) -> list[int]:
    """Areas of a split when `test_area` is held out.

    Args:
        split: "train", "test" or "all".
        test_area: the held-out area, 1..6.

    Returns:
        areas: the area numbers of `split`.

    Raises:
        ValueError: when `split` or `test_area` is not one of the valid values.
    """
    if test_area not in range(1, NUM_AREAS + 1):
        raise ValueError(f"test_area must be 1..{NUM_AREAS}, got {test_area}")
    if split == "train":
        return [a for a in range(1, NUM_AREAS + 1) if a != test_area]
    if split == "test":
        return [test_area]
    if split == "all":
        return list(range(1, NUM_AREAS + 1))
    raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


def six_fold_splits() -> list[tuple[list[int], list[int]]]:
    """The 6-fold cross-validation protocol.

    Results are reported over the union of the six test folds.

    Returns:
        folds: (train areas, test areas) for each of the six areas held out once.
    """
    return [(split_areas("train", k), [k]) for k in range(1, NUM_AREAS + 1)]


def room_area(room_name: str) -> int:
    """Area number of a room id such as `Area_5_office_1` or `Area_5/office_1`.

    Args:
        room_name: the room id.

    Returns:
        area: the area number.

    Raises:
        ValueError: when the id does not start with `Area_k`.
    """
    match = re.match(r"Area_(\d+)", room_name)
    if not match:
        raise ValueError(f"room name {room_name!r} does not start with Area_k")
    return int(match.group(1))


class S3DISRooms(torch.utils.data.Dataset):
    """Rooms of a prepared S3DIS cache (`prepare_s3dis` output).

    Item i is a dict: coord (N, 3) float32, color (N, 3) float32 in [0, 1], label (N,) int64,
    instance (N,) int64, name (str, e.g. "Area_5/office_1"). Nothing is converted here: run
    `prepare_s3dis` (or `pcseg prepare s3dis`) first.

    Args:
        root: the cache folder.
        split: "train", "test" or "all".
        test_area: the held-out area, 1..6.

    Raises:
        ValueError: when `split` or `test_area` is not valid.
        FileNotFoundError: when the cache folder is missing or holds no room of the split.
    """

    def __init__(self, root: str | Path, split: str = "train", test_area: int = DEFAULT_TEST_AREA):
        self.root = Path(root)
        self.split = split
        self.test_area = test_area
        areas = split_areas(split, test_area)
        if not self.root.is_dir():
            raise FileNotFoundError(f"S3DIS cache folder not found: {self.root} (run prepare_s3dis first)")
        self.paths = [p for a in areas for p in sorted((self.root / f"Area_{a}").glob("*.npz"))]
        if not self.paths:
            raise FileNotFoundError(f"no prepared rooms of areas {areas} under {self.root} (run prepare_s3dis first)")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        room = load_room(self.paths[index])
        room["color"] = room["color"].astype(np.float32) / 255.0
        room["name"] = f"{self.paths[index].parent.name}/{self.paths[index].stem}"
        return room


# ----------------------------------------------------------------------------- PointNet HDF5
def read_indoor3d_hdf5(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one of PointNet's `indoor3d_sem_seg_hdf5_data/ply_data_all_*.h5`.

    Args:
        path: the HDF5 file.

    Returns:
        data: (B, P, 9) float32 x, y centred on the block, z, rgb in [0, 1], xyz normalised by
            the room extent.
        label: (B, P) int64 in 0..12.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when its datasets, shapes or labels are not PointNet's.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PointNet HDF5 block file not found: {path}")
    with h5py.File(path, "r") as handle:
        if "data" not in handle or "label" not in handle:
            raise ValueError(f"{path}: expected datasets 'data' and 'label', got {sorted(handle.keys())}")
        data = np.asarray(handle["data"], dtype=np.float32)
        label = np.asarray(handle["label"]).astype(np.int64)
    if data.ndim != 3 or data.shape[2] != 9 or label.shape != data.shape[:2]:
        raise ValueError(f"{path}: expected data (B, P, 9) and label (B, P), got {data.shape} and {label.shape}")
    if label.size and (label.min() < 0 or label.max() >= len(S3DIS_CLASS_NAMES)):
        raise ValueError(f"{path}: labels must be in 0..{len(S3DIS_CLASS_NAMES) - 1}, got {label.min()}..{label.max()}")
    return data, label


def read_room_filelist(path: str | Path) -> list[str]:
    """Reads PointNet's `room_filelist.txt`.

    Args:
        path: the file.

    Returns:
        rooms: one room id (`Area_1_conferenceRoom_1`) per block, in the order of the
            concatenated HDF5 files.

    Raises:
        FileNotFoundError: when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"room_filelist not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_indoor3d_blocks(
    hdf5_dir: str | Path, split: str = "train", test_area: int = DEFAULT_TEST_AREA
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PointNet's published blocks of one split.

    Reads `all_files.txt` (or every `ply_data_all_*.h5`) and `room_filelist.txt` from
    `hdf5_dir` and keeps the blocks of `split`'s areas.

    Args:
        hdf5_dir: the `indoor3d_sem_seg_hdf5_data` folder.
        split: "train", "test" or "all".
        test_area: the held-out area, 1..6.

    Returns:
        data: (B, 4096, 9) float32 block features.
        label: (B, 4096) int64.
        rooms: each block's room id.

    Raises:
        FileNotFoundError: when the folder holds no HDF5 file or no `room_filelist.txt`.
        ValueError: when the room list and the blocks disagree in number.
    """
    hdf5_dir = Path(hdf5_dir)
    listing = hdf5_dir / "all_files.txt"
    if listing.is_file():
        files = [hdf5_dir / Path(line.strip()).name for line in listing.read_text().splitlines() if line.strip()]
    else:
        files = sorted(hdf5_dir.glob("ply_data_all_*.h5"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    if not files:
        raise FileNotFoundError(f"no ply_data_all_*.h5 files in {hdf5_dir}")
    rooms = read_room_filelist(hdf5_dir / "room_filelist.txt")
    parts = [read_indoor3d_hdf5(f) for f in files]
    data = np.concatenate([p[0] for p in parts])
    label = np.concatenate([p[1] for p in parts])
    if len(rooms) != len(data):
        raise ValueError(
            f"{hdf5_dir / 'room_filelist.txt'} lists {len(rooms)} blocks but the HDF5 files hold {len(data)}"
        )
    areas = set(split_areas(split, test_area))
    keep = np.array([room_area(r) in areas for r in rooms], dtype=bool)
    return data[keep], label[keep], [r for r, k in zip(rooms, keep) if k]
