"""Pinhole cameras and calibration files, in one pixel convention.

Pixel convention of all of pcseg.bridge: **0-based pixel centres**. The centre of the
top-left pixel is (u, v) = (0, 0); pixel (row r, column c) covers u in [c - 0.5, c + 0.5)
and v in [r - 0.5, r + 0.5). A camera-frame point (x, y, z) with z > 0 (x right, y down,
z forward) lands at

    u = fx * x / z + cx,    v = fy * y / z + cy.

This is the convention of OpenCV, Open3D and KITTI. A camera may add lens distortion
(ROS `CameraInfo` models, `pcseg.bridge.distortion`): (x / z, y / z) is distorted before
fx, fy, cx, cy apply. SUN RGB-D and NYU Depth v2 publish
intrinsics for MATLAB, whose pixel centres are 1-based (u = column + 1): their principal
point is one pixel larger than ours, so the `*_one_based` constructors subtract 1.

Poses are 4x4 homogeneous matrices named after the frames they connect:
`T_b_from_a @ [p_a; 1] = [p_b; 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.bridge.distortion import check_distortion
from pcseg.utils.open3d import import_open3d


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera, optionally with lens distortion; 0-based pixel centres (see module docstring).

    A camera built from intrinsics and an image size (this constructor, `from_matrix`,
    the `*_one_based`, SUN RGB-D, Open3D and KITTI readers) must have its principal point
    in the image, 0 <= cx <= width and 0 <= cy <= height: one outside means intrinsics
    of another resolution (or another convention) paired with this image size. Derived
    cameras (`cropped`, `scaled`) are exempt: the camera of a tile that does not contain
    the optical axis legitimately has its principal point outside the tile.

    Args:
        fx: focal length along x in pixels.
        fy: focal length along y in pixels.
        cx: principal point column in pixels (0-based).
        cy: principal point row in pixels (0-based).
        width: image width in pixels; every image used with this camera is (height, width).
        height: image height in pixels.
        distortion: lens distortion coefficients in ROS `CameraInfo.D` order (OpenCV's):
            (k1, k2, p1, p2, k3) for "plumb_bob", (k1, k2, p1, p2, k3, k4, k5, k6) for
            "rational_polynomial", (k1, k2, k3, k4) for "equidistant" (fisheye). Empty
            (the default) or all zeros: no distortion, and the fast pinhole path.
        distortion_model: "plumb_bob", "rational_polynomial" or "equidistant".

    Raises:
        ValueError: naming the field: non-finite or zero focal lengths, a size that is not
            positive integers, a principal point outside the image, an unknown distortion
            model or a coefficient count other than the model's.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"

    def __post_init__(self):
        self._validate(principal_point=True)

    @classmethod
    def _derived(
        cls,
        fx: float,
        fy: float,
        cx: float,
        cy: float,
        width: int,
        height: int,
        distortion: tuple[float, ...] = (),
        distortion_model: str = "plumb_bob",
    ) -> PinholeCamera:
        """A camera derived from a checked one (crop, resize): every check but the principal point's."""
        camera = object.__new__(cls)
        values = (fx, fy, cx, cy, width, height, distortion, distortion_model)
        for name, value in zip(("fx", "fy", "cx", "cy", "width", "height", "distortion", "distortion_model"), values):
            object.__setattr__(camera, name, value)
        camera._validate(principal_point=False)
        return camera

    def _validate(self, principal_point: bool) -> None:
        """Raise ValueError naming the bad field; then store numpy scalars as Python numbers."""
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"PinholeCamera.{name} must be finite, got {value}")
        if self.fx == 0 or self.fy == 0:
            raise ValueError(f"PinholeCamera focal lengths must be non-zero, got fx={self.fx}, fy={self.fy}")
        if int(self.width) != self.width or int(self.height) != self.height or self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"PinholeCamera width and height must be positive integers, got {self.width}x{self.height}"
            )
        if principal_point and not (0 <= self.cx <= self.width and 0 <= self.cy <= self.height):
            raise ValueError(
                f"PinholeCamera principal point (cx, cy) = ({self.cx}, {self.cy}) lies outside the "
                f"{self.width}x{self.height} image (0 <= cx <= width, 0 <= cy <= height): the "
                "intrinsics do not match the image size (intrinsics of another resolution? "
                "derive the camera with scaled() or cropped())"
            )
        # Normalise numpy scalars to Python numbers so the dataclass prints and compares cleanly.
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "distortion", check_distortion(self.distortion, self.distortion_model))

    @property
    def is_distorted(self) -> bool:
        """True when a distortion coefficient is non-zero (else projection is plain pinhole)."""
        return any(value != 0.0 for value in self.distortion)

    # ----- intrinsics matrices -------------------------------------------------------------
    @classmethod
    def from_matrix(
        cls, intrinsics: np.ndarray, width: int, height: int, distortion=(), distortion_model: str = "plumb_bob"
    ) -> PinholeCamera:
        """From a 3x3 intrinsics matrix K in the 0-based convention (OpenCV / Open3D / KITTI / ROS).

        A ROS `CameraInfo` message is `from_matrix(np.reshape(info.k, (3, 3)), info.width,
        info.height, info.d, info.distortion_model)`.

        Args:
            intrinsics: (3, 3) K, or a (3, 4) projection matrix (its left 3x3 block is read).
            width: image width in pixels.
            height: image height in pixels.
            distortion: lens distortion coefficients (see the class docstring).
            distortion_model: "plumb_bob", "rational_polynomial" or "equidistant".

        Returns:
            camera: the PinholeCamera.

        Raises:
            ValueError: on a matrix that is not 3x3 / 3x4, not finite, or has skew.
        """
        matrix = np.asarray(intrinsics, dtype=np.float64)
        if matrix.shape not in ((3, 3), (3, 4)):
            raise ValueError(f"intrinsics must be a 3x3 (or 3x4) matrix, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("intrinsics must be finite")
        if matrix[2, 2] == 0:
            raise ValueError("intrinsics[2, 2] must be non-zero")
        matrix = matrix[:, :3] / matrix[2, 2]
        if abs(matrix[0, 1]) > 1e-9 * abs(matrix[0, 0]) or matrix[1, 0] != 0 or np.any(matrix[2, :2] != 0):
            raise ValueError(
                f"intrinsics must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew), got {matrix.tolist()}"
            )
        return cls(matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2], width, height, distortion, distortion_model)

    @classmethod
    def from_matrix_one_based(cls, intrinsics: np.ndarray, width: int, height: int) -> PinholeCamera:
        """From a 3x3 K published for 1-based (MATLAB) pixel centres, e.g. SUN RGB-D, NYU v2."""
        camera = cls.from_matrix(intrinsics, width, height)
        return cls(camera.fx, camera.fy, camera.cx - 1.0, camera.cy - 1.0, width, height)

    @classmethod
    def from_one_based(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> PinholeCamera:
        """From intrinsics whose principal point is given for 1-based (MATLAB) pixel centres."""
        return cls(fx, fy, cx - 1.0, cy - 1.0, width, height)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64 intrinsics matrix K in the 0-based convention."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def matrix_one_based(self) -> np.ndarray:
        """(3, 3) float64 K for 1-based (MATLAB) pixel centres: principal point + 1."""
        matrix = self.matrix
        matrix[:2, 2] += 1.0
        return matrix

    # ----- files and other libraries -------------------------------------------------------
    @classmethod
    def from_sunrgbd_intrinsics(cls, path: str | Path, width: int, height: int) -> PinholeCamera:
        """Read a SUN RGB-D `intrinsics.txt` (3x3 K, row-major, 1-based pixel centres)."""
        matrix = _read_numbers(path, 9, "SUN RGB-D intrinsics (3x3 K)").reshape(3, 3)
        return cls.from_matrix_one_based(matrix, width, height)

    def to_sunrgbd_intrinsics(self, path: str | Path) -> None:
        """Write a SUN RGB-D style `intrinsics.txt` (3x3 K, row-major, 1-based pixel centres)."""
        np.savetxt(path, self.matrix_one_based, fmt="%.6f")

    @classmethod
    def from_open3d(cls, intrinsic) -> PinholeCamera:
        """From an `open3d.camera.PinholeCameraIntrinsic` (Open3D is 0-based like pcseg)."""
        return cls.from_matrix(np.asarray(intrinsic.intrinsic_matrix), intrinsic.width, intrinsic.height)

    def to_open3d(self):
        """An `open3d.camera.PinholeCameraIntrinsic` for this camera (imports open3d lazily)."""
        if self.is_distorted:
            raise ValueError(
                f"Open3D's PinholeCameraIntrinsic has no lens distortion; this camera has "
                f"distortion_model={self.distortion_model!r} {self.distortion}: undistort the images first"
            )
        open3d = import_open3d()  # lazy: pcseg must import without open3d's native libraries

        return open3d.camera.PinholeCameraIntrinsic(self.width, self.height, self.fx, self.fy, self.cx, self.cy)

    # ----- derived cameras -----------------------------------------------------------------
    def cropped(self, left: int, top: int, width: int, height: int) -> PinholeCamera:
        """The camera of the sub-image image[top:top + height, left:left + width] (0-based)."""
        if left < 0 or top < 0 or left + width > self.width or top + height > self.height:
            raise ValueError(
                f"crop (left={left}, top={top}, width={width}, height={height}) is outside the "
                f"{self.width}x{self.height} image"
            )
        # Distortion acts on normalised coordinates: crops and resizes keep it.
        return PinholeCamera._derived(
            self.fx, self.fy, self.cx - left, self.cy - top, width, height, self.distortion, self.distortion_model
        )

    def scaled(self, factor: float) -> PinholeCamera:
        """The camera of the image resized by `factor` (pixel areas scale about their corners)."""
        width, height = round(self.width * factor), round(self.height * factor)
        # With 0-based centres the image spans [-0.5, W - 0.5); scaling that span maps
        # c -> (c + 0.5) * factor - 0.5.
        return PinholeCamera._derived(
            self.fx * factor,
            self.fy * factor,
            (self.cx + 0.5) * factor - 0.5,
            (self.cy + 0.5) * factor - 0.5,
            width,
            height,
            self.distortion,
            self.distortion_model,
        )

    def check_image_shape(self, shape, name: str) -> None:
        """Check that an image (or a stack of images) has this camera's size.

        Args:
            shape: the image's shape, ending with (height, width).
            name: the argument's name, for the error message.

        Raises:
            ValueError: naming `name` unless `shape` ends with (height, width).
        """
        shape = tuple(shape)
        if len(shape) < 2 or tuple(shape[-2:]) != (self.height, self.width):
            raise ValueError(
                f"{name} has shape {shape} but the camera is {self.width}x{self.height} "
                f"(expected (..., {self.height}, {self.width}))"
            )


# ----- KITTI -------------------------------------------------------------------------------
@dataclass(frozen=True)
class KittiCalibration:
    """The calibration of one KITTI object / odometry frame.

    A LiDAR point X lands in image i at `P[i] @ R0_rect @ T_cam0_from_velo @ [X; 1]`.

    Attributes:
        P: (4, 3, 4) float64 rectified projection matrices P0..P3 (0-based pixel centres).
        R0_rect: (4, 4) float64 rectifying rotation, padded to homogeneous.
        T_cam0_from_velo: (4, 4) float64, `Tr_velo_to_cam` padded (maps LiDAR to the
            unrectified reference camera 0).
        T_velo_from_imu: (4, 4) float64 `Tr_imu_to_velo` padded, or None when the file has none.
    """

    P: np.ndarray
    R0_rect: np.ndarray
    T_cam0_from_velo: np.ndarray
    T_velo_from_imu: np.ndarray | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> KittiCalibration:
        """Parse a KITTI `calib.txt` (lines `KEY: v1 v2 ...`)."""
        path = Path(path)
        entries: dict[str, np.ndarray] = {}
        for line_number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            key, separator, values = line.partition(":")
            if not separator:
                raise ValueError(f"{path}:{line_number}: expected 'KEY: numbers', got {line!r}")
            try:
                entries[key.strip()] = np.array(values.split(), dtype=np.float64)
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: {error}") from error
        # Odometry calib files name the LiDAR transform `Tr` and have no R0_rect.
        if "Tr_velo_to_cam" not in entries and "Tr" in entries:
            entries["Tr_velo_to_cam"] = entries["Tr"]
        if "R0_rect" not in entries:
            entries["R0_rect"] = np.eye(3).ravel()
        for key, size in [("P0", 12), ("P1", 12), ("P2", 12), ("P3", 12), ("R0_rect", 9), ("Tr_velo_to_cam", 12)]:
            if key not in entries:
                raise ValueError(f"{path}: missing {key}")
            if entries[key].size != size:
                raise ValueError(f"{path}: {key} must have {size} numbers, got {entries[key].size}")
        projections = np.stack([entries[f"P{i}"].reshape(3, 4) for i in range(4)])
        rectify = np.eye(4)
        rectify[:3, :3] = entries["R0_rect"].reshape(3, 3)
        imu = None
        if "Tr_imu_to_velo" in entries:
            imu = _pad_rigid(entries["Tr_imu_to_velo"].reshape(3, 4))
        return cls(projections, rectify, _pad_rigid(entries["Tr_velo_to_cam"].reshape(3, 4)), imu)

    @property
    def T_rect_from_velo(self) -> np.ndarray:
        """(4, 4) float64: LiDAR -> rectified camera 0 (`R0_rect @ Tr_velo_to_cam`)."""
        return self.R0_rect @ self.T_cam0_from_velo

    def projection_from_velo(self, camera_index: int = 2) -> np.ndarray:
        """(3, 4) float64 `P_i @ R0_rect @ Tr_velo_to_cam`: homogeneous LiDAR point -> pixel."""
        return self.P[camera_index] @ self.T_rect_from_velo

    def camera(self, camera_index: int, width: int, height: int) -> tuple[PinholeCamera, np.ndarray]:
        """Split `P_i @ R0 @ Tr` into a PinholeCamera and a rigid `T_cam_from_velo` (4, 4).

        KITTI's P_i = K [I | t_i]: the stereo baseline sits in its last column. Moving
        t_i = K^-1 P_i[:, 3] into the pose gives exactly the same pixels through the
        plain pinhole model that project_points / paint_points use.

        Args:
            camera_index: 0..3 (2 = the left colour camera, image_2).
            width: image width in pixels.
            height: image height in pixels.

        Returns:
            (camera, T_cam_from_velo): the PinholeCamera and a (4, 4) float64 pose.

        Raises:
            ValueError: on a camera_index outside 0..3.
        """
        if camera_index not in (0, 1, 2, 3):
            raise ValueError(f"camera_index must be 0..3, got {camera_index}")
        projection = self.P[camera_index]
        pinhole = PinholeCamera.from_matrix(projection[:, :3], width, height)
        offset = np.eye(4)
        offset[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
        return pinhole, offset @ self.T_rect_from_velo


def _read_numbers(path: str | Path, count: int, what: str) -> np.ndarray:
    """The whitespace-separated numbers of a text file, exactly `count` of them, as float64."""
    try:
        values = np.loadtxt(path, dtype=np.float64).ravel()
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {what} from {path}: {error}") from error
    if values.size != count:
        raise ValueError(f"{path}: expected {count} numbers for {what}, got {values.size}")
    return values


def _pad_rigid(matrix_3x4: np.ndarray) -> np.ndarray:
    padded = np.eye(4)
    padded[:3, :] = matrix_3x4
    return padded


# ----- SUN RGB-D -----------------------------------------------------------------------------
# SUN RGB-D's "upright depth" frame is x right, y forward, z up; a camera (x right, y down,
# z forward) point (x, y, z) is (x, z, -y) in it before the tilt rotation.
_UPRIGHT_FROM_CAMERA_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def read_sunrgbd_extrinsics(path: str | Path) -> np.ndarray:
    """Read a raw SUN RGB-D `extrinsics/*.txt` (3x4, row-major) as `T_world_from_camera`.

    The file maps camera coordinates (x right, y down, z forward, as everywhere in pcseg)
    into SUN3D's gravity-aligned frame, whose y axis points down. The returned pose goes
    one step further, into SUN RGB-D's upright frame (x right, y forward, z up: the floor
    is horizontal), by the toolbox's axis swap (x, y, z) -> (x, z, -y): the toolbox's
    commented inverse reads `Rtilt' -> [1 0 0; 0 0 -1; 0 1 0] -> anno_extrinsics`.

    Args:
        path: the extrinsics text file.

    Returns:
        T_world_from_camera: (4, 4) float64, world = SUN RGB-D's upright frame.

    Raises:
        ValueError: when the file does not hold 12 numbers.
    """
    extrinsics = _read_numbers(path, 12, "SUN RGB-D extrinsics (3x4)").reshape(3, 4)
    pose = np.eye(4)
    pose[:3, :3] = _UPRIGHT_FROM_CAMERA_AXES @ extrinsics[:, :3]
    pose[:3, 3] = _UPRIGHT_FROM_CAMERA_AXES @ extrinsics[:, 3]
    return pose


def read_sunrgbd_toolbox_calib(path: str | Path, width: int, height: int) -> tuple[PinholeCamera, np.ndarray]:
    """Read a SUN RGB-D toolbox / VoteNet `calib/*.txt` (line 1 Rtilt, line 2 K, column-major).

    Args:
        path: the calib text file.
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        (camera, T_camera_from_upright): the PinholeCamera (0-based, converted from the
        toolbox's 1-based K) and a (4, 4) float64 pose mapping the export's upright-depth
        points (the xyz of `depth/*.mat`) into the camera frame, so
        `project_points(points, camera, T_camera_from_upright)` lands each point on its pixel.

    Raises:
        ValueError: when the file does not start with two lines of 9 numbers.
    """
    path = Path(path)
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[0]) != 9 or len(lines[1]) != 9:
        raise ValueError(f"{path}: expected two lines of 9 numbers (Rtilt, K), got {[len(line) for line in lines]}")
    rtilt = np.array(lines[0], dtype=np.float64).reshape(3, 3, order="F")
    intrinsics = np.array(lines[1], dtype=np.float64).reshape(3, 3, order="F")
    pose = np.eye(4)
    # upright = Rtilt @ axes @ camera  =>  camera = axes^T @ Rtilt^T @ upright.
    pose[:3, :3] = _UPRIGHT_FROM_CAMERA_AXES.T @ rtilt.T
    return PinholeCamera.from_matrix_one_based(intrinsics, width, height), pose


def decode_sunrgbd_depth(depth_png: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth PNG (uint16, bits rotated by 3) -> (H, W) uint16 millimetres."""
    depth = np.asarray(depth_png)
    if depth.dtype != np.uint16:
        raise ValueError(f"depth_png must be uint16, got {depth.dtype}")
    return (depth >> 3) | (depth << 13)
