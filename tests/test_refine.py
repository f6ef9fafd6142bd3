"""The kNN-graph CRF: a hand-checked two-point graph, the smoothing it should and should not do,
edge cases and argument errors, and its measured effect on the real NYU 1407 frame and a
generated room."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from pcseg.bridge import backproject_depth
from pcseg.data.nyu import read_nyu_frame
from pcseg.data.synthetic import generate_room
from pcseg.demo.bridge import corrupt_labels
from pcseg.refine import crf, mean_field

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TWO_POINTS = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
TWO_PROBABILITIES = np.array([[0.6, 0.4], [0.2, 0.8]])


def _normalised(rows: np.ndarray) -> np.ndarray:
    return rows / rows.sum(axis=1, keepdims=True)


def _grid(size: int, spacing: float = 0.01) -> np.ndarray:
    """A size x size grid of points on the z = 0 plane, row-major."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([i.ravel() * spacing, j.ravel() * spacing, np.zeros(size * size)], axis=1)


def test_two_point_graph_by_hand():
    # k = 1: each point hears the other with K = w exp(-d^2 / (2 s^2)) = 2 exp(-0.5) (both
    # kernels reduce to the position term without colours and normals). Potts:
    # Q_i(l) ~ exp(-U_i(l) - sum_{l' != l} K Q_j(l')) ~ P_i(l) exp(K Q_j(l)).
    kernel = 2 * math.exp(-0.5)
    q = TWO_PROBABILITIES
    for iterations in (1, 2):
        q = _normalised(TWO_PROBABILITIES * np.exp(kernel * q[::-1]))
        refined = crf(TWO_POINTS, TWO_PROBABILITIES, k=1, position_sigma=0.1, weights=(1.0, 1.0), iterations=iterations)
        assert refined.dtype == np.float32
        np.testing.assert_allclose(refined, q, rtol=1e-5)


def test_two_point_graph_with_a_compatibility_matrix_and_colours():
    # mu[l, l'] is the cost of class l beside class l': Q_i(l) ~ P_i(l) exp(-sum_l' mu[l, l'] m_i(l')).
    mu = np.array([[0.0, 2.0], [0.5, 0.0]])
    colors = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])  # |dc|^2 = 0.01, s_c = 0.1: factor exp(-0.5)
    kernel = 1.5 * math.exp(-0.5 - 0.5) + 0.5 * math.exp(-0.5)
    messages = kernel * TWO_PROBABILITIES[::-1]
    expected = _normalised(TWO_PROBABILITIES * np.exp(-messages @ mu.T))
    refined = crf(
        TWO_POINTS,
        TWO_PROBABILITIES,
        colors,
        k=1,
        position_sigma=0.1,
        color_sigma=0.1,
        compatibility=mu,
        weights=(1.5, 0.5),
        iterations=1,
    )
    np.testing.assert_allclose(refined, expected, rtol=1e-5)


def test_potts_flips_an_isolated_wrong_label():
    points = _grid(9)
    probabilities = np.tile([0.9, 0.1], (len(points), 1))
    centre = len(points) // 2
    probabilities[centre] = [0.3, 0.7]
    colors = np.full((len(points), 3), 0.5)
    refined = crf(points, probabilities, colors)
    assert refined.argmax(axis=1).tolist() == [0] * len(points)


def test_a_colour_edge_is_preserved():
    # A two-column strip of class 1, blue, in a red plane of confident class 0: with colours the
    # strip keeps its label; on positions alone the plane swallows it.
    points = _grid(12)
    column = np.arange(len(points)) % 12
    strip = (column == 5) | (column == 6)
    probabilities = np.where(strip[:, None], [0.4, 0.6], [0.9, 0.1])
    colors = np.where(strip[:, None], [0.1, 0.1, 0.9], [0.9, 0.1, 0.1])
    with_colours = crf(points, probabilities, colors, weights=(3.0, 0.0)).argmax(axis=1)
    np.testing.assert_array_equal(with_colours, strip.astype(np.int64))
    positions_only = crf(points, probabilities, weights=(3.0, 0.0)).argmax(axis=1)
    assert (positions_only[strip] == 0).all()


