"""pcseg.demo.bridge: the simulated 2D network errors, and the demo's fused-vs-2D measurements."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from pcseg.bridge import backproject_depth
from pcseg.data.synthetic import build_room, render_view
from pcseg.demo.bridge import PALETTE, corrupt_labels, demo_camera, run_bridge_demo
from pcseg.fuse_folder import fuser_from_folder

pytestmark = pytest.mark.usefixtures("single_torch_thread")

NO_NOISE = dict(boundary_probability=0.0, blob_fraction=0.0, flip_probability=0.0, logit_noise=0.0)


@pytest.fixture(scope="module")
def true_labels():
    """A real rendered label image (160x120) of generated room 3, with some empty pixels."""
    camera = demo_camera()
    from pcseg.data.synthetic import look_at_pose

    scene = build_room(3)
    width, depth, _ = scene.size
    view = render_view(scene, camera, look_at_pose([width / 2, depth / 2, 1.5], [0.5, 0.5, 1.0]))
    labels = view["label"].copy()
    labels[:5, :7] = -1  # no surface there
    return labels


def test_no_noise_reproduces_the_labels(true_labels):
    predicted, scores = corrupt_labels(true_labels, 13, np.random.default_rng(0), **NO_NOISE)
    np.testing.assert_array_equal(predicted, true_labels)
    assert scores.shape == (13,) + true_labels.shape and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=0), 1.0, rtol=1e-5)


def test_boundary_errors_borrow_a_nearby_label(true_labels):
    options = dict(NO_NOISE, boundary_probability=1.0)
    predicted, _ = corrupt_labels(true_labels, 13, np.random.default_rng(1), **options)
    wrong = (predicted != true_labels) & (true_labels >= 0)
    assert 0.01 < wrong.mean() < 0.3
    # Every wrong label is the true label of a pixel at most boundary_shift = 3 px away.
    for label in np.unique(predicted[wrong]):
        nearby = ndimage.maximum_filter(true_labels == label, size=7)
        assert nearby[wrong & (predicted == label)].all()
    assert (predicted[true_labels < 0] == -1).all()


def test_blobs_and_flips_cover_the_requested_fractions(true_labels):
    surface = true_labels >= 0
    blobs, _ = corrupt_labels(true_labels, 13, np.random.default_rng(2), **dict(NO_NOISE, blob_fraction=0.2))
    # Every blob pixel gets a wrong class, so the error rate is the blob area.
    assert abs(np.mean(blobs[surface] != true_labels[surface]) - 0.2) < 0.01
    flips, _ = corrupt_labels(true_labels, 13, np.random.default_rng(3), **dict(NO_NOISE, flip_probability=0.3))
    # A flip draws any of the 13 classes: 12/13 of flips are errors.
    assert abs(np.mean(flips[surface] != true_labels[surface]) - 0.3 * 12 / 13) < 0.015
    again, _ = corrupt_labels(true_labels, 13, np.random.default_rng(3), **dict(NO_NOISE, flip_probability=0.3))
    np.testing.assert_array_equal(flips, again)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bridge_demo")
    torch.set_num_threads(2)  # the demo runs single-threaded, then puts the caller's setting back
    metrics = run_bridge_demo(out_dir, seed=0)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    return out_dir, metrics


def test_fusion_beats_every_single_noisy_frame(demo):
    _, metrics = demo
    per_frame = [frame["accuracy"] for frame in metrics["per_frame_2d"]]
    assert len(per_frame) == metrics["num_views"] == 12
    assert max(per_frame) < 0.85  # the 2D labels really are noisy
    fused = metrics["fused_3d"]
    assert fused["accuracy"] > max(per_frame) + 0.04, (fused["accuracy"], per_frame)
    # More than the spatial smoothing of one frame's own map: the other views add to it.
    assert fused["accuracy"] > metrics["single_view_map_3d"]["accuracy"] + 0.05
    assert fused["miou"] > metrics["single_frame_2d"]["miou"] + 0.08
    assert all(frame["fused_accuracy"] > frame["accuracy"] for frame in metrics["per_frame_2d"])
    assert f"accuracy {fused['accuracy']:.3f}" in metrics["summary"]
    painted = metrics["painted_room_points"]
    assert 0.3 < painted["coverage"] < 1.0 and painted["accuracy"] > metrics["mean_frame_2d_accuracy"] + 0.03
    # Painting without an occlusion test labels points hidden behind nearer surfaces too.
    check = metrics["occlusion_check"]
    assert check["none"]["visible_points"] > check["zbuffer"]["visible_points"]
    assert check["zbuffer"]["accuracy"] > 0.9 and check["zbuffer"]["accuracy"] > check["none"]["accuracy"] + 0.05
    room = metrics["fused_room_points"]
    assert 0.3 < room["coverage"] < 1.0 and room["accuracy"] > 0.7
    assert metrics["heldout_view"]["coverage"] > 0.5 and metrics["heldout_view"]["accuracy"] > 0.7
    assert metrics["seconds"] < 30


def test_outputs_are_written(demo):
    import open3d

    out_dir, metrics = demo
    cloud = open3d.io.read_point_cloud(str(out_dir / "bridge_fused_map.ply"))
    assert len(cloud.points) == metrics["voxels"] > 10_000
    colors = np.round(np.asarray(cloud.colors) * 255).astype(np.uint8)
    assert np.isin(colors.view([("", np.uint8)] * 3), PALETTE.view([("", np.uint8)] * 3)).all()
    figure = Image.open(out_dir / "bridge_views.png")
    assert figure.size[0] == 4 * 320 + 3 * 6 and figure.size[1] > 240
    assert json.loads((out_dir / "bridge_metrics.json").read_text()) == json.loads(json.dumps(metrics))


def test_written_frames_fuse_with_pcseg_fuse(demo):
    out_dir, metrics = demo
    fuser, manifest = fuser_from_folder(out_dir / "bridge_frames")
    assert len(manifest["frames"]) == 12 and fuser.num_frames == 12
    # Re-render three of the views for their true labels; the map fused from the written
    # (hard, millimetre-depth) frames must beat those frames' own 2D accuracy too.
    scene, camera = build_room(0), demo_camera()
    for index in (0, 5, 9):
        pose = np.loadtxt(out_dir / "bridge_frames" / "pose" / f"{index:06d}.txt")
        truth = render_view(scene, camera, pose)
        depth = np.array(Image.open(out_dir / "bridge_frames" / "depth" / f"{index:06d}.png"))
        points, _, valid = backproject_depth(depth, camera, 1000.0, 20.0, pose)
        labels = fuser.labels(points)
        accuracy = np.mean(labels == truth["label"][valid])
        assert accuracy > metrics["per_frame_2d"][index]["accuracy"] + 0.04
