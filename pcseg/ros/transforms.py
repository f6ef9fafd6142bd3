"""A small TF buffer: `/tf` and `/tf_static` transforms chained and interpolated to a stamp.

The same buffer serves bags (`pcseg fuse --bag`) and live nodes (filled from the `/tf`
topics), so both resolve poses the same way and the node needs no tf2 package. Frames form
a tree (each child has one parent, as in tf2); a lookup walks both frames up to their
common ancestor. Dynamic edges are interpolated between the two samples around the stamp
(translation linearly, rotation by slerp); a stamp outside an edge's samples is served by
the nearest sample only within `tolerance_ns`.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from pcseg.ros.messages import stamp_to_ns, transform_to_matrix

__all__ = ["TransformBuffer", "TransformError"]


class TransformError(ValueError):
    """A transform the buffer cannot give (unknown frame, no path, stamp out of range)."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list = field(default_factory=list)  # sorted ns
    matrices: list = field(default_factory=list)  # (4, 4) T_parent_from_child, same order


class TransformBuffer:
    """Transforms between frames over time, read from TransformStamped messages.

    Args:
        tolerance_ns: how far outside the recorded samples of a dynamic transform a
            lookup may be served by the nearest sample (nanoseconds).
        history_ns: samples older than this before an edge's newest are forgotten (a live
            node's memory stays bounded); None keeps them all (a bag).

    Thread safety: `add` and `lookup` take a lock (ROS callbacks add while a worker looks up).
    """

    def __init__(self, tolerance_ns: int = 0, history_ns: int | None = None):
        self.tolerance_ns = int(tolerance_ns)
        self.history_ns = history_ns
        self._edges: dict[str, _Edge] = {}  # child frame -> edge to its parent
        self._lock = threading.Lock()

    def add(self, transform, static: bool = False) -> None:
        """Add one geometry_msgs/TransformStamped (from /tf, or /tf_static when `static`)."""
        matrix = transform_to_matrix(transform)
        with self._lock:
            self._add(
                transform.child_frame_id.lstrip("/"),
                transform.header.frame_id.lstrip("/"),
                stamp_to_ns(transform.header.stamp),
                matrix,
                static,
            )

    def _add(self, child: str, parent: str, stamp: int, matrix: np.ndarray, static: bool) -> None:
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or static:
            edge = self._edges[child] = _Edge(parent, static)
        index = bisect.bisect_left(edge.stamps, stamp)
        if index < len(edge.stamps) and edge.stamps[index] == stamp:
            edge.matrices[index] = matrix
            return
        edge.stamps.insert(index, stamp)
        edge.matrices.insert(index, matrix)
        if self.history_ns is not None and not static:
            old = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.history_ns)
            del edge.stamps[:old], edge.matrices[:old]

    def add_message(self, message, static: bool = False) -> None:
        """Add every transform of a tf2_msgs/TFMessage."""
        for transform in message.transforms:
            self.add(transform, static)

    @property
    def frames(self) -> list[str]:
        """Every frame named so far, sorted."""
        return sorted(set(self._edges) | {edge.parent for edge in self._edges.values()})

    def _to_root(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > len(self._edges) + 1:
                raise TransformError(f"the TF tree has a loop through frame {frame!r}")
        return chain

    def _edge_matrix(self, child: str, stamp: int) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return edge.matrices[-1]
        stamps = edge.stamps
        index = bisect.bisect_left(stamps, stamp)
        if index < len(stamps) and stamps[index] == stamp:
            return edge.matrices[index]
        if index == 0 or index == len(stamps):
            nearest = 0 if index == 0 else len(stamps) - 1
            if abs(stamps[nearest] - stamp) <= self.tolerance_ns:
                return edge.matrices[nearest]
            raise TransformError(
                f"no transform {edge.parent!r} -> {child!r} at stamp {stamp / 1e9:.9f} s: /tf has it from "
                f"{stamps[0] / 1e9:.9f} s to {stamps[-1] / 1e9:.9f} s"
            )
        return _interpolate(
            edge.matrices[index - 1],
            edge.matrices[index],
            (stamp - stamps[index - 1]) / (stamps[index] - stamps[index - 1]),
        )

    def lookup(self, target: str, source: str, stamp: int) -> np.ndarray:
        """`T_target_from_source` (4, 4) float64 at `stamp` (ns).

        Raises:
            TransformError: naming both frames and the stamp, when a frame is unknown, the
            frames are not connected, or a transform on the path has no sample near the stamp.
        """
        with self._lock:
            return self._lookup(target.lstrip("/"), source.lstrip("/"), stamp)

    def _lookup(self, target: str, source: str, stamp: int) -> np.ndarray:
        if target == source:
            return np.eye(4)
        known = self.frames
        for name in (target, source):
            if name not in known:
                raise TransformError(
                    f"no transform from {source!r} to {target!r} at stamp {stamp / 1e9:.9f} s: frame {name!r} "
                    f"is not in /tf or /tf_static (frames: {known})"
                )
        up_source, up_target = self._to_root(source), self._to_root(target)
        common = next((frame for frame in up_source if frame in up_target), None)
        if common is None:
            raise TransformError(
                f"no transform from {source!r} to {target!r} at stamp {stamp / 1e9:.9f} s: they are in "
                f"unconnected TF trees (roots {up_source[-1]!r} and {up_target[-1]!r})"
            )
        try:
            T_common_from_source = self._chain(up_source[: up_source.index(common)], stamp)
            T_common_from_target = self._chain(up_target[: up_target.index(common)], stamp)
        except TransformError as error:
            raise TransformError(f"no transform from {source!r} to {target!r}: {error}") from None
        return np.linalg.inv(T_common_from_target) @ T_common_from_source

    def _chain(self, frames: list[str], stamp: int) -> np.ndarray:
        """T_top_from_frames[0], walking up through the parents of `frames`."""
        matrix = np.eye(4)
        for child in frames:
            matrix = self._edge_matrix(child, stamp) @ matrix
        return matrix


def _interpolate(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Rigid transform between `a` (fraction 0) and `b` (1): linear translation, slerp rotation."""
    from scipy.spatial.transform import Rotation, Slerp

    rotations = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
    matrix = np.eye(4)
    matrix[:3, :3] = Slerp([0.0, 1.0], rotations)([fraction]).as_matrix()[0]
    matrix[:3, 3] = (1.0 - fraction) * a[:3, 3] + fraction * b[:3, 3]
    return matrix
