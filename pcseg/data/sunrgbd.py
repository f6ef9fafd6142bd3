"""SUN RGB-D frames: the released per-frame layout and the toolbox / VoteNet export.

Released layout (one folder per frame):
    <frame>/image/<name>.jpg          colour
    <frame>/depth/<name>.png          uint16 depth, millimetres with bits rotated by 3
    <frame>/intrinsics.txt            3x3 K, 1-based (MATLAB) pixel centres
    <frame>/extrinsics/<stamp>.txt    3x4 tilt; the toolbox uses the last file in sorted order
    <frame>/label37.png (optional)    37-class labels, 0 = unlabelled (any path may be passed)
    <frame>/seg.mat                   per-frame object names and their mask: not the 37 classes
Toolbox / VoteNet export: `depth/<id>.mat` ("instance": (N, 6) upright xyz + rgb in [0, 1]),
`calib/<id>.txt` (Rtilt and K, column-major), `image/<id>.jpg`.

Points come out in SUN RGB-D's upright frame: x right, y forward, z up (floor horizontal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.bridge.camera import (
    PinholeCamera,
    decode_sunrgbd_depth,
    read_sunrgbd_extrinsics,
    read_sunrgbd_toolbox_calib,
)
from pcseg.data.classes import SUNRGBD_37_CLASS_NAMES
from pcseg.data.rgbd import check_label_range, check_same_size, frame_to_points, read_image

NUM_CLASSES = len(SUNRGBD_37_CLASS_NAMES)


def _single_file(folder: Path, pattern: str, last: bool = False) -> Path:
    files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {pattern} in {folder}")
    if len(files) > 1 and not last:
        raise ValueError(f"expected one {pattern} in {folder}, found {[f.name for f in files]}")
    return files[-1]


def read_sunrgbd_label(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a 37-class label map, 0 = unlabelled.

    Accepted: a PNG of the 37 labels (as extracted from the toolbox's SUNRGBD2Dseg.mat, e.g.
    ankurhanda/sunrgbd-meta-data's `img-<index>.png`), or a MATLAB v5 .mat holding one such
    map as `seglabel` / `label` / `seg37`. A frame's own `seg.mat` is refused: its `seglabel`
    indexes that frame's `names` (free-text object names), not the 37 classes. For the
    toolbox's SUNRGBD2Dseg.mat itself use `read_sunrgbd2dseg_label`.

    Args:
        path: the PNG or .mat file.
        shape: (H, W) the map must have, or None.

    Returns:
        label: (H, W) int64 in 0..37.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when it is a frame's `seg.mat`, holds no label map, or
            the map's shape or range is wrong.
    """
    path = Path(path)
    if path.suffix == ".mat":
        import scipy.io

        if not path.is_file():
            raise FileNotFoundError(f"SUN RGB-D label file not found: {path}")
        data = scipy.io.loadmat(path)
        if "names" in data:
            raise ValueError(
                f"{path} is a per-frame seg.mat: its seglabel indexes the frame's own `names`, not "
                "the 37 benchmark classes; read the 37-class map from the toolbox's "
                "SUNRGBD2Dseg.mat (read_sunrgbd2dseg_label) or its PNG export instead"
            )
        key = next((k for k in ("seglabel", "label", "seg37") if k in data), None)
        if key is None:
            raise ValueError(
                f"{path}: no 'seglabel' or 'label' array, found {sorted(k for k in data if not k.startswith('__'))}"
            )
        label = np.asarray(data[key]).astype(np.int64)
    else:
        label = read_image(path).astype(np.int64)
    return _checked_label(label, path, shape)


