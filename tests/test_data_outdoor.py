"""Procedural outdoor streets: determinism, the SemanticKITTI classes they carry, the label file."""

import numpy as np
import pytest

from pcseg.data.kitti import SemanticKittiConfig
from pcseg.data.outdoor import (
    BOX,
    CYLINDER,
    ELLIPSOID,
    SEMANTIC_KITTI_COLORS_BGR,
    SEMANTIC_KITTI_LABELS,
    SEMANTIC_KITTI_LEARNING_MAP,
    SEMANTIC_KITTI_LEARNING_MAP_INV,
    build_street,
)

# every class the issue asks the streets to contain (raw SemanticKITTI ids; a truck may be
# parked or moving: trucks are rare, as in SemanticKITTI)
REQUIRED = {
    "road": {40},
    "sidewalk": {48},
    "parking": {44},
    "terrain": {72},
    "building": {50},
    "fence": {51},
    "vegetation": {70},
    "trunk": {71},
    "pole": {80},
    "traffic-sign": {81},
    "car": {10},
    "moving-car": {252},
    "truck": {18, 258},
    "bicycle": {11},
    "motorcycle": {15},
    "person": {30},
    "moving-person": {254},
}


def _ground_ids(scene) -> set[int]:
    x, y = np.meshgrid(np.linspace(-80, 80, 400), np.linspace(-40, 40, 400))
    return set(np.unique(scene.layout.ground_labels(x.ravel(), y.ravel())).tolist())


def test_same_seed_same_street_bit_for_bit():
    a, b, c = build_street(5), build_street(5), build_street(6)
    for name in ("kind", "center", "half", "yaw", "label", "instance", "reflectivity", "porosity", "velocity"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a) != len(c) or not np.array_equal(a.center, c.center)


def test_streets_hold_every_required_class_and_valid_primitives():
    seen: set[int] = set()
    for seed in range(12):
        scene = build_street(seed)
        seen |= set(scene.label.tolist()) | _ground_ids(scene)
        assert set(scene.kind.tolist()) <= {BOX, CYLINDER, ELLIPSOID}
        assert (scene.half > 0).all() and ((scene.reflectivity >= 0) & (scene.reflectivity <= 1)).all()
        assert ((scene.porosity >= 0) & (scene.porosity < 1)).all()
        assert set(scene.label.tolist()) <= set(SEMANTIC_KITTI_LABELS)
        # things have instances, stuff has none; moving classes are the ones with a velocity
        moving = np.linalg.norm(scene.velocity, axis=1) > 0
        assert set(scene.label[moving].tolist()) <= {252, 254, 258}
        assert (scene.instance[np.isin(scene.label, [40, 48, 50, 51, 70, 71, 80, 81])] == 0).all()
        assert (scene.instance[np.isin(scene.label, [10, 18, 252, 30, 254])] > 0).all()
    missing = {name for name, raw in REQUIRED.items() if not raw & seen}
    assert not missing, f"classes never generated in 12 streets: {sorted(missing)}"


def test_label_constants_match_the_published_semantic_kitti_yaml(shared_data):
    """The package's own copy of the class definitions agrees with the data set's file."""
    published = SemanticKittiConfig.from_yaml(shared_data / "semantickitti" / "semantic-kitti.yaml")
    assert SEMANTIC_KITTI_LABELS == published.names
    assert SEMANTIC_KITTI_LEARNING_MAP == published.learning_map
    assert SEMANTIC_KITTI_LEARNING_MAP_INV == published.learning_map_inv
    assert SEMANTIC_KITTI_COLORS_BGR == published.color_map_bgr


def test_short_street_is_refused():
    with pytest.raises(ValueError, match="length must be >= 40"):
        build_street(0, length=10.0)
