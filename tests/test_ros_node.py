"""`pcseg ros segment` live under ROS 1: roscore, the node, the real KITTI scan, Ctrl-C.

Needs Debian's ROS 1 (`roscore`, `rospy`); skipped with how to install it otherwise.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pcseg.ros.node import DEBIAN_ROS_PATH, LatestMessage

REPO = Path(__file__).resolve().parents[1]
HOWTO = (
    "to enable: apt-get update && apt-get install -y ros-base python3-rospy python3-sensor-msgs "
    "python3-tf2-ros (Debian's ROS 1; .ci/run does this as root)"
)
TIME_LIMIT_S = 120  # two shared CPU cores: node start-up (torch import, model load) plus one prediction


def _ros1_missing() -> str | None:
    if shutil.which("roscore") is None:
        return "roscore is not installed"
    code = f"import sys; sys.path.append({DEBIAN_ROS_PATH!r}); import rospy, sensor_msgs.msg, tf2_msgs.msg"
    if subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0:
        return "rospy / sensor_msgs / tf2_msgs cannot be imported"
    return None


MISSING = _ros1_missing()
ros1 = pytest.mark.skipif(MISSING is not None, reason=f"ROS 1 unavailable ({MISSING}); {HOWTO}")


def test_latest_message_keeps_only_the_newest():
    mailbox = LatestMessage()
    for i in range(5):
        mailbox.put(i)
    assert mailbox.take(0.01)[0] == 4 and mailbox.skipped == 4
    assert mailbox.take(0.01) == (None, 0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process, timeout=20):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def ros_env(tmp_path):
    """A private roscore on 127.0.0.1 with a free port; the environment that reaches it."""
    port = _free_port()
    env = dict(
        os.environ,
        ROS_MASTER_URI=f"http://127.0.0.1:{port}",
        ROS_IP="127.0.0.1",
        ROS_HOSTNAME="127.0.0.1",
        ROS_HOME=str(tmp_path / "ros_home"),
        ROS_LOG_DIR=str(tmp_path / "ros_log"),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    )
    log = open(tmp_path / "roscore.log", "w")
    core = subprocess.Popen(
        ["roscore", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if core.poll() is not None or time.time() > deadline:
                _stop(core)
                pytest.fail(f"roscore did not start: {(tmp_path / 'roscore.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield env
    _stop(core)
    log.close()


def _run_node(env, tmp_path, node_args, mode, cloud):
    """Start `pcseg ros ...`, run the client against it, Ctrl-C the node: (result, node log).
    `cloud` is an array (saved for the client) or a path the client reads itself."""
    if isinstance(cloud, np.ndarray):
        np.save(tmp_path / "cloud.npy", cloud)
        cloud = tmp_path / "cloud.npy"
    node_log = open(tmp_path / "node.log", "w")
    node = subprocess.Popen(
        [sys.executable, "-m", "pcseg", "ros", *node_args],
        env=env,
        stdout=node_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "ros1_client.py"),
                mode,
                str(cloud),
                str(tmp_path / "result.json"),
                str(TIME_LIMIT_S),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT_S + 60,
        )
        result = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else {}
        assert client.returncode == 0, (result, client.stderr[-3000:], (tmp_path / "node.log").read_text()[-3000:])
        node.send_signal(signal.SIGINT)  # Ctrl-C
        assert node.wait(30) == 0, (tmp_path / "node.log").read_text()[-3000:]
    finally:
        _stop(node)
        node_log.close()
    log = (tmp_path / "node.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    return result, log


@ros1
def test_segment_node_labels_the_kitti_scan_and_stops_on_ctrl_c(ros_env, checkpoint, shared_data, tmp_path):
    from pcseg.data.kitti import read_velodyne_bin

    scan = read_velodyne_bin(shared_data / "kitti" / "000000" / "velodyne.bin")
    # the whole scan: inference cost follows the points, so one CPU prediction fits the limit
    result, log = _run_node(
        ros_env,
        tmp_path,
        ["segment", "--checkpoint", str(checkpoint), "--input", "/points", "--output", "/points/labels"],
        "segment",
        scan,
    )
    assert result["points"] == len(scan) and len(result["labels"]) == len(scan)
    labels = np.array(result["labels"])
    assert labels.min() >= 0 and labels.max() < 13
    assert result["frame_id"] == "velodyne" and result["stamp"] == 1_700_000_000_000_000_123
    np.testing.assert_array_equal(np.array(result["xyz"], np.float32), scan[:, :3])
    assert result["field_names"] == ["x", "y", "z", "intensity", "label", "confidence", "rgb"]
    assert f"{len(scan)} points labelled, latency" in log
    assert "shut down after 1 clouds" in log


@ros1
def test_fuse_node_publishes_the_map_of_labelled_clouds(ros_env, shared_data, tmp_path):
    from pcseg.data.kitti import read_velodyne_bin
    from pcseg.fuser import Fuser

    scan = read_velodyne_bin(shared_data / "kitti" / "000000" / "velodyne.bin")
    result, log = _run_node(
        ros_env,
        tmp_path,
        [
            "fuse",
            "--num-classes",
            "4",
            "--voxel-size",
            "0.5",
            "--labels-topic",
            "/points/labels",
            "--fixed-frame",
            "map",
            "--rate",
            "5",
        ],
        "fuse",
        scan,
    )
    reference = Fuser(4, 0.5)
    reference.add_points(
        scan[:, :3].astype(np.float64) + [10.0, 0.0, 0.0],
        labels=np.clip(np.floor(scan[:, 2] + 2.0), 0, 3).astype(np.int64),
    )
    assert result["frame_id"] == "map" and result["points"] == reference.num_voxels
    # the map is published as float32: match each voxel to the reference's nearest one
    distance, index = cKDTree(reference.voxel_points()).query(np.array(result["xyz"]))
    assert distance.max() < 1e-4 and len(np.unique(index)) == reference.num_voxels
    np.testing.assert_array_equal(np.array(result["labels"]), reference.voxel_labels()[index])
    assert "frame 1 fused" in log and "shut down after 1 frames" in log


@ros1
def test_fuse_node_paints_the_kitti_scan_from_a_label_image(ros_env, shared_data, tmp_path):
    from pcseg.bridge import KittiCalibration
    from pcseg.data.kitti import read_velodyne_bin
    from pcseg.data.rgbd import read_image
    from pcseg.fuser import Fuser

    folder = shared_data / "kitti" / "000000"
    result, log = _run_node(
        ros_env,
        tmp_path,
        [
            "fuse",
            "--num-classes",
            "4",
            "--voxel-size",
            "0.5",
            "--segmentation-topic",
            "/segmentation",
            "--camera-info-topic",
            "/camera_info",
            "--cloud-topic",
            "/velodyne_points",
            "--fixed-frame",
            "map",
            "--rate",
            "2",
        ],
        "fuse-lidar",
        folder,
    )
    scan = read_velodyne_bin(folder / "velodyne.bin")
    image = read_image(folder / "image_2.png", "RGB")
    pose = np.eye(4)
    pose[0, 3] = 10.0
    reference = Fuser(4, 0.5)
    reference.add_lidar(
        scan, (image[..., 1] // 64).astype(np.uint8), KittiCalibration.from_file(folder / "calib.txt"), pose
    )
    # the same frame may be fused more than once before the map comes back: same voxels, same labels
    assert result["frame_id"] == "map" and result["points"] == reference.num_voxels
    distance, index = cKDTree(reference.voxel_points()).query(np.array(result["xyz"]))
    assert distance.max() < 1e-4
    np.testing.assert_array_equal(np.array(result["labels"]), reference.voxel_labels()[index])
    assert "frame 1 fused" in log