def test_normals_split_two_planes_and_their_sign_does_not_matter():
    # Two perpendicular planes meeting at an edge, one class each, with weak scores near the edge.
    rng = np.random.default_rng(0)
    floor = np.c_[rng.random((400, 2)) * 0.2, np.zeros(400)]
    wall = np.c_[rng.random(400) * 0.2, np.zeros(400), rng.random(400) * 0.2]
    points = np.vstack([floor, wall])
    normals = np.vstack([np.tile([0.0, 0.0, 1.0], (400, 1)), np.tile([0.0, 1.0, 0.0], (400, 1))])
    labels = np.r_[np.zeros(400, dtype=np.int64), np.ones(400, dtype=np.int64)]
    probabilities = np.where(labels[:, None] == 0, [0.8, 0.2], [0.2, 0.8])
    refined = crf(points, probabilities, normals=normals, weights=(0.0, 3.0))
    np.testing.assert_array_equal(refined.argmax(axis=1), labels)
    flipped = normals * rng.choice([-1.0, 1.0], size=(800, 1))
    np.testing.assert_allclose(crf(points, probabilities, normals=flipped, weights=(0.0, 3.0)), refined, atol=1e-6)


def test_probabilities_stay_normalised_and_point_order_does_not_matter():
    rng = np.random.default_rng(1)
    points = rng.random((3000, 3)) * np.array([2.0, 2.0, 0.5])
    probabilities = rng.random((3000, 7)) ** 3  # unnormalised on purpose
    colors = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    refined = crf(points, probabilities, colors)
    assert refined.shape == (3000, 7) and refined.dtype == np.float32
    assert (refined >= 0).all() and (refined <= 1).all()
    np.testing.assert_allclose(refined.sum(axis=1), 1.0, atol=1e-5)
    order = rng.permutation(3000)
    np.testing.assert_allclose(crf(points[order], probabilities[order], colors[order]), refined[order], atol=1e-5)


def test_far_from_the_origin_is_the_same_as_near_it():
    rng = np.random.default_rng(2)
    points = rng.random((500, 3))
    probabilities = _normalised(rng.random((500, 3)))
    near = crf(points, probabilities)
    far = crf(points + np.array([500_000.0, 4_000_000.0, 100.0]), probabilities)  # UTM-sized coordinates
    np.testing.assert_allclose(far, near, atol=1e-4)


def test_zero_iterations_is_the_identity():
    rng = np.random.default_rng(3)
    probabilities = _normalised(rng.random((200, 4))).astype(np.float32)
    # Up to the float32 rounding of dividing each row by its sum again.
    np.testing.assert_allclose(crf(rng.random((200, 3)), probabilities, iterations=0), probabilities, rtol=1e-6)


@pytest.mark.parametrize("num_points", [0, 1, 5])
def test_fewer_points_than_neighbours(num_points):
    rng = np.random.default_rng(4)
    probabilities = _normalised(rng.random((num_points, 3)) + 0.1)
    refined = crf(rng.random((num_points, 3)), probabilities, k=16)
    assert refined.shape == (num_points, 3)
    np.testing.assert_allclose(refined.sum(axis=1), np.ones(num_points), atol=1e-6)
    if num_points == 1:
        np.testing.assert_allclose(refined, probabilities, rtol=1e-6)


