"""Your own data set: a folder of labelled clouds in any format ``pcseg.io`` reads.

    my_scans/
        classes.yaml
        train/  scan_01.ply  scan_02.las  ...
        val/    scan_19.pcd  ...

with ``data.dataset: folder``, ``data.root: my_scans`` and ``data.label_field`` naming the
label field of the files (``label``, ``class``, LAS ``classification`` ...). ``classes.yaml``::

    names: [ground, vegetation, building]     # class i is names[i]
    colors: [[160, 110, 50], [40, 160, 40], [200, 60, 60]]   # optional, 0..255, one per class
    ignore_label: 0                           # optional: points with this label are not scored
    label_map: {2: 0, 3: 1, 4: 1, 6: 2}       # optional: label in the files -> class

Without ``label_map`` the labels in the files are the classes (0..len(names) - 1). Instead of
sub-folders, ``data.split_file`` may name a YAML file ``{train: [paths], val: [paths]}`` with
paths relative to ``root``. Each cloud becomes a room dict (``coord``, ``color``, ``label``): a
cloud without colour gets its intensity as grey (``pcseg.io.model_colors``), else mid grey;
ignored points get ``data.ignore_index``. Files are read when their room is indexed; every
error names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pcseg.config import DataConfig

__all__ = ["FolderClasses", "classes_path", "read_classes", "split_files", "read_labelled_cloud"]


@dataclass(frozen=True)
class FolderClasses:
    """A folder data set's ``classes.yaml``.

    names: (C,) class names; colors: (C, 3) uint8 or None; ignore_label: the label (as in
    the files) of points not to score, or None; label_map: label in the files -> class, or None
    (the labels are the classes); source: the file read.
    """

    names: tuple[str, ...]
    colors: np.ndarray | None
    ignore_label: int | None
    label_map: dict[int, int] | None
    source: Path

    @classmethod
    def from_yaml(cls, path: str | Path) -> FolderClasses:
        """Reads and checks a ``classes.yaml``.

        Args:
            path: the file.

        Returns:
            classes: the parsed `FolderClasses`.

        Raises:
            FileNotFoundError: when the file is missing.
            ValueError: naming the file and the key when it is not valid YAML, has no
                ``names``, colours that are not (C, 3) in 0..255, or a ``label_map`` whose
                classes are not in 0..C-1.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"classes file not found: {path} (data.classes_file, default data.root/classes.yaml)"
            )
        try:
            values = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid YAML ({str(error).strip().splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: must be a mapping with names (and optional colors, ignore_label, label_map)")
        unknown = sorted(set(values) - {"names", "colors", "ignore_label", "label_map"})
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; valid keys: colors, ignore_label, label_map, names")
        names = values.get("names")
        if not isinstance(names, list) or not names:
            raise ValueError(f"{path}: 'names' must be a non-empty list of class names")
        colors = values.get("colors")
        if colors is not None:
            colors = np.asarray(colors)
            if (
                colors.shape != (len(names), 3)
                or colors.dtype.kind not in "iu"
                or colors.min() < 0
                or colors.max() > 255
            ):
                raise ValueError(
                    f"{path}: 'colors' must be {len(names)} [r, g, b] triples of integers 0..255, one per name"
                )
            colors = colors.astype(np.uint8)
        ignore = values.get("ignore_label")
        label_map = values.get("label_map")
        try:
            ignore = None if ignore is None else int(ignore)
            if label_map is not None:
                label_map = {int(raw): int(mapped) for raw, mapped in dict(label_map).items()}
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{path}: 'ignore_label' must be an integer and 'label_map' a mapping of integer "
                f"labels to classes ({error})"
            ) from None
        if label_map is not None:
            bad = sorted(mapped for mapped in set(label_map.values()) if not 0 <= mapped < len(names))
            if bad:
                raise ValueError(f"{path}: label_map maps to classes {bad} outside 0..{len(names) - 1} (one per name)")
        return cls(tuple(str(name) for name in names), colors, ignore, label_map, path)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.names)

    def palette(self, num_classes: int) -> np.ndarray:
        """(num_classes, 3) uint8 class colours: ``colors``, padded with ``pcseg.io.default_palette``."""
        from pcseg.io import default_palette

        palette = default_palette(num_classes)
        if self.colors is not None:
            count = min(num_classes, len(self.colors))
            palette[:count] = self.colors[:count]
        return palette

    def inverse_map(self) -> dict[int, int] | None:
        """Class -> label in the files (the first label mapped to it), or None without ``label_map``."""
        if self.label_map is None:
            return None
        inverse: dict[int, int] = {}
        for raw, mapped in sorted(self.label_map.items()):
            inverse.setdefault(mapped, raw)
        return inverse

    def map_labels(self, labels: np.ndarray, ignore_index: int, source: str | Path) -> np.ndarray:
        """Labels as in the files -> classes.

        Args:
            labels: (N,) integer labels read from `source`.
            ignore_index: the class given to points labelled ``ignore_label``.
            source: the file, named in the error.

        Returns:
            classes: (N,) int64 in 0..C-1, or `ignore_index`.

        Raises:
            ValueError: naming `source` and the classes file when labels are neither mapped
                (or, without a map, in 0..C-1) nor the ignored label.
        """
        labels = np.asarray(labels, dtype=np.int64)
        ignored = labels == self.ignore_label if self.ignore_label is not None else np.zeros(len(labels), bool)
        if self.label_map is None:
            known = (labels >= 0) & (labels < self.num_classes)
            mapped = labels
        else:
            raw = np.array(sorted(self.label_map), dtype=np.int64)
            position = np.clip(np.searchsorted(raw, labels), 0, len(raw) - 1)
            known = raw[position] == labels
            mapped = np.array([self.label_map[r] for r in raw], dtype=np.int64)[position]
        missing = ~known & ~ignored
        if missing.any():
            found = np.unique(labels[missing])
            covered = (
                f"label_map covers {sorted(self.label_map)}"
                if self.label_map is not None
                else f"names give classes 0..{self.num_classes - 1}"
            )
            raise ValueError(
                f"{source}: labels {found[:10].tolist()} are not covered by {self.source} ({covered}"
                f"{'' if self.ignore_label is None else f', ignore_label {self.ignore_label}'})"
            )
        return np.where(ignored, ignore_index, mapped)


