"""The bridge half of `pcseg demo`: noisy 2D segmentations of posed RGB-D views, fused in 3D.

`run_bridge_demo` builds a procedural room (`pcseg.data.synthetic`), ray-casts posed RGB-D
views of it with exact per-pixel labels, corrupts those labels the way a real 2D network
errs (`corrupt_labels`: blurred class boundaries, blobs of a wrong class, scattered
flips, soft scores), fuses the views with a `pcseg.Fuser`, and measures how much better
the fused 3D labels are than any single 2D frame. It also paints the room's own point
cloud from the views (with and without the occlusion test). Everything is seeded.

`simulate_2d_network` (with a `NetworkErrorModel`) adds the object-level errors of a real
network before `corrupt_labels`' per-view noise: whole objects confused the same way in every
view (board/wall, window/wall, sofa/chair, table/clutter) and small objects missed;
`pcseg demo --from-2d` (`pcseg.demo.from_2d`) trains on what it yields.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.projection import backproject_depth
from pcseg.data.classes import S3DIS_CLASS_COLORS, S3DIS_CLASS_NAMES
from pcseg.data.synthetic import build_room, look_at_pose, render_view, sample_room
from pcseg.fuse_folder import write_frames_folder
from pcseg.fuser import Fuser
from pcseg.metrics import ConfusionMatrix
from pcseg.utils.atomic import atomic_write_file

NUM_CLASSES = len(S3DIS_CLASS_NAMES)
PALETTE = np.array(S3DIS_CLASS_COLORS, dtype=np.uint8)


def corrupt_labels(
    labels: np.ndarray,
    num_classes: int,
    rng: np.random.Generator,
    *,
    boundary_width: int = 2,
    boundary_shift: int = 3,
    boundary_probability: float = 0.7,
    blob_sigma: float = 5.0,
    blob_fraction: float = 0.15,
    flip_probability: float = 0.05,
    logit_gain: float = 3.0,
    logit_noise: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a 2D segmentation network's output for a true label image.

    The errors, applied in order:
      boundaries: pixels within `boundary_width` px of a class boundary take, with
        `boundary_probability`, the label of the pixel displaced by a random non-zero
        per-image offset of up to `boundary_shift` px (a network's blurred, misaligned edges);
      blobs: smooth random regions covering about `blob_fraction` of the image (a
        Gaussian-filtered noise field of scale `blob_sigma` px, thresholded), each region
        relabelled with one random wrong class (whole-object confusions);
      flips: each pixel with `flip_probability` gets a uniformly random class.
    Scores are softmax(gain * one_hot(noisy) + N(0, logit_noise)): confident but not
    certain, and their argmax can differ from the noisy label where the noise is large.

    Args:
        labels: (H, W) int64 true labels in [0, C) (negative = no surface; left as is).
        num_classes: C.
        rng: the random generator (the result is a function of its state).
        boundary_width: pixels around a class boundary that may take a shifted label.
        boundary_shift: the largest offset, in pixels, of the shifted labels.
        boundary_probability: the chance that a boundary pixel takes the shifted label.
        blob_sigma: the scale, in pixels, of the wrong-class blobs.
        blob_fraction: the part of the image the blobs cover.
        flip_probability: the chance that a pixel gets a uniformly random class.
        logit_gain: the logit added to the noisy label's class.
        logit_noise: the standard deviation of the Gaussian logit noise.

    Returns:
        (predicted, scores): predicted labels (H, W) int64 = argmax of the scores, -1
        where labels < 0; scores (C, H, W) float32 probabilities.

    Raises:
        ValueError: when `labels` is not (H, W).
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    height, width = labels.shape
    surface = labels >= 0
    noisy = np.where(surface, labels, -1).astype(np.int64)

    # Boundaries: a pixel is on a boundary when its 3x3 neighbourhood holds two classes.
    on_boundary = ndimage.maximum_filter(noisy, size=3) != ndimage.minimum_filter(noisy, size=3)
    band = ndimage.binary_dilation(on_boundary, iterations=boundary_width)
    # Any offset but (0, 0), which would leave the boundaries untouched.
    offsets = [
        (dy, dx)
        for dy in range(-boundary_shift, boundary_shift + 1)
        for dx in range(-boundary_shift, boundary_shift + 1)
        if (dy, dx) != (0, 0)
    ]
    dy, dx = offsets[rng.integers(len(offsets))] if offsets else (0, 0)
    rows = np.clip(np.arange(height) + dy, 0, height - 1)
    columns = np.clip(np.arange(width) + dx, 0, width - 1)
    shifted = noisy[rows[:, None], columns[None, :]]
    # Empty pixels (no surface) lend no label.
    take = band & surface & (shifted >= 0) & (rng.random((height, width)) < boundary_probability)
    noisy = np.where(take, shifted, noisy)

    # Blobs: threshold a smooth field at its (1 - blob_fraction) quantile.
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), blob_sigma)
    blobs, num_blobs = ndimage.label(field > np.quantile(field, 1.0 - blob_fraction))
    if num_blobs:
        # Adding 1..C-1 modulo C is a uniformly random *wrong* class for the blob's majority.
        offsets = rng.integers(1, num_classes, size=num_blobs + 1)
        in_blob = (blobs > 0) & surface
        noisy[in_blob] = (noisy[in_blob] + offsets[blobs[in_blob]]) % num_classes

    flips = (rng.random((height, width)) < flip_probability) & surface
    noisy[flips] = rng.integers(0, num_classes, size=int(flips.sum()))

    logits = rng.normal(0.0, logit_noise, (num_classes, height, width)).astype(np.float32)
    winner = np.maximum(noisy, 0)[None]
    np.put_along_axis(logits, winner, np.take_along_axis(logits, winner, 0) + logit_gain, axis=0)
    logits -= logits.max(axis=0, keepdims=True)
    scores = np.exp(logits)
    scores /= scores.sum(axis=0, keepdims=True)
    predicted = np.where(surface, scores.argmax(axis=0), -1)
    return predicted, scores


# Whole-object confusions of real 2D networks on indoor scenes (true class -> predicted class).
DEFAULT_CONFUSIONS = (("board", "wall"), ("window", "wall"), ("sofa", "chair"), ("table", "clutter"))


@dataclass
class NetworkErrorModel:
    """How the simulated 2D segmentation network errs (`simulate_2d_network`).

    Attributes:
        confusions: (true class, predicted class) name pairs; an object of a true class is
            predicted as the other one as a whole.
        confusion_probability: the chance that an object of a confused class is confused;
            decided once per object and room, so every view of it errs alike.
        small_object_pixels: objects covering fewer pixels of a view are small ...
        small_miss_probability: ... and missed with this chance per view: they take the
            label that surrounds them.
        boundary_width / boundary_shift / boundary_probability / blob_sigma / blob_fraction /
            flip_probability / logit_gain / logit_noise: `corrupt_labels`'s per-view noise,
            applied after the object-level errors.
    """

    confusions: tuple = DEFAULT_CONFUSIONS
    confusion_probability: float = 0.5
    small_object_pixels: int = 150
    small_miss_probability: float = 0.6
    boundary_width: int = 2
    boundary_shift: int = 3
    boundary_probability: float = 0.6
    blob_sigma: float = 5.0
    blob_fraction: float = 0.09
    flip_probability: float = 0.02
    logit_gain: float = 3.0
    logit_noise: float = 0.7

    def __post_init__(self):
        for name in (
            "confusion_probability",
            "small_miss_probability",
            "boundary_probability",
            "blob_fraction",
            "flip_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        names = set(S3DIS_CLASS_NAMES)
        for pair in self.confusions:
            if len(pair) != 2 or not set(pair) <= names:
                raise ValueError(f"confusions must be (true, predicted) pairs of {S3DIS_CLASS_NAMES}, got {pair}")


def object_confusions(scene, model: NetworkErrorModel, rng: np.random.Generator) -> dict[int, int]:
    """Which objects of a room the simulated 2D network confuses as a whole, and as what.

    Args:
        scene: a `pcseg.data.synthetic.RoomScene`.
        model: the error model.
        rng: the random generator.

    Returns:
        confusions: instance id -> the class (int) it is predicted as.
    """
    pairs = {S3DIS_CLASS_NAMES.index(true): S3DIS_CLASS_NAMES.index(wrong) for true, wrong in model.confusions}
    instance_label = {}
    for quad in scene.quads:
        instance_label.setdefault(quad.instance, quad.label)
    return {
        instance: pairs[label]
        for instance, label in sorted(instance_label.items())
        if label in pairs and rng.random() < model.confusion_probability
    }


def simulate_2d_network(
    view: dict, model: NetworkErrorModel, confusions: dict[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D segmentation network's output for a rendered view, with object-level errors.

    First whole objects are confused (`confusions`, from `object_confusions`), then small
    objects are missed (they take the most common label of a ring around them), then
    `corrupt_labels` adds the per-view noise (boundaries, blobs, flips, soft scores).

    Args:
        view: `pcseg.data.synthetic.render_view`'s dict: label (H, W) int64 and instance
            (H, W) int64, -1 where nothing is hit.
        model: the error model.
        confusions: instance id -> predicted class.
        rng: the random generator.

    Returns:
        (predicted, scores): (H, W) int64 labels, -1 where nothing is hit, and (C, H, W)
        float32 probabilities.
    """
    from scipy import ndimage

    labels = np.array(view["label"], dtype=np.int64)
    instances = np.asarray(view["instance"])
    for instance, wrong in confusions.items():
        labels[instances == instance] = wrong
    ids, sizes = np.unique(instances[instances >= 0], return_counts=True)
    for instance in ids[sizes < model.small_object_pixels]:
        if rng.random() >= model.small_miss_probability:
            continue
        mask = instances == instance
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask & (labels >= 0)
        if ring.any():
            labels[mask] = np.bincount(labels[ring]).argmax()
    return corrupt_labels(
        labels,
        NUM_CLASSES,
        rng,
        boundary_width=model.boundary_width,
        boundary_shift=model.boundary_shift,
        boundary_probability=model.boundary_probability,
        blob_sigma=model.blob_sigma,
        blob_fraction=model.blob_fraction,
        flip_probability=model.flip_probability,
        logit_gain=model.logit_gain,
        logit_noise=model.logit_noise,
    )


