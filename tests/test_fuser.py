"""pcseg.Fuser on real and rendered frames (NYU 1407, KITTI 000000, a generated room), the
`pcseg fuse` folder format (pcseg.fuse_folder), errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.bridge import KittiCalibration, PinholeCamera, backproject_depth, paint_points, project_points
from pcseg.data.kitti import read_velodyne_bin
from pcseg.data.nyu import nyu_camera, read_nyu_frame
from pcseg.data.synthetic import build_room, look_at_pose, render_view
from pcseg.fuse_folder import MANIFEST_NAME, fuse_folder, fuser_from_folder, write_frames_folder
from pcseg.fuser import Fuser
from pcseg.testing import DEVICES

pytestmark = pytest.mark.usefixtures("single_torch_thread")

NYU_LABELS = "DERIVED_class13_1407_crop425x560.png"


@pytest.fixture(scope="module")
def nyu(shared_data):
    """NYU 1407 (560x425 crop): image, uint16 depth (mm), 13-class labels (0 = unlabelled)."""
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / NYU_LABELS)
    depth = np.array(Image.open(folder / "depth.png"))
    points, _, valid = backproject_depth(depth, frame["camera"], 1000.0, 10.0)
    return {
        "folder": folder,
        "image": frame["image"],
        "depth": depth,
        "labels": frame["label_image"],
        "camera": frame["camera"],
        "points": points,
        "valid": valid,
    }


@pytest.fixture(scope="module")
def kitti(shared_data):
    folder = shared_data / "kitti" / "000000"
    height, width = np.array(Image.open(folder / "image_2.png")).shape[:2]
    # A label map of five vertical bands: the label of a pixel is computable from its column.
    band_width = width // 5 + 1
    bands = np.broadcast_to((np.arange(width) // band_width)[None, :], (height, width)).astype(np.int64)
    return {
        "folder": folder,
        "scan": read_velodyne_bin(folder / "velodyne.bin"),
        "calibration": KittiCalibration.from_file(folder / "calib.txt"),
        "bands": bands,
        "band_width": band_width,
        "size": (width, height),
    }


def test_nyu_labels_reproduce_every_labelled_pixel(nyu):
    # 0.5 mm voxels: neighbouring NYU pixels are >= 1.3 mm apart at the frame's nearest
    # depth, so every pixel gets its own voxel and the query must return its 2D label.
    fuser = Fuser(14, 0.0005, "bayes", ignore_label=0)
    added = fuser.add_rgbd(nyu["image"], nyu["depth"], nyu["labels"], nyu["camera"], None)
    truth = nyu["labels"][nyu["valid"]]
    labelled = truth > 0
    assert added == labelled.sum() == fuser.num_voxels  # one voxel per labelled pixel
    labels = fuser.labels(nyu["points"])
    np.testing.assert_array_equal(labels[labelled], truth[labelled])
    assert (labels[~labelled] == -1).all()  # unlabelled pixels added nothing
    probabilities = fuser.probabilities(nyu["points"][labelled][:1000])
    # Bayes with a hard label: p = 1 for the label, 1e-3 for the 13 others, renormalised.
    np.testing.assert_allclose(probabilities.max(axis=1), 1.0 / (1.0 + 13e-3), rtol=1e-5)
    # One point per voxel: voxel positions and colours are the pixels' own (matched by sorting).
    pixel_points = nyu["points"][labelled].astype(np.float64)
    pixel_colors = nyu["image"][nyu["valid"]][labelled] / 255.0
    by_pixel, by_voxel = np.lexsort(pixel_points.T), np.lexsort(fuser.voxel_points().T)
    np.testing.assert_array_equal(fuser.voxel_points()[by_voxel], pixel_points[by_pixel])
    np.testing.assert_allclose(fuser.voxel_colors()[by_voxel], pixel_colors[by_pixel], atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_nyu_coarse_voxels_hold_the_majority_label(nyu, device):
    voxel_size = 0.05
    fuser = Fuser(14, voxel_size, "bayes", ignore_label=0, device=device)
    fuser.add_rgbd(None, nyu["depth"], nyu["labels"], nyu["camera"])
    points, truth = nyu["points"], nyu["labels"][nyu["valid"]]
    labelled = truth > 0
    # Reference: per-voxel label counts with numpy, same float32 voxel arithmetic as the map.
    cells = np.floor(points[labelled] * np.float32(1.0 / voxel_size)).astype(np.int64)
    _, voxel_of_point = np.unique(cells, axis=0, return_inverse=True)
    voxel_of_point = voxel_of_point.ravel()
    counts = np.zeros((voxel_of_point.max() + 1, 14), np.int64)
    np.add.at(counts, (voxel_of_point, truth[labelled]), 1)
    expected = counts.argmax(axis=1)[voxel_of_point]
    np.testing.assert_array_equal(fuser.labels(points[labelled]), expected)
    assert fuser.num_voxels == counts.shape[0]
    # The majority label is right for most pixels, not all (voxels straddle boundaries).
    accuracy = np.mean(expected == truth[labelled])
    assert 0.95 < accuracy < 1.0


def test_scores_logits_and_poses_give_the_same_map(nyu):
    camera = nyu["camera"]
    labels = np.where(nyu["labels"] > 0, nyu["labels"] - 1, -1)  # 13 classes, -1 = no label
    one_hot = np.zeros((13,) + labels.shape, np.float32)
    np.put_along_axis(one_hot, np.maximum(labels, 0)[None], 1.0, axis=0)
    from_labels = Fuser(13, 0.05, "mean")
    from_labels.add_rgbd(None, nyu["depth"], labels, camera)
    # Unlabelled pixels as uniform scores would add observations: restrict to labelled depth.
    depth = np.where(labels >= 0, nyu["depth"], 0).astype(np.uint16)
    from_scores = Fuser(13, 0.05, "mean")
    from_scores.add_rgbd(None, depth, one_hot, camera)
    from_logits = Fuser(13, 0.05, "mean")
    from_logits.add_rgbd(None, depth, torch.from_numpy(one_hot * 40.0), camera, scores="logits")
    points = nyu["points"][::7]
    np.testing.assert_array_equal(from_scores.labels(points), from_labels.labels(points))
    np.testing.assert_allclose(from_scores.probabilities(points), from_labels.probabilities(points), atol=1e-6)
    np.testing.assert_allclose(from_logits.probabilities(points), from_labels.probabilities(points), atol=1e-6)
    assert from_labels.num_voxels == from_scores.num_voxels == from_logits.num_voxels


def test_posed_float_depth_frame_lands_where_the_pose_puts_it(nyu):
    pose = np.eye(4)
    angle = 0.3
    pose[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    pose[:3, 3] = [1.5, -2.0, 0.25]
    depth_metres = nyu["depth"].astype(np.float32) / 1000.0  # float depth: depth_scale defaults to 1
    fuser = Fuser(14, 0.0005, "vote", ignore_label=0)
    fuser.add_rgbd(None, depth_metres, nyu["labels"], nyu["camera"], pose)
    world = backproject_depth(depth_metres, nyu["camera"], 1.0, 10.0, pose).points
    truth = nyu["labels"][nyu["valid"]]
    labels = fuser.labels(world)
    np.testing.assert_array_equal(labels[truth > 0], truth[truth > 0])
    # The same points left in the camera frame are (almost all) somewhere the map never saw.
    assert fuser.query(nyu["points"]).known.mean() < 0.01


def test_frames_added_from_several_threads_match_sequential(nyu):
    import threading

    poses = []
    for shift in range(4):
        pose = np.eye(4)
        pose[:3, 3] = [0.02 * shift, 0.0, 0.03 * shift]
        poses.append(pose)
    sequential = Fuser(14, 0.05, "vote", ignore_label=0)
    for pose in poses:
        sequential.add_rgbd(None, nyu["depth"], nyu["labels"], nyu["camera"], pose)
    shared = Fuser(14, 0.05, "vote", ignore_label=0)
    errors = []

    def add(pose):
        try:
            shared.add_rgbd(None, nyu["depth"], nyu["labels"], nyu["camera"], pose)
            shared.labels(nyu["points"][:5000])  # queries interleave with the other threads' adds
        except Exception as error:  # noqa: BLE001  (reported below, in the main thread)
            errors.append(error)

    threads = [threading.Thread(target=add, args=(pose,)) for pose in poses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Votes are integer counts: the fused result does not depend on the order of the frames.
    assert shared.num_voxels == sequential.num_voxels and shared.num_frames == 4
    query = np.concatenate([nyu["points"], nyu["points"] + np.float32([0.06, 0.0, 0.09])])
    np.testing.assert_array_equal(shared.labels(query), sequential.labels(query))
    np.testing.assert_array_equal(shared.probabilities(query), sequential.probabilities(query))


def test_lidar_points_take_the_label_of_their_pixel(kitti):
    scan, calibration, bands = kitti["scan"], kitti["calibration"], kitti["bands"]
    width, height = kitti["size"]
    # 1 mm voxels: one voxel per LiDAR point, so queries return each point's own label.
    fuser = Fuser(5, 0.001, "vote")
    added = fuser.add_lidar(scan, bands, calibration)
    camera, T_camera_from_velo = calibration.camera(2, width, height)
    projected = project_points(scan[:, :3].astype(np.float64), camera, T_camera_from_velo)
    painted = paint_points(scan[:, :3], bands, camera, T_camera_from_velo, num_classes=5, zbuffer_radius=1)
    labels = fuser.labels(scan[:, :3])
    known = labels >= 0
    # About 20,000 of 115,384 points land in image_2; the z-buffer hides a few hundred.
    assert 19_000 < projected.in_image.sum() < 21_000
    assert added == known.sum() == painted.visible.sum()
    assert 0 < (projected.in_image & ~known).sum() < 1_000
    assert not known[~projected.in_image].any()
    column = np.floor(projected.pixels[known, 0] + 0.5).astype(np.int64)
    np.testing.assert_array_equal(labels[known], column // kitti["band_width"])
    # The (camera, T_camera_from_lidar) form of the calibration, scores, and a pose.
    scores = np.zeros((5, height, width), np.float32)
    np.put_along_axis(scores, bands[None], 1.0, axis=0)
    pose = np.eye(4)
    pose[:3, 3] = [100.0, -50.0, 2.0]
    other = Fuser(5, 0.001, "bayes")
    assert other.add_lidar(scan[:, :3], scores, (camera, T_camera_from_velo), pose) == added
    np.testing.assert_array_equal(other.labels(scan[:, :3] + np.float32([100.0, -50.0, 2.0])), labels)


def test_lidar_ignored_pixels_add_nothing(kitti):
    width, height = kitti["size"]
    labels = kitti["bands"].copy()
    labels[: height // 2] = 7  # the ignore label: the top half of the image says nothing
    fuser = Fuser(5, 0.001, "bayes", ignore_label=7)
    fuser.add_lidar(kitti["scan"], labels, kitti["calibration"])
    camera, T_camera_from_velo = kitti["calibration"].camera(2, width, height)
    projected = project_points(kitti["scan"][:, :3].astype(np.float64), camera, T_camera_from_velo)
    known = fuser.query(kitti["scan"][:, :3]).known
    row = np.floor(projected.pixels[:, 1] + 0.5)
    assert not known[projected.in_image & (row < height // 2)].any()
    assert known[projected.in_image & (row >= height // 2)].mean() > 0.95


def test_add_rgbd_skips_a_frame_without_valid_depth():
    camera = PinholeCamera(50.0, 50.0, 9.5, 7.5, 20, 16)
    labels = np.ones((16, 20), np.int64)
    fuser = Fuser(3, 0.1)
    # No valid pixel (all zero, like a covered sensor): nothing integrated, and no error.
    assert (
        fuser.add_rgbd(None, np.zeros((16, 20), np.uint16), labels, camera, None, depth_scale=1000.0, depth_trunc=5.0)
        == 0
    )
    assert (
        fuser.add_rgbd(
            None, np.full((16, 20), np.nan, np.float32), labels, camera, np.eye(4), depth_scale=1.0, depth_trunc=5.0
        )
        == 0
    )
    assert fuser.num_voxels == 0
    # A bad frame still raises, depth or not.
    with pytest.raises(ValueError, match=r"segmentation has shape \(15, 20\)"):
        fuser.add_rgbd(None, np.zeros((16, 20), np.uint16), labels[1:], camera, depth_scale=1000.0, depth_trunc=5.0)
    with pytest.raises(ValueError, match=r"color must be \(H, W, 3\)"):
        fuser.add_rgbd(
            np.zeros((16, 20)), np.zeros((16, 20), np.uint16), labels, camera, depth_scale=1000.0, depth_trunc=5.0
        )
    depth = np.full((16, 20), 1500, np.uint16)
    depth[:4] = 0
    assert fuser.add_rgbd(None, depth, labels, camera, None, depth_scale=1000.0, depth_trunc=5.0) == 12 * 20
    assert Fuser(3, 0.1).add_rgbd(None, depth, labels, camera) == 12 * 20  # millimetres inferred from uint16
    assert fuser.voxel_labels().tolist() == [1] * fuser.num_voxels


def test_fusing_noisy_views_beats_every_single_view():
    scene = build_room(1)
    width, depth, _ = scene.size
    camera = PinholeCamera(60.0, 60.0, 39.5, 29.5, 80, 60)
    rng = np.random.default_rng(0)
    views = []
    for angle in np.linspace(0.0, 0.6, 5):
        eye = [width / 2 + 0.5 * np.cos(angle), depth / 2 + 0.5 * np.sin(angle), 1.6]
        pose = look_at_pose(eye, [width * 0.15, depth * 0.2, 0.7])
        views.append((render_view(scene, camera, pose), pose))
    num_classes = 13
    fuser = Fuser(num_classes, 0.1, "bayes")
    single_view_accuracy = []
    evaluation = []
    for view, pose in views:
        truth = view["label"]
        noisy = np.where(rng.random(truth.shape) < 0.4, rng.integers(0, num_classes, truth.shape), truth)
        noisy[truth < 0] = 0
        # A soft segmentation: 0.5 on the (noisy) label, the rest spread evenly.
        scores = np.full((num_classes,) + truth.shape, 0.5 / (num_classes - 1), np.float32)
        np.put_along_axis(scores, noisy[None], 0.5, axis=0)
        depth_image = np.where(truth >= 0, view["depth"], 0.0)
        fuser.add_rgbd(view["color"], depth_image, scores, camera, pose, depth_scale=1.0, depth_trunc=20.0)
        evaluation.append((depth_image, truth, pose))
        valid = truth >= 0
        single_view_accuracy.append(np.mean(noisy[valid] == truth[valid]))
    correct = total = 0
    for depth_image, truth, pose in evaluation:
        points, _, valid = backproject_depth(depth_image, camera, 1.0, 20.0, pose)
        query = fuser.query(points)
        correct += np.sum(query.labels == truth[valid])
        total += len(points)
    fused_accuracy = correct / total
    assert max(single_view_accuracy) < 0.7
    assert fused_accuracy > max(single_view_accuracy) + 0.15, (fused_accuracy, single_view_accuracy)
    colors = fuser.voxel_colors()
    assert np.isfinite(colors).all() and (colors >= 0).all() and (colors <= 1).all()


def test_add_lidar_adds_only_visible_points(shared_data):
    folder = shared_data / "kitti" / "000000"
    points = np.fromfile(folder / "velodyne.bin", dtype=np.float32).reshape(-1, 4)[:, :3]
    image = np.array(Image.open(folder / "image_2.png"))
    camera, T_cam_from_velo = KittiCalibration.from_file(folder / "calib.txt").camera(2, image.shape[1], image.shape[0])
    scores = np.random.default_rng(0).random((5, image.shape[0], image.shape[1]), dtype=np.float32)
    painted = paint_points(points, scores, camera, T_cam_from_velo)
    fuser = Fuser(5, 0.2, "mean")
    T_world_from_velo = np.eye(4)
    T_world_from_velo[:3, 3] = [100.0, 0.0, 0.0]
    # paint_points' own z-buffer (radius 0), not the Fuser's default radius 1.
    fuser.add_lidar(points, scores, (camera, T_cam_from_velo), T_world_from_velo, zbuffer_radius=0)
    assert fuser.voxel_observations().sum() == painted.visible.sum()
    query = fuser.query(points[painted.visible] + np.array([100.0, 0.0, 0.0], np.float32))
    assert query.known.all()
    assert not fuser.query(points[~painted.in_image] + np.array([100.0, 0, 0], np.float32)).known.all()


def test_add_lidar_occlusion_against_a_depth_image():
    camera = PinholeCamera(10.0, 10.0, 3.5, 2.5, 8, 6)
    points = np.array([[0.0, 0.0, 2.0], [0.1, 0.1, 2.0]], np.float32)
    labels = np.ones((6, 8), np.int64)
    for depth_metres, expected in ((1.0, 0), (3.0, 2)):  # a surface in front of the points, then behind
        fuser = Fuser(2, 0.05)
        depth_image = np.full((6, 8), depth_metres)
        assert (
            fuser.add_lidar(
                points,
                labels,
                (camera, np.eye(4)),
                occlusion="depth",
                depth_image=depth_image,
                occlusion_tolerance=0.05,
                occlusion_tolerance_relative=0.0,
            )
            == expected
        )


def test_export_ply_and_npz(tmp_path):
    import open3d

    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    fuser = Fuser(3, 0.5, "vote", palette=palette)
    points = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [0.3, 0.1, 0.2], [2.1, 0.1, 0.1]], np.float32)
    fuser.add_points(points, labels=np.array([2, 2, 1, 0]))
    ply = fuser.export(tmp_path / "map.ply")
    cloud = open3d.io.read_point_cloud(str(ply))
    assert len(cloud.points) == fuser.num_voxels == 2
    # Voxel 0 holds votes 2, 2, 1 -> label 2 (blue); voxel 1 label 0 (red); at the mean points.
    np.testing.assert_allclose(np.asarray(cloud.points), [[0.2, 0.4 / 3, 0.5 / 3], [2.1, 0.1, 0.1]], atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors), palette[[2, 0]] / 255.0)
    saved = np.load(fuser.export(tmp_path / "map.npz"))
    np.testing.assert_array_equal(saved["labels"], [2, 0])
    np.testing.assert_allclose(saved["probabilities"][0], [0.0, 1 / 3, 2 / 3], atol=1e-6)
    np.testing.assert_array_equal(saved["observations"], [3, 1])
    np.testing.assert_array_equal(fuser.labels(np.array([[0.4, 0.4, 0.4], [5.0, 5.0, 5.0]])), [2, -1])
    big_endian = np.array([[0.4, 0.4, 0.4]], dtype=">f8")
    np.testing.assert_array_equal(fuser.labels(big_endian), [2])


def _write_nyu_folder(folder, nyu, pose):
    folder.mkdir()
    for name in ("images.png", "depth.png", NYU_LABELS):
        shutil.copy(nyu["folder"] / name, folder / name)
    np.savetxt(folder / "pose.txt", pose)
    camera = nyu_camera(cropped=True)
    manifest = {
        "num_classes": 14,
        "ignore_label": 0,
        "voxel_size": 0.05,
        "mode": "bayes",
        # One-based (MATLAB) intrinsics, as NYU publishes them.
        "camera": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx + 1, "cy": camera.cy + 1, "one_based": True},
        "frames": [
            {
                "type": "rgbd",
                "color": "images.png",
                "depth": "depth.png",
                "segmentation": NYU_LABELS,
                "pose": "pose.txt",
            },
            {"type": "rgbd", "depth": "depth.png", "segmentation": NYU_LABELS, "pose": np.eye(4).tolist()},
        ],
    }
    (folder / "frames.json").write_text(json.dumps(manifest))


def test_fuse_folder_rgbd_matches_the_api(nyu, tmp_path):
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 0.01]  # two frames 1 cm apart
    _write_nyu_folder(tmp_path / "frames", nyu, pose)
    summary = fuse_folder(tmp_path / "frames", tmp_path / "map.npz", progress=False)
    reference = Fuser(14, 0.05, "bayes", ignore_label=0)
    for frame_pose in (pose, None):
        reference.add_rgbd(nyu["image"], nyu["depth"], nyu["labels"], nyu_camera(cropped=True), frame_pose)
    saved = np.load(tmp_path / "map.npz")
    assert summary["frames"] == 2 and summary["voxels"] == reference.num_voxels
    assert summary["points_integrated"] == reference.num_points_added == 2 * np.sum(nyu["labels"][nyu["valid"]] > 0)
    np.testing.assert_array_equal(saved["labels"], reference.voxel_labels())
    np.testing.assert_allclose(saved["points"], reference.voxel_points())
    assert sum(summary["label_counts"]) == summary["voxels"]
    # Overrides from the caller win over the manifest.
    fuser, _ = fuser_from_folder(tmp_path / "frames", voxel_size=0.2, mode="vote")
    assert (fuser.voxel_size, fuser.mode) == (0.2, "vote") and fuser.num_voxels < reference.num_voxels


def test_fuse_folder_lidar_matches_the_api(kitti, tmp_path):
    folder = tmp_path / "lidar"
    (folder / "velodyne").mkdir(parents=True)
    shutil.copy(kitti["folder"] / "velodyne.bin", folder / "velodyne" / "000000.bin")
    shutil.copy(kitti["folder"] / "calib.txt", folder / "calib.txt")
    width, height = kitti["size"]
    scores = np.random.default_rng(0).random((5, height, width), dtype=np.float32)
    np.save(folder / "scores.npy", scores)
    np.save(folder / "points.npy", kitti["scan"][:, :3])
    pose = [[1, 0, 0, 10.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    manifest = {
        "num_classes": 5,
        "voxel_size": 0.2,
        "mode": "mean",
        "scores": "logits",
        "frames": [
            {"type": "lidar", "points": "velodyne/000000.bin", "calib": "calib.txt", "segmentation": "scores.npy"},
            {"type": "lidar", "points": "points.npy", "calib": "calib.txt", "segmentation": "scores.npy", "pose": pose},
        ],
    }
    import yaml

    (folder / "frames.yaml").write_text(yaml.safe_dump(manifest))  # YAML manifests work like JSON
    summary = fuse_folder(folder, tmp_path / "map.ply", progress=False)
    reference = Fuser(5, 0.2, "mean")
    reference.add_lidar(kitti["scan"], scores, kitti["calibration"], scores="logits")
    reference.add_lidar(kitti["scan"], scores, kitti["calibration"], np.array(pose), scores="logits")
    assert summary["voxels"] == reference.num_voxels
    assert summary["points_integrated"] == reference.num_points_added
    import open3d

    cloud = open3d.io.read_point_cloud(summary["out_path"])
    np.testing.assert_allclose(np.asarray(cloud.points), reference.voxel_points(), atol=1e-5)


def test_fuse_folder_sunrgbd_frame(shared_data, tmp_path):
    from pcseg.data.sunrgbd import read_sunrgbd_frame

    frame_dir = shared_data / "sunrgbd" / "raw" / "2014-12-18_11-31-54_260595134347"
    sun = read_sunrgbd_frame(frame_dir)
    height, width = sun["depth"].shape
    # Five vertical bands; band 0 is the ignore label, so the left fifth adds nothing.
    bands = (np.arange(width) * 5 // width)[None, :].repeat(height, axis=0).astype(np.uint8)
    folder = tmp_path / "sun"
    folder.mkdir()
    Image.fromarray(bands).save(folder / "bands.png")
    manifest = {
        "num_classes": 5,
        "ignore_label": 0,
        "voxel_size": 0.0005,
        "mode": "vote",
        "depth_trunc": 8.0,
        "frames": [{"type": "sunrgbd", "frame": str(frame_dir), "segmentation": "bands.png"}],
    }
    (folder / "frames.json").write_text(json.dumps(manifest))
    fuser, _ = fuser_from_folder(folder)
    # The map sits in SUN RGB-D's upright frame (decoded depth, 1-based intrinsics, tilt):
    # each of the reader's upright points queries back to its pixel's band.
    expected = bands[sun["pixel"][:, 1], sun["pixel"][:, 0]].astype(np.int64)
    expected[expected == 0] = -1
    np.testing.assert_array_equal(fuser.labels(sun["coord"]), expected)
    assert fuser.num_points_added == np.sum(expected >= 0) > 100_000


def test_write_frames_folder_reads_back_as_the_same_map(tmp_path):
    camera = PinholeCamera(20.0, 20.0, 9.5, 7.5, 20, 16)
    rng = np.random.default_rng(5)
    frames = []
    for index in range(3):
        depth = rng.uniform(0.5, 3.0, (16, 20)).astype(np.float32)
        depth[0, :5] = 0.0  # no depth
        depth[1, :2] = np.nan
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * index, 0.0, 0.02 * index]
        color = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) if index else None
        frames.append({"depth": depth, "segmentation": rng.integers(-1, 4, (16, 20)), "pose": pose, "color": color})
    folder = write_frames_folder(
        tmp_path / "frames",
        frames,
        camera,
        num_classes=4,
        voxel_size=0.1,
        mode="vote",
        class_names=list("abcd"),
        palette=np.eye(4, 3),
        depth_trunc=5.0,
    )
    fuser, manifest = fuser_from_folder(folder)
    assert manifest["class_names"] == list("abcd") and len(manifest["frames"]) == 3
    np.testing.assert_array_equal(fuser.palette, [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]])
    # The same frames given to a Fuser directly, depth in millimetres as the PNGs hold it.
    reference = Fuser(4, 0.1, "vote")
    for frame in frames:
        depth_mm = np.round(np.nan_to_num(frame["depth"]) * 1000.0).astype(np.uint16)
        reference.add_rgbd(frame["color"], depth_mm, frame["segmentation"], camera, frame["pose"], depth_trunc=5.0)
    assert fuser.num_points_added == reference.num_points_added > 0
    np.testing.assert_array_equal(fuser.voxel_points(), reference.voxel_points())
    np.testing.assert_array_equal(fuser.voxel_probabilities(), reference.voxel_probabilities())
    np.testing.assert_array_equal(fuser.voxel_colors(), reference.voxel_colors())
    with pytest.raises(ValueError, match=r"frames\[0\]: segmentation must be .* below num_classes=3"):
        write_frames_folder(tmp_path / "bad", frames, camera, num_classes=3)
    with pytest.raises(ValueError, match="does not fit a uint16"):
        write_frames_folder(tmp_path / "bad", [dict(frames[0], depth=np.full((16, 20), 70.0))], camera, num_classes=4)


def test_bad_input_raises_named_errors(nyu, tmp_path):
    camera = nyu["camera"]
    with pytest.raises(ValueError, match="mode"):
        Fuser(3, 0.1, "median")
    with pytest.raises(ValueError, match="palette"):
        Fuser(3, 0.1, palette=np.zeros((2, 3), np.uint8))
    fuser = Fuser(13, 0.1)
    with pytest.raises(ValueError, match=r"segmentation labels must lie in \[0, 13\)"):
        fuser.add_rgbd(None, nyu["depth"], nyu["labels"] + 1, camera)  # label 13 needs 14 classes
    with pytest.raises(ValueError, match="C = num_classes = 13"):
        fuser.add_rgbd(None, nyu["depth"], np.zeros((5, 425, 560), np.float32), camera)
    with pytest.raises(ValueError, match="segmentation has shape"):
        fuser.add_rgbd(None, nyu["depth"], nyu["labels"][:100], camera)
    with pytest.raises(ValueError, match="color must be"):
        fuser.add_rgbd(nyu["image"][:, :, :2], nyu["depth"], nyu["labels"] % 13, camera)
    with pytest.raises(TypeError, match="calibration must be"):
        fuser.add_lidar(np.ones((4, 3), np.float32), np.zeros((10, 10), np.int64), "calib.txt")
    with pytest.raises(ValueError, match=r"points must be \(N, 3\) or \(N, 4\)"):
        fuser.add_lidar(
            np.ones((4, 5), np.float32), np.zeros((10, 10), np.int64), (PinholeCamera(5, 5, 5, 5, 10, 10), np.eye(4))
        )
    with pytest.raises(ValueError, match="pose must have last row"):
        fuser.add_lidar(
            np.ones((4, 3), np.float32),
            np.zeros((10, 10), np.int64),
            (PinholeCamera(5, 5, 5, 5, 10, 10), np.eye(4)),
            np.ones((4, 4)),
        )
    with pytest.raises(ValueError, match="nothing to export"):
        fuser.export(tmp_path / "empty.ply")
    # A frame with no valid depth is not an error: it adds nothing.
    assert fuser.add_rgbd(None, np.zeros((425, 560), np.uint16), nyu["labels"] % 13, camera) == 0
    fuser.add_points(np.zeros((1, 3), np.float32), labels=np.array([1]))
    with pytest.raises(ValueError, match=r"\.ply or \.npz"):
        fuser.export(tmp_path / "map.las")
    with pytest.raises(ValueError, match=r"points must be \(N, 3\)"):
        fuser.labels(np.zeros((3, 2)))

    with pytest.raises(FileNotFoundError, match="input folder not found"):
        fuse_folder(tmp_path / "nowhere", tmp_path / "out.ply")
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="frames.json"):
        fuse_folder(folder, tmp_path / "out.ply")
    (folder / "frames.yaml").write_text("[1, 2]")
    with pytest.raises(ValueError, match="frames.yaml: expected a mapping"):
        fuse_folder(folder, tmp_path / "out.ply")
    (folder / "frames.json").write_text("{}")
    with pytest.raises(ValueError, match="keep one manifest"):
        fuse_folder(folder, tmp_path / "out.ply")
    (folder / "frames.yaml").unlink()
    (folder / "frames.json").write_text(json.dumps({"num_classes": 3, "frames": [], "voxelsize": 0.1}))
    with pytest.raises(ValueError, match=r"unknown keys \['voxelsize'\]"):
        fuse_folder(folder, tmp_path / "out.ply")
    radar = {"num_classes": 3, "frames": [{"type": "radar", "segmentation": "x"}]}
    (folder / "frames.json").write_text(json.dumps(radar))
    with pytest.raises(ValueError, match=r"frames\[0\]: 'type' must be 'rgbd', 'sunrgbd' or 'lidar'"):
        fuse_folder(folder, tmp_path / "out.ply", progress=False)
    (folder / "frames.json").write_text(
        json.dumps(
            {
                "num_classes": 3,
                "frames": [
                    {"type": "rgbd", "depth": "missing.png", "segmentation": "x.png", "pose": np.eye(4).tolist()}
                ],
            }
        )
    )
    with pytest.raises(FileNotFoundError, match="missing.png"):
        fuse_folder(folder, tmp_path / "out.ply", progress=False)
    (folder / "frames.json").write_text(
        json.dumps(
            {
                "num_classes": 3,
                "frames": [
                    {
                        "type": "rgbd",
                        "depth": "d.npy",
                        "segmentation": "s.npy",
                        "pose": np.eye(4).tolist(),
                        "camera": {"fx": 1},
                    }
                ],
            }
        )
    )
    np.save(folder / "d.npy", np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"missing \['cx', 'cy', 'fy'\]"):
        fuse_folder(folder, tmp_path / "out.ply", progress=False)


def test_a_distorted_camera_round_trips_through_the_folder_format(tmp_path):
    camera = PinholeCamera(20.0, 20.0, 9.5, 7.5, 20, 16, distortion=(-0.2, 0.05, 0.001, 0.0, 0.0))
    rng = np.random.default_rng(6)
    frames = [
        {
            "depth": rng.uniform(0.5, 3.0, (16, 20)).astype(np.float32),
            "segmentation": rng.integers(0, 3, (16, 20)),
            "pose": np.eye(4),
            "color": None,
        }
    ]
    folder = write_frames_folder(tmp_path / "frames", frames, camera, num_classes=3, voxel_size=0.01)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["camera"]["distortion"] == list(camera.distortion)
    fuser, _ = fuser_from_folder(folder)
    reference = Fuser(3, 0.01)
    depth_mm = np.round(frames[0]["depth"] * 1000.0).astype(np.uint16)
    reference.add_rgbd(None, depth_mm, frames[0]["segmentation"], camera, np.eye(4))
    np.testing.assert_array_equal(fuser.voxel_points(), reference.voxel_points())