def read_sunrgbd2dseg_label(path: str | Path, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The 37-class label map of one frame of the toolbox's `Metadata/SUNRGBD2Dseg.mat`.

    That file is MATLAB v7.3, i.e. HDF5: `SUNRGBD2Dseg/seglabel` holds one object reference
    per frame to a (W, H) array (MATLAB is column-major). Only the requested frame is read,
    so this needs megabytes, not the whole file.

    Args:
        path: SUNRGBD2Dseg.mat.
        index: the frame, 0-based, in SUNRGBDMeta order.
        shape: (H, W) the map must have, or None.

    Returns:
        label: (H, W) int64 in 0..37.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when it has no `SUNRGBD2Dseg/seglabel`, or the map's
            shape or range is wrong.
        IndexError: when `index` is outside the file's frames.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SUNRGBD2Dseg.mat not found: {path}")
    with h5py.File(path, "r") as f:
        if "SUNRGBD2Dseg" not in f or "seglabel" not in f["SUNRGBD2Dseg"]:
            raise ValueError(f"{path}: no SUNRGBD2Dseg/seglabel (is this the toolbox's SUNRGBD2Dseg.mat?)")
        refs = f["SUNRGBD2Dseg"]["seglabel"]
        count = refs.size
        if not 0 <= index < count:
            raise IndexError(f"{path}: frame index {index} is outside 0..{count - 1}")
        label = np.asarray(f[refs[()].reshape(-1)[index]]).T.astype(np.int64)
    return _checked_label(label, path, shape)


def _checked_label(label: np.ndarray, path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be (H, W), got shape {label.shape}")
    if shape is not None and label.shape != tuple(shape):
        raise ValueError(
            f"{path} is {label.shape[1]}x{label.shape[0]} but the colour image is "
            f"{shape[1]}x{shape[0]}; they must have the same size"
        )
    check_label_range(label, NUM_CLASSES, path)
    return label


def read_sunrgbd_frame(frame_dir: str | Path, label_path: str | Path | None = None, max_depth: float = 8.0) -> dict:
    """Reads one frame of the released layout and back-projects it, upright (z up).

    Args:
        frame_dir: the frame folder (`image/*.jpg`, `depth/*.png`, `intrinsics.txt`,
            `extrinsics/*.txt`).
        label_path: a 37-class label map (see `read_sunrgbd_label`), or None to use
            `<frame>/label37.png` when it exists.
        max_depth: depths of this many metres or more are dropped.

    Returns:
        frame: a dict with coord (N, 3) float32 metres in the upright frame, color (N, 3)
            float32 in [0, 1], pixel (N, 2) int64, label (N,) int64 (0..37, when a label map
            is found), image (H, W, 3) uint8, depth (H, W) float32 metres (0 = none), camera
            (PinholeCamera, 0-based) and T_world_from_camera (4, 4).

    Raises:
        FileNotFoundError: naming the folder or file that is missing.
        ValueError: naming the file when a folder holds several candidates, the depth is not
            a uint16 (H, W) PNG, the images differ in size or the label map is invalid.
    """
    frame_dir = Path(frame_dir)
    if not frame_dir.is_dir():
        raise FileNotFoundError(f"SUN RGB-D frame folder not found: {frame_dir}")
    image_path = _single_file(frame_dir / "image", "*.jpg")
    depth_path = _single_file(frame_dir / "depth", "*.png")
    image = read_image(image_path, "RGB")
    depth_png = read_image(depth_path)
    if depth_png.dtype != np.uint16 or depth_png.ndim != 2:
        raise ValueError(
            f"{depth_path}: expected a single-channel uint16 depth PNG, got {depth_png.dtype} {depth_png.shape}"
        )
    check_same_size(image, image_path, depth_png, depth_path)
    depth_mm = decode_sunrgbd_depth(depth_png)
    height, width = depth_mm.shape
    camera = PinholeCamera.from_sunrgbd_intrinsics(frame_dir / "intrinsics.txt", width, height)
    pose = read_sunrgbd_extrinsics(_single_file(frame_dir / "extrinsics", "*.txt", last=True))
    if label_path is None and (frame_dir / "label37.png").is_file():
        label_path = frame_dir / "label37.png"
    label = None if label_path is None else read_sunrgbd_label(label_path, (height, width))
    points = frame_to_points(image, depth_mm, camera, pose, label, max_depth)
    points.update(image=image, depth=depth_mm.astype(np.float32) / 1000.0, camera=camera, T_world_from_camera=pose)
    return points


def read_sunrgbd_toolbox_sample(root: str | Path, sample_id: int) -> dict:
    """Reads one sample of the toolbox / VoteNet export.

    The layout is `depth/000001.mat`, `calib/000001.txt`, `image/000001.jpg` under `root`;
    `project_points(coord, camera, T_camera_from_upright)` lands each point on its pixel.

    Args:
        root: the export folder.
        sample_id: the sample number.

    Returns:
        sample: a dict with coord (N, 3) float32 upright xyz, color (N, 3) float32 in [0, 1],
            image (H, W, 3) uint8, camera (PinholeCamera, 0-based) and
            T_camera_from_upright (4, 4).

    Raises:
        FileNotFoundError: when the depth file is missing.
        ValueError: naming the file when it holds no (N, 6) `instance` array.
    """
    import scipy.io

    root = Path(root)
    name = f"{sample_id:06d}"
    depth_path = root / "depth" / f"{name}.mat"
    if not depth_path.is_file():
        raise FileNotFoundError(f"SUN RGB-D depth points not found: {depth_path}")
    data = scipy.io.loadmat(depth_path)
    if "instance" not in data:
        raise ValueError(f"{depth_path}: no 'instance' array (expected (N, 6) xyz rgb)")
    points = np.asarray(data["instance"], dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 6:
        raise ValueError(f"{depth_path}: 'instance' must be (N, 6), got {points.shape}")
    image = read_image(root / "image" / f"{name}.jpg", "RGB")
    camera, T_camera_from_upright = read_sunrgbd_toolbox_calib(
        root / "calib" / f"{name}.txt", image.shape[1], image.shape[0]
    )
    return {
        "coord": points[:, :3].astype(np.float32),
        "color": points[:, 3:].astype(np.float32),
        "image": image,
        "camera": camera,
        "T_camera_from_upright": T_camera_from_upright,
    }
