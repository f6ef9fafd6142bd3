"""`pcseg predict --bag` / `pcseg fuse --bag` on real bags written with rosbags from the samples."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="pip install rosbags")

from ros_bag_builders import SECOND, T0, BagBuilder, HeightSegmenter, read_bag, rigid  # noqa: E402

from pcseg.bridge import KittiCalibration, default_palette  # noqa: E402
from pcseg.data.kitti import read_velodyne_bin  # noqa: E402
from pcseg.data.nyu import read_nyu_frame  # noqa: E402
from pcseg.fuser import Fuser  # noqa: E402
from pcseg.ros.bags import FuseTopics, fuse_bag, predict_bag  # noqa: E402
from pcseg.ros.messages import UNLABELLED, pointcloud2_to_numpy, stamp_to_ns  # noqa: E402
from pcseg.ros.transforms import TransformBuffer, TransformError  # noqa: E402

FORMATS = [("ros1", None), ("ros2", "sqlite3"), ("ros2", "mcap")]


def bag_name(tmp_path, kind, name):
    return tmp_path / (f"{name}.bag" if kind == "ros1" else name)


@pytest.fixture(scope="module")
def kitti(shared_data):
    folder = shared_data / "kitti" / "000000"
    return read_velodyne_bin(folder / "velodyne.bin"), KittiCalibration.from_file(folder / "calib.txt"), folder


def kitti_bag(tmp_path, kind, storage, scan, clouds=3, start=T0):
    builder = BagBuilder(kind)
    for i in range(clouds):
        builder.cloud(
            "/points", start + i * SECOND // 10, "velodyne", {"xyz": scan[:, :3] + [i, 0, 0], "intensity": scan[:, 3]}
        )
        builder.string("/chatter", start + i * SECOND // 10 + 5, f"hello {i}")
    return builder.write(bag_name(tmp_path, kind, "in"), storage or "sqlite3")


@pytest.mark.parametrize("kind,storage", FORMATS)
def test_predict_bag_copies_everything_and_labels_each_cloud(tmp_path, kitti, kind, storage):
    scan = kitti[0][::20]
    source = kitti_bag(tmp_path, kind, storage, scan)
    out = bag_name(tmp_path, kind, "out")
    summary = predict_bag(source, out, "/points", HeightSegmenter(), show_progress=False)
    assert summary["clouds"] == 3 and summary["messages"] == 6 and summary["stopped"] is None
    if storage:
        assert f"storage_identifier: {storage}" in (out / "metadata.yaml").read_text()
    written = read_bag(out, kind)
    original = read_bag(source, kind)
    assert [(t, s) for t, s, _ in written if t != "/points/labels"] == [(t, s) for t, s, _ in original]
    labelled = [(s, m) for t, s, m in written if t == "/points/labels"]
    clouds = [(s, m) for t, s, m in original if t == "/points"]
    assert len(labelled) == 3
    palette = default_palette(4)
    for (stamp, out_msg), (in_stamp, in_msg) in zip(labelled, clouds):
        assert stamp == in_stamp and out_msg.header.frame_id == "velodyne"
        assert stamp_to_ns(out_msg.header.stamp) == stamp_to_ns(in_msg.header.stamp)
        fields = pointcloud2_to_numpy(out_msg)
        source_fields = pointcloud2_to_numpy(in_msg)
        expected, probabilities = HeightSegmenter().predict(source_fields["xyz"])
        assert len(fields["label"]) == len(scan)
        np.testing.assert_array_equal(fields["label"], expected)
        np.testing.assert_array_equal(fields["confidence"], np.float32(0.7))
        np.testing.assert_array_equal(fields["rgb"], palette[expected])
        np.testing.assert_array_equal(fields["xyz"], source_fields["xyz"])
        np.testing.assert_array_equal(fields["intensity"], source_fields["intensity"])


def test_predict_bag_nan_points_get_no_label(tmp_path):
    builder = BagBuilder("ros1")
    xyz = np.array([[0, 0, 0], [np.nan, 0, 0], [1, 1, 1]], np.float32)
    builder.cloud("/points", T0, "lidar", {"xyz": xyz})
    source = builder.write(tmp_path / "in.bag")
    predict_bag(source, tmp_path / "out.bag", "/points", HeightSegmenter(), show_progress=False)
    ((_, _, msg),) = [m for m in read_bag(tmp_path / "out.bag", "ros1") if m[0] == "/points/labels"]
    labels = pointcloud2_to_numpy(msg, remove_nans=False)["label"]
    assert labels.tolist() == [2, UNLABELLED, 3]


def test_predict_bag_errors(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros1", None, kitti[0][::50], clouds=1)
    with pytest.raises(
        ValueError,
        match=r"has no topic '/velodyne_points'; its topics: /chatter \(std_msgs/msg/String\), "
        r"/points \(sensor_msgs/msg/PointCloud2\)",
    ):
        predict_bag(source, tmp_path / "o.bag", "/velodyne_points", HeightSegmenter(), show_progress=False)
    with pytest.raises(ValueError, match="holds std_msgs/msg/String, not sensor_msgs/msg/PointCloud2"):
        predict_bag(source, tmp_path / "o2.bag", "/chatter", HeightSegmenter(), show_progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_bag(tmp_path / "missing.bag", tmp_path / "o3.bag", "/points", HeightSegmenter())
    builder = BagBuilder("ros1")
    msg = builder.cloud("/points", T0, "lidar", {"xyz": np.zeros((2, 3), np.float32)})
    msg.fields[2].name = "intensity"
    bad = builder.write(tmp_path / "noz.bag")
    with pytest.raises(ValueError, match=r"frame 'lidar': PointCloud2 has no z field"):
        predict_bag(bad, tmp_path / "o4.bag", "/points", HeightSegmenter(), show_progress=False)


def truncate(path, fraction):
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * fraction))


def test_truncated_ros1_bag_keeps_what_is_readable(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros1", None, kitti[0][::10], clouds=6)
    truncate(source, 0.6)  # a recording cut short: no index, the last chunk incomplete
    summary = predict_bag(source, tmp_path / "out.bag", "/points", HeightSegmenter(), show_progress=False)
    assert 0 < summary["clouds"] < 6
    assert f"bag {source} stops after {summary['messages']} messages" in summary["stopped"]
    assert "ends in an incomplete record at byte" in summary["stopped"]
    written = [t for t, _, _ in read_bag(tmp_path / "out.bag", "ros1")]
    assert written.count("/points/labels") == summary["clouds"] and len(written) == 3 * summary["clouds"]


def test_truncated_mcap_bag_keeps_its_whole_chunks(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros2", "mcap", kitti[0][::10], clouds=12)  # chunks of 1 MiB: several
    truncate(next(source.glob("*.mcap")), 0.6)  # no summary, no footer, the last chunk incomplete
    summary = predict_bag(source, tmp_path / "out", "/points", HeightSegmenter(), show_progress=False)
    assert 0 < summary["clouds"] < 12
    assert f"bag {source} stops after {summary['messages']} messages" in summary["stopped"]
    assert "ends in an incomplete record at byte" in summary["stopped"]
    written = [t for t, _, _ in read_bag(tmp_path / "out", "ros2")]
    assert written.count("/points/labels") == summary["clouds"]


def labelled_clouds_match_the_source(out, source, count):
    """The first `count` clouds of `source` come back labelled in `out`, point for point."""
    written = [m for t, _, m in read_bag(out, "ros2") if t == "/points/labels"]
    clouds = [m for t, _, m in read_bag(source, "ros2") if t == "/points"][:count]
    assert len(written) == len(clouds) == count
    for labelled, cloud in zip(written, clouds):
        xyz = pointcloud2_to_numpy(cloud)["xyz"]
        np.testing.assert_array_equal(pointcloud2_to_numpy(labelled)["xyz"], xyz)
        np.testing.assert_array_equal(pointcloud2_to_numpy(labelled)["label"], HeightSegmenter().predict(xyz)[0])


def test_truncated_sqlite3_bag_keeps_what_is_readable(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros2", "sqlite3", kitti[0][::10], clouds=6)
    whole = tmp_path / "whole"
    shutil.copytree(source, whole)
    database = next(source.glob("*.db3"))
    truncate(database, 0.6)  # sqlite itself calls this "database disk image is malformed"
    cut = database.read_bytes()
    summary = predict_bag(source, tmp_path / "out", "/points", HeightSegmenter(), show_progress=False)
    assert 0 < summary["clouds"] < 6 and summary["messages"] >= 2 * summary["clouds"] - 1  # cloud, string, ...
    assert f"bag {source} stops after {summary['messages']} messages" in summary["stopped"]
    assert f"{database} ({len(cut)} bytes) stops after its" in summary["stopped"]
    assert database.read_bytes() == cut  # read-only: sqlite wrote no journal and changed nothing
    labelled_clouds_match_the_source(tmp_path / "out", whole, summary["clouds"])


def test_sqlite3_bag_of_a_crashed_recording(tmp_path, kitti):
    """rosbag2 writes metadata.yaml when a recording ends cleanly: a crash leaves the .db3
    files alone, here a split bag of two whose second was cut."""
    first = kitti_bag(tmp_path / "a", "ros2", "sqlite3", kitti[0][::10], clouds=3)
    second = kitti_bag(tmp_path / "b", "ros2", "sqlite3", kitti[0][::10] + 100, clouds=4, start=T0 + SECOND)
    whole = [m for t, _, m in read_bag(first, "ros2") + read_bag(second, "ros2") if t == "/points"]
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(next(first.glob("*.db3")), crashed / "crashed_0.db3")
    shutil.copy(next(second.glob("*.db3")), crashed / "crashed_1.db3")
    truncate(crashed / "crashed_1.db3", 0.7)
    summary = predict_bag(crashed, tmp_path / "out", "/points", HeightSegmenter(), show_progress=False)
    assert 3 < summary["clouds"] < 7, summary
    assert "crashed_1.db3" in summary["stopped"]
    written = [m for t, _, m in read_bag(tmp_path / "out", "ros2") if t == "/points/labels"]
    for labelled, cloud in zip(written, whole, strict=False):  # in recording order, file after file
        np.testing.assert_array_equal(pointcloud2_to_numpy(labelled)["xyz"], pointcloud2_to_numpy(cloud)["xyz"])
    assert "storage_identifier: sqlite3" in (tmp_path / "out" / "metadata.yaml").read_text()
    (crashed / "crashed_0.db3").unlink()
    (crashed / "crashed_1.db3").unlink()
    with pytest.raises(ValueError, match="without metadata.yaml and without .db3 or .mcap files"):
        predict_bag(crashed, tmp_path / "out2", "/points", HeightSegmenter(), show_progress=False)


def test_unreadable_sqlite3_bag_names_the_file(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros2", "sqlite3", kitti[0][::10], clouds=2)
    truncate(next(source.glob("*.db3")), 0.001)  # not even the schema survives
    with pytest.raises(ValueError, match=f"cannot read bag {source}"):
        predict_bag(source, tmp_path / "out", "/points", HeightSegmenter(), show_progress=False)


def test_transform_buffer_chains_and_interpolates():
    builder = BagBuilder("ros1")
    builder.transform(T0, "map", "odom", rigid(0, [1, 0, 0]), static=True)
    builder.transform(T0, "odom", "base_link", rigid(0, [0, 0, 0]))
    builder.transform(T0 + SECOND, "odom", "base_link", rigid(90, [2, 0, 0]))
    builder.transform(T0, "base_link", "camera", rigid(0, [0, 0, 1]), static=True)
    tf = TransformBuffer(tolerance_ns=SECOND // 100)
    for topic, _, _, message in builder.messages:
        tf.add_message(message, static=topic == "/tf_static")
    middle = tf.lookup("map", "camera", T0 + SECOND // 2)
    np.testing.assert_allclose(middle, rigid(0, [1, 0, 0]) @ rigid(45, [1, 0, 0]) @ rigid(0, [0, 0, 1]), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("camera", "map", T0) @ tf.lookup("map", "camera", T0), np.eye(4), atol=1e-12)
    with pytest.raises(
        TransformError,
        match=r"from 'camera' to 'map'.*at stamp 1700000002.000000000 s: /tf has it "
        r"from 1700000000.000000000 s to 1700000001.000000000 s",
    ):
        tf.lookup("map", "camera", T0 + 2 * SECOND)
    with pytest.raises(TransformError, match=r"frame 'lidar' is not in /tf or /tf_static"):
        tf.lookup("map", "lidar", T0)


def nyu_rgbd_bag(tmp_path, kind, storage, frame, poses, jitter_ns, with_tf=True):
    builder = BagBuilder(kind)
    camera = frame["camera"]
    depth_mm = np.round(frame["depth"] * 1000).astype(np.uint16)
    for i, pose in enumerate(poses):
        stamp = T0 + i * SECOND
        builder.image("/camera/color/image_raw", stamp + jitter_ns, "camera_color_optical", frame["image"], "rgb8")
        builder.image("/camera/depth/image_rect", stamp - jitter_ns, "camera_color_optical", depth_mm, "16UC1")
        builder.image("/segmentation", stamp, "camera_color_optical", frame["label_image"].astype(np.uint16), "16UC1")
        builder.camera_info(
            "/camera/color/camera_info", stamp, "camera_color_optical", camera.matrix, camera.width, camera.height
        )
        if with_tf:
            builder.transform(stamp, "map", "base_link", pose)
    # a segmentation with no depth near it: must be counted as unpaired
    builder.image(
        "/segmentation", T0 + 10 * SECOND, "camera_color_optical", frame["label_image"].astype(np.uint16), "16UC1"
    )
    # camera mounted 1.2 m up, optical axes (z forward, x right, y down) from a REP 103 base
    mount = np.eye(4)
    mount[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    mount[2, 3] = 1.2
    builder.transform(T0, "base_link", "camera_color_optical", mount, static=True)
    return builder.write(bag_name(tmp_path, kind, "rgbd"), storage or "sqlite3"), mount


@pytest.mark.parametrize("kind,storage", [("ros1", None), ("ros2", "mcap")])
def test_fuse_bag_rgbd_matches_the_numpy_api(tmp_path, shared_data, kind, storage):
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png")
    poses = [rigid(0, [0, 0, 0]), rigid(10, [0.3, 0.1, 0])]
    source, mount = nyu_rgbd_bag(tmp_path, kind, storage, frame, poses, jitter_ns=SECOND // 100)
    topics = FuseTopics(
        segmentation="/segmentation",
        camera_info="/camera/color/camera_info",
        depth="/camera/depth/image_rect",
        image="/camera/color/image_raw",
    )
    summary = fuse_bag(
        source,
        tmp_path / "map.npz",
        topics,
        num_classes=14,
        fixed_frame="map",
        voxel_size=0.1,
        ignore_label=0,
        show_progress=False,
    )
    assert summary["frames"] == 2 and summary["unpaired"]["/segmentation"] == 1
    assert summary["unpaired"]["/camera/depth/image_rect"] == 0 and summary["stopped"] is None
    reference = Fuser(14, 0.1, "bayes", ignore_label=0)
    depth_mm = np.round(frame["depth"] * 1000).astype(np.uint16)
    for pose in poses:
        reference.add_rgbd(frame["image"], depth_mm, frame["label_image"], frame["camera"], pose @ mount)
    reference.export(tmp_path / "reference.npz")
    ours, theirs = np.load(tmp_path / "map.npz"), np.load(tmp_path / "reference.npz")
    np.testing.assert_array_equal(ours["labels"], theirs["labels"])
    np.testing.assert_allclose(ours["points"], theirs["points"], atol=1e-6)


def test_fuse_bag_missing_transform_is_reported(tmp_path, shared_data):
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png")
    source, _ = nyu_rgbd_bag(tmp_path, "ros1", None, frame, [np.eye(4)], jitter_ns=0, with_tf=False)
    topics = FuseTopics(
        segmentation="/segmentation", camera_info="/camera/color/camera_info", depth="/camera/depth/image_rect"
    )
    with pytest.raises(
        ValueError,
        match=r"1 without a transform; first error: no transform from "
        r"'camera_color_optical' to 'map'.*1700000000.000000000 s",
    ):
        fuse_bag(source, tmp_path / "map.ply", topics, num_classes=14, show_progress=False)


@pytest.mark.parametrize("segmentation_kind", ["labels", "logits"])
def test_fuse_bag_lidar_matches_the_numpy_api(tmp_path, kitti, segmentation_kind):
    scan, calibration, folder = kitti
    from pcseg.data.rgbd import read_image

    image = read_image(folder / "image_2.png", "RGB")
    height, width = image.shape[:2]
    segmentation = (image[..., 1] // 64).astype(np.uint8)  # a deterministic 4-class "segmentation"
    encoding = "mono8"
    if segmentation_kind == "logits":  # (C, H, W) class scores, sent as a 32FC4 image (H, W, C)
        segmentation = np.stack([(image[..., c % 3] / 64.0 - c).astype(np.float32) for c in range(4)])
        encoding = "32FC4"
    camera, T_cam_from_velo = calibration.camera(2, width, height)
    builder = BagBuilder("ros2")
    builder.cloud("/velodyne_points", T0, "velodyne", {"xyz": scan[:, :3], "intensity": scan[:, 3]})
    sent = segmentation.transpose(1, 2, 0) if segmentation.ndim == 3 else segmentation
    builder.image("/segmentation", T0 + 1000, "camera2_optical", sent, encoding)
    builder.camera_info("/camera_info", T0, "camera2_optical", camera.matrix, width, height)
    builder.transform(T0, "velodyne", "camera2_optical", np.linalg.inv(T_cam_from_velo), static=True)
    builder.transform(T0, "map", "velodyne", rigid(30, [5, 0, 1.7]), static=True)
    source = builder.write(tmp_path / "lidar")
    topics = FuseTopics(segmentation="/segmentation", camera_info="/camera_info", cloud="/velodyne_points")
    scores = "logits" if segmentation_kind == "logits" else "probabilities"
    summary = fuse_bag(
        source, tmp_path / "map.npz", topics, num_classes=4, voxel_size=0.2, scores=scores, show_progress=False
    )
    assert summary["frames"] == 1 and summary["mode"] == "lidar"
    reference = Fuser(4, 0.2, "bayes")
    reference.add_lidar(scan, segmentation, calibration, rigid(30, [5, 0, 1.7]), scores=scores)
    reference.export(tmp_path / "reference.npz")
    ours, theirs = np.load(tmp_path / "map.npz"), np.load(tmp_path / "reference.npz")
    np.testing.assert_array_equal(ours["labels"], theirs["labels"])
    np.testing.assert_allclose(ours["points"], theirs["points"], atol=1e-5)
    np.testing.assert_allclose(ours["probabilities"], theirs["probabilities"], atol=1e-6)


def test_fuse_labelled_clouds_from_predict(tmp_path, kitti):
    source = kitti_bag(tmp_path, "ros1", None, kitti[0][::20], clouds=2)
    predict_bag(source, tmp_path / "labelled.bag", "/points", HeightSegmenter(), show_progress=False)
    # the labelled bag has no /tf: fusing into 'velodyne' itself needs none
    summary = fuse_bag(
        tmp_path / "labelled.bag",
        tmp_path / "map.npz",
        FuseTopics(labels="/points/labels"),
        num_classes=4,
        fixed_frame="velodyne",
        voxel_size=0.5,
        show_progress=False,
    )
    assert summary["frames"] == 2 and summary["voxels"] > 0 and summary["unpaired"] == {"/points/labels": 0}
    fused = np.load(tmp_path / "map.npz")
    assert set(np.unique(fused["labels"]).tolist()) <= {0, 1, 2, 3}


def test_cli_predict_bag_matches_the_numpy_api(tmp_path, kitti, checkpoint, capsys):
    from pcseg import Segmenter
    from pcseg.cli import main

    scan = kitti[0][np.linalg.norm(kitti[0][:, :2], axis=1) < 3.0]  # the near field: a quick CPU prediction
    source = kitti_bag(tmp_path, "ros2", "sqlite3", scan, clouds=1)
    assert (
        main(
            [
                "predict",
                "--bag",
                str(source),
                "--topic",
                "/points",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["clouds"] == 1 and summary["points"] == len(scan)
    ((_, _, msg),) = [m for m in read_bag(tmp_path / "out", "ros2") if m[0] == "/points/labels"]
    expected, probabilities = Segmenter.from_checkpoint(checkpoint).predict(scan[:, :3])
    fields = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(fields["label"], expected)
    np.testing.assert_allclose(fields["confidence"], probabilities.max(1), rtol=1e-6)


def test_cli_bag_errors_are_one_line(tmp_path, kitti, checkpoint, capsys):
    from pcseg.cli import main

    source = kitti_bag(tmp_path, "ros1", None, kitti[0][::100], clouds=1)
    assert (
        main(
            [
                "predict",
                "--bag",
                str(source),
                "--topic",
                "/nope",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o.bag"),
            ]
        )
        == 2
    )
    assert "has no topic '/nope'; its topics: /chatter" in capsys.readouterr().err
    assert main(["fuse", "--bag", str(source), "--out", str(tmp_path / "m.ply"), "--num-classes", "4"]) == 2
    assert "fuse needs --labels-topic" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.ply")]) == 2
    assert "needs INPUT or --bag" in capsys.readouterr().err


def test_cli_fuse_bag_writes_the_map_and_a_summary(tmp_path, kitti, capsys):
    from pcseg.cli import main

    source = kitti_bag(tmp_path, "ros1", None, kitti[0][::20], clouds=2)
    predict_bag(source, tmp_path / "labelled.bag", "/points", HeightSegmenter(), show_progress=False)
    assert (
        main(
            [
                "fuse",
                "--bag",
                str(tmp_path / "labelled.bag"),
                "--out",
                str(tmp_path / "map.ply"),
                "--num-classes",
                "4",
                "--voxel-size",
                "0.5",
                "--labels-topic",
                "/points/labels",
                "--fixed-frame",
                "velodyne",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2 and summary["mode"] == "labels" and (tmp_path / "map.ply").stat().st_size > 0
