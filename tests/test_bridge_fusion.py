"""VoxelLabelMap (bayes / mean / vote), its export and palettes, and late_fusion: hand cases and a reference.

Frame-level fusion (RGB-D frames, LiDAR scans) goes through `pcseg.Fuser`: tests/test_fuser.py.
"""

import numpy as np
import pytest
import torch

from pcseg.bridge import VoxelLabelMap, default_palette, late_fusion

VOXEL_A = [0.1, 0.1, 0.1]  # voxel (0, 0, 0) at voxel_size 0.5
VOXEL_B = [1.1, 0.0, 0.0]  # voxel (2, 0, 0)


def _two_frames(fusion_map):
    fusion_map.integrate(np.array([VOXEL_A, VOXEL_A, VOXEL_B]), labels=np.array([0, 1, 2]))
    fusion_map.integrate(
        np.array([VOXEL_A, VOXEL_B]), probabilities=np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]], np.float32)
    )


def test_bayes_is_the_normalised_product_of_clamped_observations():
    fusion_map = VoxelLabelMap(0.5, 3, "bayes", min_probability=1e-3)
    _two_frames(fusion_map)
    floor = 1e-3
    product_a = np.array([1 * floor * 0.8, floor * 1 * 0.1, floor * floor * 0.1])
    product_b = np.array([floor * 0.1, floor * 0.1, 1 * 0.8])
    query = fusion_map.query(np.array([VOXEL_A, VOXEL_B, [9.0, 9.0, 9.0]]))
    np.testing.assert_allclose(query.probabilities[0], product_a / product_a.sum(), rtol=1e-5)
    np.testing.assert_allclose(query.probabilities[1], product_b / product_b.sum(), rtol=1e-5)
    np.testing.assert_array_equal(query.labels, [0, 2, -1])
    np.testing.assert_array_equal(query.known, [True, True, False])
    np.testing.assert_array_equal(query.probabilities[2], 0.0)
    np.testing.assert_array_equal(fusion_map.voxel_observations(), [3, 2])
    np.testing.assert_allclose(fusion_map.voxel_points(), [VOXEL_A, VOXEL_B], atol=1e-12)