def classes_path(data: DataConfig) -> Path:
    """The ``classes.yaml`` of a folder data set: ``data.classes_file``, else ``data.root/classes.yaml``."""
    return Path(data.classes_file) if data.classes_file else Path(data.root) / "classes.yaml"


def read_classes(data: DataConfig, required: bool = True) -> FolderClasses | None:
    """The folder data set's classes.

    Args:
        data: the data section (``root``, ``classes_file``).
        required: raise when the file is missing; else return None (a checkpoint used on a
            machine without its data set).

    Returns:
        classes: the `FolderClasses`, or None.

    Raises:
        FileNotFoundError, ValueError: see `FolderClasses.from_yaml`.
    """
    path = classes_path(data)
    if not required and not path.is_file():
        return None
    return FolderClasses.from_yaml(path)


def split_files(data: DataConfig, split: str) -> list[Path]:
    """The files of a split: ``data.split_file``'s list, else those under ``root/<split>/``.

    Args:
        data: the data section (``root``, ``split_file``).
        split: ``"train"`` or ``"val"``.

    Returns:
        paths: the clouds of the split, sorted (as listed, for a split file).

    Raises:
        FileNotFoundError: naming the root, sub-folder, split file or a listed file that is missing.
        ValueError: naming the folder or split file when the split holds no cloud.
    """
    from pcseg.io import list_point_clouds

    root = Path(data.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root}: folder not found")
    if data.split_file:
        listing = Path(data.split_file)
        if not listing.is_file():
            raise FileNotFoundError(f"data.split_file {listing}: file not found")
        try:
            values = yaml.safe_load(listing.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{listing}: not valid YAML ({str(error).strip().splitlines()[0]})") from None
        names = values.get(split) if isinstance(values, dict) else None
        if not isinstance(names, list) or not names:
            raise ValueError(f"{listing}: split {split!r} lists no files (expected {{train: [paths], val: [paths]}})")
        paths = [root / str(name) for name in names]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"{listing}: listed files not found: {missing[:5]}")
        return paths
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root {root}: no {split}/ sub-folder (or set data.split_file)")
    try:
        return list_point_clouds(folder)
    except FileNotFoundError:
        raise ValueError(f"data.root {root}: the {split} split is empty ({folder} holds no point cloud)") from None


def read_labelled_cloud(path: str | Path, data: DataConfig, classes: FolderClasses) -> dict:
    """One cloud of a folder data set as a room dict.

    Args:
        path: the file.
        data: the data section (``label_field``, ``ignore_index``).
        classes: the data set's classes.

    Returns:
        room: coord (N, 3) float32 or float64, color (N, 3) float32 in [0, 1], label (N,)
        int64 classes (``data.ignore_index`` for ignored points).

    Raises:
        ValueError: naming the file when it has no ``data.label_field`` field, non-integer
            labels, or labels `classes` does not cover.
    """
    from pcseg.io import model_colors, read_point_cloud

    cloud = read_point_cloud(path)
    field = data.label_field.strip()
    if field.lower() == "label":
        values = cloud["label"]
    else:
        key = next(
            (name for name in cloud if name.lower() == field.lower() and name not in ("coord", "color", "intensity")),
            None,
        )
        values = None if key is None else np.asarray(cloud[key])
    if values is None:
        fields = [name for name, value in cloud.items() if name != "coord" and value is not None]
        raise ValueError(f"{path}: no label field {field!r} (data.label_field); the file has {fields}")
    labels = values.astype(np.int64)
    if values.ndim != 1 or (values.dtype.kind == "f" and not np.array_equal(labels, values)):
        raise ValueError(f"{path}: label field {field!r} must hold one integer a point")
    colors = model_colors(cloud, path)
    if colors is None:
        colors = np.full((len(labels), 3), 0.5, dtype=np.float32)
    return {"coord": cloud["coord"], "color": colors, "label": classes.map_labels(labels, data.ignore_index, path)}