def test_one_class():
    refined = crf(np.random.default_rng(5).random((50, 3)), np.full((50, 1), 0.3))
    np.testing.assert_array_equal(refined, np.ones((50, 1), dtype=np.float32))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(points=np.zeros((4, 2))), ValueError, "points must be"),
        (dict(points=np.zeros((3, 3))), ValueError, "points has 3 rows"),
        (dict(points=np.full((4, 3), np.nan)), ValueError, "points holds non-finite"),
        (dict(probabilities=np.ones(4)), ValueError, "probabilities must be"),
        (dict(probabilities=-np.ones((4, 2))), ValueError, "probabilities must be non-negative"),
        (dict(probabilities=np.zeros((4, 2))), ValueError, "rows summing to 0"),
        (dict(colors=np.zeros((4, 4))), ValueError, "colors must be"),
        (dict(colors=np.zeros((5, 3))), ValueError, "colors has 5 rows"),
        (dict(normals=np.zeros((3, 3))), ValueError, "normals has 3 rows"),
        (dict(k=0), ValueError, "k must be"),
        (dict(k=2.5), TypeError, "k must be an int"),
        (dict(iterations=-1), ValueError, "iterations must be"),
        (dict(position_sigma=0.0), ValueError, "position_sigma"),
        (dict(color_sigma=-1.0), ValueError, "color_sigma"),
        (dict(normal_sigma=float("nan")), ValueError, "normal_sigma"),
        (dict(weights=(1.0,)), ValueError, "weights"),
        (dict(weights=(1.0, -1.0)), ValueError, "weights"),
        (dict(compatibility="dense"), ValueError, "compatibility"),
        (dict(compatibility=np.ones((3, 3))), ValueError, r"compatibility must be a finite \(2, 2\)"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, error, match):
    arguments = dict(points=np.random.default_rng(6).random((4, 3)), probabilities=np.full((4, 2), 0.5))
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        crf(**arguments)


def test_raises_point_accuracy_on_the_real_nyu_1407_frame(shared_data):
    # The simulated 2D network's errors applied to the true label image, back-projected.
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(
        folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png", num_classes=13
    )
    truth_image = frame["label_image"] - 1  # 0 = unlabelled -> -1
    _, scores = corrupt_labels(truth_image, 13, np.random.default_rng(0))
    depth = np.array(Image.open(folder / "depth.png"))
    backprojected = backproject_depth(depth, frame["camera"], depth_scale=1000.0, depth_trunc=10.0)
    probabilities = backprojected.take(scores, channels_first=True).copy()
    truth = backprojected.take(truth_image)
    probabilities[truth < 0] = 1.0 / 13  # the simulator gives unlabelled pixels no real scores
    labelled = truth >= 0
    before = (probabilities.argmax(axis=1) == truth)[labelled].mean()
    refined = crf(backprojected.points, probabilities, backprojected.take(frame["image"]))
    after = (refined.argmax(axis=1) == truth)[labelled].mean()
    assert after > before + 0.03, (before, after)


def test_raises_accuracy_near_class_boundaries_in_a_generated_room():
    room = generate_room(3, num_points=50_000)
    points, labels = room["coord"], room["label"]
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 1.0, (len(points), 13))
    logits[np.arange(len(points)), labels] += 2.0
    probabilities = _normalised(np.exp(logits))
    near_boundary = np.zeros(len(points), dtype=bool)
    for label in np.unique(labels):
        own = labels == label
        distance, _ = cKDTree(points[~own]).query(points[own])
        near_boundary[own] = distance < 0.05
    refined = crf(points, probabilities, room["color"], room["normal"])

    def accuracy(p, mask):
        return (p.argmax(axis=1) == labels)[mask].mean()

    assert accuracy(refined, near_boundary) > accuracy(probabilities, near_boundary) + 0.1
    assert accuracy(refined, slice(None)) > accuracy(probabilities, slice(None)) + 0.1


def test_blocks_of_rows_give_the_same_result(monkeypatch):
    import pcseg.refine

    rng = np.random.default_rng(8)
    points, probabilities = rng.random((500, 3)), _normalised(rng.random((500, 4)))
    colors, normals = rng.random((500, 3)), rng.normal(size=(500, 3))
    whole = crf(points, probabilities, colors, normals)
    monkeypatch.setattr(pcseg.refine, "_ROWS_PER_THREAD", 7)
    np.testing.assert_allclose(crf(points, probabilities, colors, normals), whole, atol=1e-6)


def test_mean_field_without_an_initial_state_starts_at_softmax_of_minus_unary():
    unary = torch.from_numpy(np.random.default_rng(9).random((40, 3)).astype(np.float32))
    kernel = torch.zeros(40, 40).to_sparse_csr()
    q = mean_field(unary, kernel, torch.ones(3, 3) - torch.eye(3), iterations=2)
    torch.testing.assert_close(q, torch.softmax(-unary, dim=1))