def test_mean_and_vote():
    mean_map = VoxelLabelMap(0.5, 3, "mean")
    _two_frames(mean_map)
    np.testing.assert_allclose(
        mean_map.voxel_probabilities(), [[1.8 / 3, 1.1 / 3, 0.1 / 3], [0.05, 0.05, 0.9]], rtol=1e-6
    )
    vote_map = VoxelLabelMap(0.5, 3, "vote")
    _two_frames(vote_map)
    np.testing.assert_allclose(vote_map.voxel_probabilities(), [[2 / 3, 1 / 3, 0], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_array_equal(vote_map.voxel_labels(), [0, 2])


def test_colours_average_only_over_coloured_frames():
    fusion_map = VoxelLabelMap(0.5, 3, "mean")
    fusion_map.integrate(np.array([VOXEL_A, VOXEL_B]), labels=np.array([0, 1]))  # no colour (LiDAR)
    assert np.isnan(fusion_map.voxel_colors()).all()
    fusion_map.integrate(
        np.array([VOXEL_A, VOXEL_A]), labels=np.array([0, 0]), colors=np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    )
    colors = fusion_map.voxel_colors()
    np.testing.assert_allclose(colors[0], [0.5, 0.0, 0.5])
    assert np.isnan(colors[1]).all()  # voxel B never saw a colour
    fusion_map.integrate(np.array([VOXEL_B, [3.1, 0.0, 0.0]]), labels=np.array([1, 2]))  # colourless again, a new voxel
    np.testing.assert_allclose(fusion_map.voxel_colors()[0], [0.5, 0.0, 0.5])
    assert np.isnan(fusion_map.voxel_colors()[1:]).all()
    np.testing.assert_array_equal(fusion_map.voxel_observations(), [3, 2, 1])


def _reference_fusion(frames, voxel_size, num_classes, mode, floor):
    """Dictionary-per-voxel fusion, one point at a time (the obvious, slow definition)."""
    sums, counts = {}, {}
    for points, probabilities in frames:
        for point, probability in zip(points, probabilities):
            key = tuple(np.floor(point / voxel_size).astype(int))
            if mode == "bayes":
                contribution = np.log(np.maximum(probability, floor))
            elif mode == "mean":
                contribution = probability
            else:
                contribution = np.eye(num_classes)[np.argmax(probability)]
            sums[key] = sums.get(key, 0.0) + contribution
            counts[key] = counts.get(key, 0) + 1
    result = {}
    for key, total in sums.items():
        if mode == "bayes":
            exp = np.exp(total - total.max())
            result[key] = exp / exp.sum()
        else:
            result[key] = total / counts[key]
    return result


# A compact frame takes the dense-box path of the voxel lookup, a 2 km wide one the sorting path.
@pytest.mark.parametrize("mode,scale", [("bayes", 1.0), ("mean", 1.0), ("vote", 1.0), ("bayes", 1000.0)])
def test_matches_per_voxel_reference_over_growing_frames(mode, scale):
    rng = np.random.default_rng(3)
    frames = []
    for frame in range(6):
        # Each frame overlaps the previous ones and reaches new space (negative coordinates too).
        points = rng.uniform(-1.0 + 0.4 * frame, 1.0 + 0.4 * frame, size=(400, 3)) * scale
        probabilities = rng.dirichlet(np.ones(4), size=400).astype(np.float32)
        frames.append((points, probabilities))
    fusion_map = VoxelLabelMap(0.25, 4, mode)
    for points, probabilities in frames:
        fusion_map.integrate(torch.from_numpy(points), probabilities=torch.from_numpy(probabilities))
    reference = _reference_fusion(frames, 0.25, 4, mode, fusion_map.min_probability)
    assert fusion_map.num_voxels == len(reference)
    all_points = np.concatenate([points for points, _ in frames])
    query = fusion_map.query(all_points)
    expected = np.stack([reference[tuple(np.floor(p / 0.25).astype(int))] for p in all_points])
    np.testing.assert_allclose(query.probabilities, expected, atol=2e-5)
    assert query.known.all()
    # torch in, torch out for queries.
    assert isinstance(fusion_map.query(torch.from_numpy(all_points[:5])).labels, torch.Tensor)


def test_growing_map_rows_and_lookups_match_a_dictionary():
    """Many frames, each half old voxels and half new, through several hash-table growths:
    every point finds its voxel, absent voxels are -1, and new voxels take rows in
    ascending key order within their frame (the row / export order)."""
    rng = np.random.default_rng(7)
    fusion_map = VoxelLabelMap(0.5, 3, "vote")
    rows_of = {}
    frames = []
    for frame in range(8):
        old = rng.uniform(-20.0, 20.0 + 10.0 * frame, size=(3000, 3))
        # A few points far out (voxel indices near the +-2^20 limit), both signs.
        far = np.array([[5.2e5 - 1.0, -5.2e5 + 1.0, 3.0], [-5.2e5 + 0.4, 5.2e5 - 0.6, -2.0]]) * (1 + frame * 1e-6)
        points = np.concatenate([old, far])
        labels = rng.integers(0, 3, len(points))
        fusion_map.integrate(points, labels=labels)
        keys = [tuple(k) for k in np.floor(points / 0.5).astype(np.int64)]
        for key in sorted(set(keys) - set(rows_of)):
            rows_of[key] = len(rows_of)
        frames.append(points)
    assert fusion_map.num_voxels == len(rows_of)
    all_points = np.concatenate(frames)
    expected_rows = np.array([rows_of[tuple(k)] for k in np.floor(all_points / 0.5).astype(np.int64)])
    np.testing.assert_array_equal(
        fusion_map._find_rows(fusion_map._keys_of(torch.from_numpy(all_points))).numpy(), expected_rows
    )
    voxel_points = fusion_map.voxel_points()
    np.testing.assert_array_equal(np.floor(voxel_points[expected_rows] / 0.5), np.floor(all_points / 0.5))
    unseen = fusion_map.query(np.array([[1e4, 1e4, 1e4], [-3e3, 7.0, 0.2]]))
    np.testing.assert_array_equal(unseen.labels, [-1, -1])


def test_probe_resolves_collisions_duplicates_and_wraparound():
    from pcseg.bridge.fusion import _EMPTY, _home_slots, _probe

    table = torch.full((16,), _EMPTY, dtype=torch.int64)
    # Keys sharing one home slot near the end of the table: their chain wraps to slot 0.
    candidates = torch.arange(1, 5000, dtype=torch.int64)
    same_home = candidates[_home_slots(candidates, 15) == 14][:6]
    keys = torch.cat([same_home, same_home[:2], torch.tensor([3, 3, 3], dtype=torch.int64)])
    slots, inserted = _probe(table, keys, insert=True)
    assert torch.equal(table[slots], keys)  # every key sits in its slot
    chain = set(slots[:6].tolist())
    assert len(chain) == 6 and {14, 15} <= chain and min(chain) < 14  # ran past the end, wrapped
    assert torch.equal(slots[6:8], slots[:2]) and len(set(slots[8:].tolist())) == 1  # duplicates share
    assert inserted.all()  # all were absent: duplicates of an absent key count as inserted too
    again, inserted_again = _probe(table, keys.flip(0), insert=True)
    assert torch.equal(again, slots.flip(0)) and not inserted_again.any()
    found, _ = _probe(table, torch.cat([keys, torch.tensor([4999 * 7, 123456789])]), insert=False)
    assert torch.equal(found[: len(keys)], slots) and found[-2:].tolist() == [-1, -1]


def test_integration_does_not_depend_on_the_thread_count():
    """index_add_ keeps each voxel's points in order, so 1 and 2 torch threads fold
    bit-identical maps (an accumulating index_put_ does not across threads)."""
    rng = np.random.default_rng(11)
    points = torch.from_numpy(rng.normal(0.0, 3.0, size=(120_000, 3)).astype(np.float32))
    probabilities = torch.from_numpy(rng.dirichlet(np.ones(6), size=120_000).astype(np.float32))
    threads = torch.get_num_threads()
    maps = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            fusion_map = VoxelLabelMap(0.1, 6, "bayes")
            fusion_map.integrate(points, probabilities=probabilities)
            fusion_map.integrate(points[::3] + 0.05, probabilities=probabilities[::3])
            maps.append(fusion_map)
    finally:
        torch.set_num_threads(threads)
    one, two = maps
    assert one.num_voxels == two.num_voxels
    np.testing.assert_array_equal(one.voxel_probabilities(), two.voxel_probabilities())
    np.testing.assert_array_equal(one.voxel_points(), two.voxel_points())


def test_export_ply_reads_back_in_open3d(tmp_path):
    import open3d

    fusion_map = VoxelLabelMap(0.5, 3, "vote")
    _two_frames(fusion_map)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    path = tmp_path / "map.ply"
    fusion_map.export_ply(path, palette)
    cloud = open3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(cloud.points), fusion_map.voxel_points(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors), palette[[0, 2]] / 255.0)
    assert "property int label" in path.read_bytes()[:400].decode("ascii", errors="replace")
    in_memory = fusion_map.to_open3d(palette)
    np.testing.assert_allclose(np.asarray(in_memory.colors), palette[[0, 2]] / 255.0)
    assert default_palette(20).shape == (20, 3) and len({tuple(c) for c in default_palette(20)}) == 20


def test_palettes_read_uint8_and_float_in_0_1_alike(tmp_path):
    """One palette rule for every writer: uint8 0..255 or float in [0, 1], never a float
    palette cast to 0s and 1s."""
    import open3d

    from pcseg.fuser import Fuser
    from pcseg.io import normalize_palette, write_labelled_ply

    as_uint8 = np.array([[255, 0, 0], [0, 128, 0], [51, 102, 204]], np.uint8)
    as_float = as_uint8 / 255.0
    np.testing.assert_array_equal(normalize_palette(as_float), as_uint8)
    np.testing.assert_array_equal(normalize_palette(as_uint8.tolist()), as_uint8)
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    for palette in (as_uint8, as_float):
        write_labelled_ply(tmp_path / "points.ply", points, np.array([2, 1, 0]), palette)
        cloud = open3d.io.read_point_cloud(str(tmp_path / "points.ply"))
        np.testing.assert_allclose(np.asarray(cloud.colors), as_uint8[[2, 1, 0]] / 255.0)
        fusion_map = VoxelLabelMap(0.5, 3, "vote")
        _two_frames(fusion_map)
        fusion_map.export_ply(tmp_path / "map.ply", palette)
        cloud = open3d.io.read_point_cloud(str(tmp_path / "map.ply"))
        np.testing.assert_allclose(np.asarray(cloud.colors), as_uint8[[0, 2]] / 255.0)
        np.testing.assert_array_equal(Fuser(3, 0.5, palette=palette).palette, as_uint8)
    with pytest.raises(ValueError, match=r"palette must hold floats in \[0, 1\] or integers in 0..255, got floats"):
        normalize_palette(as_float * 255.0)
    with pytest.raises(ValueError, match=r"got integers in \[0, 300\]"):
        write_labelled_ply(tmp_path / "bad.ply", points, np.array([2, 1, 0]), np.array([[300, 0, 0]] * 3))
    with pytest.raises(ValueError, match=r"palette must be \(C, 3\) = \(3, 3\) colours"):
        fusion_map.export_ply(tmp_path / "bad.ply", as_uint8[:2])


def test_late_fusion_log_linear():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    painted = np.array([[0.1, 0.8, 0.1], [0.0, 0.0, 1.0]])
    fused = late_fusion(logits, painted, visible=np.array([True, False]), weight_3d=1.0, weight_2d=2.0)
    log_3d = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected_0 = np.exp(log_3d[0] + 2.0 * np.log(painted[0]))
    np.testing.assert_allclose(fused.probabilities[0], expected_0 / expected_0.sum(), rtol=1e-12)
    # Not visible: the 3D prediction alone.
    np.testing.assert_allclose(fused.probabilities[1], np.exp(log_3d[1]), rtol=1e-12)
    np.testing.assert_array_equal(fused.labels, [1, 1])
    torch_fused = late_fusion(torch.tensor(logits, dtype=torch.float32), torch.tensor(painted))
    assert isinstance(torch_fused.labels, torch.Tensor)


def test_bad_input_raises_named_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        VoxelLabelMap(0.1, 3, "average")
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelLabelMap(0.0, 3)
    fusion_map = VoxelLabelMap(0.1, 3)
    with pytest.raises(ValueError, match="points_world is empty"):
        fusion_map.integrate(np.zeros((0, 3)), labels=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"probabilities must be \(N, C\) = \(2, 3\)"):
        fusion_map.integrate(np.zeros((2, 3)), probabilities=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 3\)"):
        fusion_map.integrate(np.zeros((2, 3)), labels=np.array([0, 3]))
    with pytest.raises(ValueError, match="exactly one of"):
        fusion_map.integrate(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="points must be finite"):
        fusion_map.integrate(np.array([[0.0, np.nan, 0.0]]), labels=np.array([0]))
    with pytest.raises(ValueError, match="the map is empty"):
        fusion_map.export_ply("unused.ply")
    with pytest.raises(ValueError, match="probabilities_2d must match"):
        late_fusion(np.zeros((2, 3)), np.zeros((2, 4)))