def demo_camera(width: int = 160, height: int = 120) -> PinholeCamera:
    """The demo's small pinhole camera: about 72 degrees horizontal field of view.

    Args:
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        camera: a PinholeCamera with its principal point at the image centre.
    """
    focal = 0.6875 * width
    return PinholeCamera(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


def demo_poses(room_size, num_views: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Camera poses looking across a room.

    The cameras stand on an ellipse around the room's centre (35 % of its half-extents),
    1.3-1.8 m high, each looking through the centre at the far side, tilted down: views
    that are neighbours on the ellipse overlap, so most surfaces are seen several times.

    Args:
        room_size: the room's (width, depth, height) in metres.
        num_views: the number of poses.
        rng: the random generator of the jitter.

    Returns:
        poses: `num_views` (4, 4) float64 T_world_from_camera.
    """
    width, depth, _ = room_size
    centre = np.array([width / 2.0, depth / 2.0])
    poses = []
    for k in range(num_views):
        angle = 2.0 * np.pi * (k + rng.uniform(-0.15, 0.15)) / num_views
        direction = np.array([np.cos(angle), np.sin(angle)])
        eye_xy = centre + 0.35 * direction * centre
        target_xy = centre - 0.6 * direction * centre
        eye = [eye_xy[0], eye_xy[1], rng.uniform(1.3, 1.8)]
        target = [target_xy[0], target_xy[1], rng.uniform(0.6, 1.1)]
        poses.append(look_at_pose(eye, target))
    return poses


def _scores_dict(confusion: ConfusionMatrix) -> dict:
    scores = confusion.compute()
    return {
        "accuracy": round(scores.overall_accuracy, 4),
        "miou": round(scores.miou, 4),
        "iou": {
            name: (None if np.isnan(value) else round(float(value), 4))
            for name, value in zip(S3DIS_CLASS_NAMES, scores.iou.tolist())
        },
    }


def _confusion(prediction: np.ndarray, truth: np.ndarray) -> ConfusionMatrix:
    import torch

    confusion = ConfusionMatrix(NUM_CLASSES)
    confusion.update(torch.from_numpy(np.ascontiguousarray(prediction)), torch.from_numpy(np.ascontiguousarray(truth)))
    return confusion


def run_bridge_demo(
    out_dir: str | Path,
    seed: int = 0,
    *,
    num_views: int = 12,
    image_size: tuple[int, int] = (160, 120),
    voxel_size: float = 0.05,
    mode: str = "bayes",
    write_frames: bool = True,
) -> dict:
    """Fuse noisy 2D segmentations of posed RGB-D views of a generated room and measure it.

    Runs on one torch thread and restores the caller's thread count afterwards.

    Args:
        out_dir: folder for the outputs (created):
            bridge_fused_map.ply   the fused voxel map, coloured by label (S3DIS colours),
            bridge_views.png       one view: colour | truth | noisy 2D labels | fused map
                                   looked up at that view's depth points,
            bridge_metrics.json    the returned metrics,
            bridge_frames/         (write_frames) the views as a `pcseg fuse` folder
                                   (`pcseg.fuse_folder.write_frames_folder`): hard labels,
                                   while the demo itself fuses the soft scores, so
                                   `pcseg fuse` on it lands close, not equal.
        seed: room, poses and label noise.
        num_views: the views fused.
        image_size: (width, height) of the views in pixels.
        voxel_size: the map's voxel edge in metres.
        mode: the fusion mode ("bayes", "mean", "vote").
        write_frames: write bridge_frames/.

    Returns:
        metrics: a dict: per_frame_2d (per view: accuracy and miou of its noisy 2D labels,
        single_view_map_accuracy of a map fused from that view alone, fused_accuracy of the
        full map at its pixels), single_frame_2d (pooled accuracy / miou / per-class IoU of the
        noisy 2D labels over all views' pixels), single_view_map_3d (each pixel labelled by a
        map of its own view only: spatial smoothing without multi-view fusion), fused_3d (the
        fused labels at the same pixels' 3D points), mean/best_frame_2d_accuracy,
        fused_room_points (the room's own sampled labelled cloud: coverage, and scores on the
        covered points), painted_room_points (that cloud painted from the noisy views through
        `Fuser.add_lidar` with z-buffer occlusion, fused per voxel: coverage and scores),
        occlusion_check (the first view's true labels painted onto that cloud with the z-buffer
        and without any occlusion test, as PointPainting does: visible points and their
        accuracy), heldout_view (a pose not fused: coverage and accuracy of the map there),
        voxels, num_views, seconds, summary (one line for the console), and the output paths.
    """
    import torch

    # The demo's frames are small: torch's intra-op threads cost more than they give on
    # them, so the demo runs single-threaded, and puts the caller's setting back afterwards
    # (a demo must not change the thread count of the process that runs it).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_bridge_demo(out_dir, seed, num_views, image_size, voxel_size, mode, write_frames)
    finally:
        torch.set_num_threads(threads)


def _run_bridge_demo(out_dir, seed, num_views, image_size, voxel_size, mode, write_frames) -> dict:
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene = build_room(seed)
    camera = demo_camera(*image_size)
    poses = demo_poses(scene.size, num_views + 1, rng)
    heldout_pose, poses = poses[-1], poses[:-1]

    fuser = Fuser(NUM_CLASSES, voxel_size, mode, palette=PALETTE)
    frames = []
    for pose in poses:
        view = render_view(scene, camera, pose)
        predicted, scores = corrupt_labels(view["label"], NUM_CLASSES, rng)
        fuser.add_rgbd(view["color"], view["depth"], scores, camera, pose, depth_scale=1.0, depth_trunc=20.0)
        frames.append((view, predicted, pose, scores))

    # Scores at every observed pixel: the noisy 2D label vs the fused 3D label of its point,
    # and vs a map of that frame alone (voxelising one frame already smooths its noise
    # spatially; the gap between the two is what the other views add).
    per_frame = []
    truth_all, noisy_all, fused_all, alone_all = [], [], [], []
    for view, predicted, pose, scores in frames:
        backprojected = backproject_depth(view["depth"], camera, 1.0, 20.0, pose)
        truth = backprojected.take(view["label"])
        noisy = backprojected.take(predicted)
        fused = fuser.labels(backprojected.points)
        alone_map = Fuser(NUM_CLASSES, voxel_size, mode)
        alone_map.add_rgbd(None, view["depth"], scores, camera, pose, depth_scale=1.0, depth_trunc=20.0)
        alone = alone_map.labels(backprojected.points)
        frame_scores = _confusion(noisy, truth).compute()
        per_frame.append(
            {
                "accuracy": round(frame_scores.overall_accuracy, 4),
                "miou": round(frame_scores.miou, 4),
                "single_view_map_accuracy": round(float(np.mean(alone == truth)), 4),
                "fused_accuracy": round(float(np.mean(fused == truth)), 4),
            }
        )
        for values, new in zip((truth_all, noisy_all, fused_all, alone_all), (truth, noisy, fused, alone)):
            values.append(new)
    truth_all, noisy_all, fused_all, alone_all = (
        np.concatenate(values) for values in (truth_all, noisy_all, fused_all, alone_all)
    )

    room = sample_room(scene, 100_000, seed=seed)
    room_query = fuser.query(room["coord"])
    covered = room_query.known
    heldout = render_view(scene, camera, heldout_pose)
    heldout_points = backproject_depth(heldout["depth"], camera, 1.0, 20.0, heldout_pose)
    heldout_query = fuser.query(heldout_points.points)
    heldout_truth = heldout_points.take(heldout["label"])
    heldout_known = heldout_query.known
    painted_room, occlusion_check = _paint_room(room, frames, camera, voxel_size, mode)

    map_path = fuser.export(out_dir / "bridge_fused_map.ply")
    figure_path = out_dir / "bridge_views.png"
    _write_figure(figure_path, frames[0], fuser, camera)
    frames_dir = None
    if write_frames:
        frames_dir = write_frames_folder(
            out_dir / "bridge_frames",
            [
                {"depth": view["depth"], "color": view["color"], "segmentation": predicted, "pose": pose}
                for view, predicted, pose, _ in frames
            ],
            camera,
            num_classes=NUM_CLASSES,
            voxel_size=voxel_size,
            mode=mode,
            class_names=S3DIS_CLASS_NAMES,
            palette=PALETTE,
            depth_trunc=20.0,
        )

    per_frame_accuracy = [frame["accuracy"] for frame in per_frame]
    fused_3d = _scores_dict(_confusion(fused_all, truth_all))
    metrics = {
        "seed": seed,
        "num_views": num_views,
        "image_size": list(image_size),
        "voxel_size": voxel_size,
        "mode": mode,
        "voxels": fuser.num_voxels,
        "per_frame_2d": per_frame,
        "best_frame_2d_accuracy": max(per_frame_accuracy),
        "mean_frame_2d_accuracy": round(float(np.mean(per_frame_accuracy)), 4),
        "single_frame_2d": _scores_dict(_confusion(noisy_all, truth_all)),
        "single_view_map_3d": _scores_dict(_confusion(alone_all, truth_all)),
        "fused_3d": fused_3d,
        "fused_room_points": {
            "points": int(len(covered)),
            "coverage": round(float(covered.mean()), 4),
            **_scores_dict(_confusion(room_query.labels[covered], room["label"][covered])),
        },
        "painted_room_points": painted_room,
        "occlusion_check": occlusion_check,
        "heldout_view": {
            "coverage": round(float(heldout_known.mean()), 4),
            "accuracy": round(float(np.mean(heldout_query.labels[heldout_known] == heldout_truth[heldout_known])), 4),
        },
        "outputs": {
            "ply": str(map_path),
            "png": str(figure_path),
            "frames": None if frames_dir is None else str(frames_dir),
        },
    }
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    single = metrics["single_frame_2d"]
    metrics["summary"] = (
        f"{num_views} noisy 2D label maps (accuracy {metrics['mean_frame_2d_accuracy']:.3f} mean, "
        f"{metrics['best_frame_2d_accuracy']:.3f} best frame; mIoU {single['miou']:.3f}) fused in 3D: "
        f"accuracy {fused_3d['accuracy']:.3f}, mIoU {fused_3d['miou']:.3f} "
        f"(a map of one view alone: {metrics['single_view_map_3d']['accuracy']:.3f}); "
        f"{fuser.num_voxels:,} voxels of {voxel_size * 100:g} cm, {mode} fusion, {metrics['seconds']:.1f} s. "
        f"Painting the room's point cloud from a view's true labels: {occlusion_check['zbuffer']['accuracy']:.3f} "
        f"correct with the z-buffer, {occlusion_check['none']['accuracy']:.3f} without an occlusion test"
    )
    metrics_path = out_dir / "bridge_metrics.json"
    metrics["outputs"]["json"] = str(metrics_path)
    atomic_write_file(metrics_path, json.dumps(metrics, indent=2))
    return metrics


def _paint_room(room: dict, frames, camera: PinholeCamera, voxel_size: float, mode: str) -> tuple[dict, dict]:
    """Paint the room's own point cloud (a scanned map, 100,000 points) from the noisy views.

    Each view's scores go onto the points it sees (`Fuser.add_lidar` with the camera and
    T_camera_from_world: z > 0, in the image, not behind nearer points by the z-buffer), and
    the views are fused per voxel. Returns (metrics of the fused painting on the points whose
    voxel was painted, an occlusion check: the first view's *true* labels painted onto the
    cloud with and without the z-buffer, accuracy of the points each marks visible).
    """
    from pcseg.bridge.projection import paint_points

    painter = Fuser(NUM_CLASSES, voxel_size, mode)
    for _, _, pose, scores in frames:
        painter.add_lidar(room["coord"], scores, (camera, np.linalg.inv(pose)))
    query = painter.query(room["coord"])
    painted = {
        "coverage": round(float(query.known.mean()), 4),
        **_scores_dict(_confusion(query.labels[query.known], room["label"][query.known])),
    }
    view, _, pose, _ = frames[0]
    check = {}
    for occlusion in ("zbuffer", "none"):
        result = paint_points(
            room["coord"],
            np.maximum(view["label"], 0),
            camera,
            np.linalg.inv(pose),
            num_classes=NUM_CLASSES,
            occlusion=occlusion,
            zbuffer_radius=1,
        )
        visible = result.visible
        check[occlusion] = {
            "visible_points": int(visible.sum()),
            "accuracy": round(float(np.mean(result.labels[visible] == room["label"][visible])), 4),
        }
    return painted, check


def _write_figure(path: Path, frame, fuser: Fuser, camera: PinholeCamera, scale: int = 2) -> None:
    """colour | true labels | noisy 2D labels | fused map at this view's points, with a legend."""
    from PIL import Image, ImageDraw

    view, predicted, pose, _ = frame
    backprojected = backproject_depth(view["depth"], camera, 1.0, 20.0, pose)
    fused = np.full(view["label"].shape, -1, dtype=np.int64)
    fused[backprojected.valid] = fuser.labels(backprojected.points)
    surface = view["label"] >= 0

    def colored(labels):
        image = np.zeros(labels.shape + (3,), np.uint8)
        image[labels >= 0] = PALETTE[labels[labels >= 0]]
        return image

    def accuracy(labels):
        return float(np.mean(labels[surface] == view["label"][surface]))

    panels = [
        (view["color"], "colour"),
        (colored(view["label"]), "ground truth"),
        (colored(predicted), f"noisy 2D labels  acc {accuracy(predicted):.3f}"),
        (colored(fused), f"fused 3D map  acc {accuracy(fused):.3f}"),
    ]
    height, width = view["label"].shape
    panel_w, panel_h, caption_h, gap = width * scale, height * scale, 16, 6
    legend_rows = (NUM_CLASSES + 6) // 7
    canvas = Image.new("RGB", (4 * panel_w + 3 * gap, caption_h + panel_h + 6 + 14 * legend_rows), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (image, caption) in enumerate(panels):
        left = index * (panel_w + gap)
        canvas.paste(Image.fromarray(image).resize((panel_w, panel_h), Image.NEAREST), (left, caption_h))
        draw.text((left + 2, 2), caption, fill="black")
    for index, name in enumerate(S3DIS_CLASS_NAMES):
        left = (index % 7) * ((4 * panel_w + 3 * gap) // 7)
        top = caption_h + panel_h + 6 + 14 * (index // 7)
        draw.rectangle((left, top + 1, left + 10, top + 11), fill=tuple(int(c) for c in PALETTE[index]))
        draw.text((left + 14, top), name, fill="black")
    canvas.save(path)
