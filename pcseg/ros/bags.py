"""`pcseg predict --bag` and `pcseg fuse --bag`: ROS 1 and ROS 2 bags through `rosbags`.

A ROS 1 bag is a `.bag` file; a ROS 2 bag is a folder with `metadata.yaml` and its
`sqlite3` or `mcap` storage. Outputs keep the input's format and storage. Bags are read
message by message (never whole), and a bag that ends early (a recording cut by a crash)
is processed up to the last readable message, with where it stopped in the summary.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pcseg.ros.fusion import FrameFuser, FuseTopics
from pcseg.ros.messages import (
    camera_from_camera_info,
    labelled_pointcloud2,
    pointcloud2_to_numpy,
    rosbags_types,
    stamp_to_ns,
)
from pcseg.ros.transforms import TransformBuffer
from pcseg.utils.progress import progress

__all__ = ["Bag", "FuseTopics", "fuse_bag", "predict_bag", "typestore"]

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"


def _import_rosbags():
    try:
        import rosbags  # noqa: F401
    except ImportError as error:
        raise ImportError("reading bags needs the rosbags package: pip install rosbags") from error


def typestore(kind: str):
    """The rosbags typestore pcseg uses for `kind` ("ros1": Noetic, "ros2": Humble).

    Noetic's store lacks tf2_msgs/TFMessage (the type of /tf): it is added here.
    """
    _import_rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if kind == "ros1" else Stores.ROS2_HUMBLE)
    if "tf2_msgs/msg/TFMessage" not in store.types:
        store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    return store


def _register_bag_types(store, connections) -> None:
    """Add the types a bag defines that the store lacks (custom messages of copied topics)."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    for connection in connections:
        if connection.msgtype in store.types or not connection.msgdef.data:
            continue
        try:
            parse = get_types_from_idl if connection.msgdef.format.name == "IDL" else get_types_from_msg
            store.register(
                parse(connection.msgdef.data, connection.msgtype)
                if parse is get_types_from_msg
                else parse(connection.msgdef.data)
            )
        except Exception:  # a type pcseg cannot parse is still copied byte for byte
            continue


@dataclass
class Bag:
    """An open input bag: its reader, format ("ros1" / "ros2"), storage and typestore."""

    path: Path
    kind: str
    storage: str | None
    reader: object
    typestore: object
    stopped: str | None = None  # where and why reading stopped early, None when the bag was read to its end
    _read: int = field(default=0, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> Bag:
        """Open a ROS 1 `.bag` file or a ROS 2 bag folder for reading.

        Raises:
            FileNotFoundError: when `path` does not exist.
            ValueError: when it is neither kind of bag or cannot be opened (names the file).
        """
        _import_rosbags()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bag {path} does not exist")
        if path.is_dir():
            from rosbags.rosbag2 import Reader

            kind = "ros2"
            storage = _ros2_storage(path)
        elif path.suffix == ".bag":
            from rosbags.rosbag1 import Reader

            kind, storage = "ros1", None
        else:
            raise ValueError(f"bag {path} is neither a ROS 1 .bag file nor a ROS 2 bag folder (with metadata.yaml)")
        try:
            reader = Reader(path)
            reader.open()
        except Exception as error:  # rosbags raises its own ReaderError and plain OSErrors
            reader = _unindexed_reader(path, kind, storage, error)
        store = typestore(kind)
        _register_bag_types(store, reader.connections)
        return cls(path, kind, storage, reader, store)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type of every connection."""
        return {connection.topic: connection.msgtype for connection in self.reader.connections}

    @property
    def message_count(self) -> int:
        return sum(connection.msgcount for connection in self.reader.connections)

    def require_topic(self, topic: str, msgtype: str | None = None) -> None:
        """Raise ValueError, listing the bag's topics, when `topic` (of `msgtype`) is not in the bag."""
        topics = self.topics
        if topic not in topics:
            listing = ", ".join(f"{name} ({kind})" for name, kind in sorted(topics.items())) or "none"
            raise ValueError(f"bag {self.path} has no topic {topic!r}; its topics: {listing}")
        if msgtype is not None and topics[topic] != msgtype:
            raise ValueError(f"bag {self.path}: topic {topic!r} holds {topics[topic]}, not {msgtype}")

    def messages(self, topics=None) -> Iterator[tuple[object, int, bytes]]:
        """(connection, bag timestamp ns, raw bytes) in time order (in recording order for a
        bag read record by record); stops at the first unreadable record and records where in
        `stopped`."""
        connections = [c for c in self.reader.connections if topics is None or c.topic in topics]
        self._read, last = 0, None
        iterator = self.reader.messages(connections=connections)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                cut = getattr(self.reader, "stopped", None)  # a truncated MCAP ends quietly at its cut
                if cut and not self.stopped:
                    self.stopped = f"bag {self.path} stops after {self._read} messages: {cut}"
                return
            except Exception as error:  # a truncated or corrupt record: keep what was read
                where = f"after {self._read} messages" + (f" (the last at {last / 1e9:.9f} s)" if last else "")
                self.stopped = f"bag {self.path} stops {where}: {_describe(error)}"
                return
            self._read += 1
            last = item[1]
            yield item

    def deserialize(self, raw, msgtype: str):
        if self.kind == "ros1":
            return self.typestore.deserialize_ros1(raw, msgtype)
        return self.typestore.deserialize_cdr(raw, msgtype)

    def serialize(self, message, msgtype: str):
        if self.kind == "ros1":
            return self.typestore.serialize_ros1(message, msgtype)
        return self.typestore.serialize_cdr(message, msgtype)


def _unindexed_reader(path: Path, kind: str, storage: str | None, error: Exception):
    """A bag whose index or metadata is missing or damaged (cut short), read record by record:
    a ROS 1 bag, a ROS 2 bag of one MCAP file, or a ROS 2 sqlite3 bag (split into several
    files or not). Anything else raises ValueError naming the bag."""
    from pcseg.ros.truncated import SequentialRosbag1Reader, TruncatedSqlite3Reader, truncated_mcap_reader

    files = _ros2_files(path, storage) if kind == "ros2" else []
    if kind == "ros2" and (not files or (storage == "mcap" and len(files) != 1)):
        raise ValueError(f"cannot read bag {path}: {error}") from error
    try:
        if kind == "ros2" and storage == "mcap":
            reader = truncated_mcap_reader(files[0])
        else:
            reader = TruncatedSqlite3Reader(files) if kind == "ros2" else SequentialRosbag1Reader(path)
            reader.open()
    except Exception as second:  # neither the index nor a record-by-record walk can read it
        raise ValueError(f"cannot read bag {path}: {error}; reading record by record: {second}") from error
    if not reader.connections:
        raise ValueError(f"cannot read bag {path}: {error}; {reader.stopped or 'it holds no connection'}") from error
    return reader


def _ros2_files(path: Path, storage: str | None) -> list[Path]:
    """The storage files of a ROS 2 bag folder in recording order: as `metadata.yaml` lists
    them, or, without one (a recording that crashed), by the number rosbag2 ends their names with."""
    import re

    import yaml

    metadata = path / "metadata.yaml"
    if metadata.exists():
        try:
            info = (yaml.safe_load(metadata.read_text()) or {}).get("rosbag2_bagfile_information", {})
            if info.get("compression_format"):
                raise ValueError(f"bag {path} is compressed ({info['compression_format']}): read whole bags only")
            listed = [path / name for name in info.get("relative_file_paths", [])]
            if listed and all(file.exists() for file in listed):
                return listed
        except (yaml.YAMLError, AttributeError, TypeError):
            pass  # a damaged metadata file: fall back on the files themselves
    suffix = ".mcap" if storage == "mcap" else ".db3"

    def number(file: Path) -> tuple[int, str]:
        match = re.search(r"(\d+)$", file.stem)
        return (int(match.group(1)) if match else -1, file.name)

    return sorted(path.glob(f"*{suffix}"), key=number)


def _describe(error: Exception) -> str:
    from pcseg.ros.truncated import TruncatedBag

    return str(error) if isinstance(error, TruncatedBag) else f"{type(error).__name__}: {error}"


def _ros2_storage(path: Path) -> str:
    """The storage_identifier of a ROS 2 bag folder (sqlite3, mcap); without `metadata.yaml`
    (rosbag2 writes it when a recording ends cleanly), the kind of storage file it holds."""
    import yaml

    metadata = path / "metadata.yaml"
    if not metadata.exists():
        kinds = {"sqlite3": list(path.glob("*.db3")), "mcap": list(path.glob("*.mcap"))}
        found = [kind for kind, files in kinds.items() if files]
        if len(found) != 1:
            raise ValueError(
                f"{path} is a folder without metadata.yaml and without .db3 or .mcap files: not a ROS 2 bag"
            )
        return found[0]
    try:
        info = yaml.safe_load(metadata.read_text()) or {}
        return info.get("rosbag2_bagfile_information", {}).get("storage_identifier", "sqlite3")
    except (yaml.YAMLError, AttributeError) as error:
        raise ValueError(f"{metadata} cannot be read: {error}") from error


class _BagWriter:
    """A bag of the input's format and storage, copying the input's connections as they are."""

    def __init__(self, bag: Bag, path: str | Path):
        path = Path(path)
        if path.exists():
            raise ValueError(f"output bag {path} exists already; pcseg does not overwrite bags")
        if bag.kind == "ros1":
            from rosbags.rosbag1 import Writer

            if path.suffix != ".bag":
                raise ValueError(f"the input is a ROS 1 bag: the output must be a .bag file, got {path}")
            self.writer = Writer(path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if bag.storage == "mcap" else StoragePlugin.SQLITE3
            self.writer = Writer(path, version=9, storage_plugin=plugin)
        self.bag = bag
        self.path = path
        self.writer.open()
        self._copies: dict[int, object] = {}

    def copy_connection(self, connection):
        """The output connection that mirrors the input `connection`."""
        if connection.id not in self._copies:
            kwargs = dict(msgdef=connection.msgdef.data or None, typestore=self.bag.typestore)
            if self.bag.kind == "ros1":
                kwargs.update(
                    md5sum=connection.digest, callerid=connection.ext.callerid, latching=connection.ext.latching
                )
            else:
                kwargs.update(
                    rihs01=connection.digest or None,
                    serialization_format=connection.ext.serialization_format,
                    offered_qos_profiles=connection.ext.offered_qos_profiles,
                )
            self._copies[connection.id] = self.writer.add_connection(connection.topic, connection.msgtype, **kwargs)
        return self._copies[connection.id]

    def add_connection(self, topic: str, msgtype: str):
        return self.writer.add_connection(topic, msgtype, typestore=self.bag.typestore)

    def write(self, connection, timestamp: int, raw) -> None:
        self.writer.write(connection, timestamp, raw)

    def close(self) -> None:
        self.writer.close()


# ----- pcseg predict --bag --------------------------------------------------------------------
def predict_bag(
    in_path,
    out_path,
    topic: str,
    segmenter,
    *,
    output_topic: str | None = None,
    palette=None,
    show_progress: bool = True,
) -> dict:
    """Copy a bag and add a labelled PointCloud2 for each cloud of `topic`.

    Args:
        in_path: a ROS 1 `.bag` or a ROS 2 bag folder.
        out_path: the output bag, same format and storage as the input (must not exist).
        topic: the PointCloud2 topic to segment.
        segmenter: a `pcseg.Segmenter` (anything with `predict(points)` and `num_classes`).
        output_topic: where the labelled clouds go; `<topic>/labels` when None.
        palette: (C, 3) uint8 class colours; `pcseg.bridge.default_palette(C)` when None.
        show_progress: report progress (a bar at a terminal, lines in logs).

    Returns:
        summary: dict with out, messages (copied), clouds (labelled), points, seconds and
        stopped (None, or where an unreadable bag stopped: what was read is written).

    Raises:
        ValueError: when the bag has no `topic` (lists its topics) or it is not PointCloud2,
        or a cloud has no x/y/z field (names the message's stamp).
    """
    if palette is None:
        from pcseg.bridge import default_palette

        palette = default_palette(segmenter.num_classes)
    output_topic = output_topic or f"{topic.rstrip('/')}/labels"
    start = time.perf_counter()
    counts = dict(messages=0, clouds=0, points=0)
    with Bag.open(in_path) as bag:
        bag.require_topic(topic, POINTCLOUD2)
        if output_topic in bag.topics:
            raise ValueError(f"bag {bag.path} already has a topic {output_topic!r}; choose --output-topic")
        types = rosbags_types(bag.typestore)
        writer = _BagWriter(bag, out_path)
        try:
            labels_connection = writer.add_connection(output_topic, POINTCLOUD2)
            with progress(total=bag.message_count, desc="predict bag", unit="msg", enabled=show_progress) as bar:
                for connection, timestamp, raw in bag.messages():
                    writer.write(writer.copy_connection(connection), timestamp, raw)
                    counts["messages"] += 1
                    bar.update(1)
                    if connection.topic != topic:
                        continue
                    cloud = bag.deserialize(raw, POINTCLOUD2)
                    out = _label_cloud(cloud, segmenter, palette, types)
                    writer.write(labels_connection, timestamp, bag.serialize(out, POINTCLOUD2))
                    counts["clouds"] += 1
                    counts["points"] += int(cloud.height) * int(cloud.width)
                    bar.set_postfix(clouds=counts["clouds"])
        finally:
            writer.close()
        stopped = bag.stopped
    return {
        "out": str(out_path),
        **counts,
        "output_topic": output_topic,
        "seconds": round(time.perf_counter() - start, 3),
        "stopped": stopped,
    }


def _label_cloud(cloud, segmenter, palette, types):
    """The labelled PointCloud2 of one input cloud (errors name the cloud's stamp and frame)."""
    try:
        fields = pointcloud2_to_numpy(cloud)
    except ValueError as error:
        stamp = stamp_to_ns(cloud.header.stamp) / 1e9
        raise ValueError(f"cloud at {stamp:.9f} s in frame {cloud.header.frame_id!r}: {error}") from None
    labels, probabilities = segmenter.predict(fields["xyz"])
    return labelled_pointcloud2(cloud, labels, probabilities, palette, fields["valid"], types=types)


# ----- pcseg fuse --bag -----------------------------------------------------------------------
def fuse_bag(
    in_path,
    out_path,
    topics: FuseTopics,
    *,
    num_classes: int,
    fixed_frame: str = "map",
    tolerance_s: float = 0.05,
    voxel_size: float = 0.05,
    mode: str = "bayes",
    ignore_label=None,
    depth_scale: float | None = None,
    depth_trunc: float = 10.0,
    scores: str = "probabilities",
    show_progress: bool = True,
) -> dict:
    """Fuse the 2D segmentations (or labelled clouds) of a bag into a map in `fixed_frame`.

    Each segmentation image is paired with the depth image / colour image / cloud nearest
    to it in header stamp, within `tolerance_s`; poses come from `/tf` and `/tf_static`,
    chained and interpolated to each stamp. Two passes over the bag: the first reads the
    stamps, the camera info and the transforms, the second reads the paired messages,
    holding only those of pairs not yet fused.

    Args:
        in_path: a ROS 1 `.bag` or a ROS 2 bag folder.
        out_path: the map (`.ply` or `.npz`, see `pcseg.Fuser.export`).
        topics: which topics hold what (`FuseTopics`).
        num_classes: classes of the segmentations.
        fixed_frame: the frame the map is built in (REP 105's `map` or `odom`).
        tolerance_s: the largest stamp difference of a pair, and how far a transform is
            extrapolated past its first / last sample.
        voxel_size, mode, ignore_label: as in `pcseg.Fuser`.
        depth_scale, depth_trunc: as in `Fuser.add_rgbd` (16UC1 depth is millimetres).
        scores: what float segmentations hold (`32FC<C>` images): "probabilities" or "logits".
        show_progress: report progress.

    Returns:
        summary: out_path, frames (fused), voxels, unpaired (per topic: messages that no
        pair used), no_transform (pairs skipped for a missing transform), first_error,
        stopped (see `predict_bag`).

    Raises:
        ValueError: on a missing topic (lists the bag's topics), no camera info, or when
        nothing could be fused (with the first reason).
    """
    from pcseg.fuser import Fuser

    kind = topics.mode()
    tolerance = int(tolerance_s * 1e9)
    fuser = Fuser(num_classes, voxel_size, mode, ignore_label=ignore_label)
    with Bag.open(in_path) as bag:
        driver = topics.labels or topics.segmentation
        wanted = [t for t in (driver, topics.camera_info, *topics.partners()) if t]
        for topic in wanted:
            bag.require_topic(topic)
        scan = _scan(bag, wanted, topics.camera_info, tolerance)
        camera = None
        if topics.camera_info:
            if scan.camera_info is None:
                raise ValueError(f"bag {bag.path}: no readable CameraInfo on {topics.camera_info!r}")
            camera = camera_from_camera_info(scan.camera_info)
        pairs, unpaired = _pair(scan.stamps, driver, topics.partners(), tolerance)
        state = FrameFuser(fuser, scan.tf, camera, fixed_frame, kind, depth_scale, depth_trunc, scores)
        needed = defaultdict(int)
        for pair in pairs:
            for key in pair:
                needed[key] += 1
        held: dict = {}
        seen = defaultdict(int)
        waiting = {key: [] for key in needed}
        for pair in pairs:
            for key in pair:
                waiting[key].append(pair)
        with progress(total=len(pairs), desc="fuse bag", unit="frame", enabled=show_progress) as bar:
            for connection, _, raw in bag.messages([driver, *topics.partners()]):
                key = (connection.topic, seen[connection.topic])
                seen[connection.topic] += 1
                if key not in needed:
                    continue
                held[key] = bag.deserialize(raw, connection.msgtype)
                for pair in waiting.pop(key):
                    if all(part in held for part in pair):
                        state.fuse(
                            dict(zip([driver, *topics.partners()], (held[part] for part in pair))), driver, topics
                        )
                        bar.update(1)
                        for part in pair:
                            needed[part] -= 1
                            if needed[part] == 0:
                                del held[part]
        stopped = bag.stopped
    if fuser.num_voxels == 0:
        raise ValueError(
            f"nothing fused from {in_path}: {len(pairs)} pairs, {state.no_transform} without a "
            f"transform; first error: {state.first_error or 'none'}; unpaired: {unpaired}"
        )
    fuser.export(out_path)
    return {
        "out_path": str(out_path),
        "mode": kind,
        "frames": state.frames,
        "pairs": len(pairs),
        "voxels": fuser.num_voxels,
        "unpaired": unpaired,
        "no_transform": state.no_transform,
        "first_error": state.first_error,
        "stopped": stopped,
    }


@dataclass
class _Scan:
    stamps: dict  # topic -> list of header stamps (ns), in bag order
    tf: TransformBuffer
    camera_info: object | None


def _scan(bag: Bag, topics: list[str], camera_info_topic: str | None, tolerance: int) -> _Scan:
    """First pass: header stamps of `topics`, the first CameraInfo, every /tf and /tf_static."""
    stamps = defaultdict(list)
    tf = TransformBuffer(tolerance)
    camera_info = None
    tf_topics = [t for t in ("/tf", "/tf_static") if t in bag.topics]
    for connection, _, raw in bag.messages([*topics, *tf_topics]):
        message = bag.deserialize(raw, connection.msgtype)
        if connection.topic in ("/tf", "/tf_static"):
            tf.add_message(message, static=connection.topic == "/tf_static")
        elif connection.topic == camera_info_topic:
            camera_info = camera_info or message
        else:
            stamps[connection.topic].append(stamp_to_ns(message.header.stamp))
    return _Scan(dict(stamps), tf, camera_info)


def _pair(stamps: dict, driver: str, partners: list[str], tolerance: int):
    """Pairs of (topic, index) keys, one per driver message with a partner of every partner
    topic within `tolerance`; and per topic the count of messages no pair uses."""
    pairs, used = [], defaultdict(set)
    ordered = {topic: sorted((stamp, i) for i, stamp in enumerate(stamps.get(topic, []))) for topic in partners}
    for index, stamp in enumerate(stamps.get(driver, [])):
        pair = [(driver, index)]
        for topic in partners:
            match = _nearest(ordered[topic], stamp, tolerance)
            if match is None:
                break
            pair.append((topic, match))
        else:
            pairs.append(tuple(pair))
            for key in pair:
                used[key[0]].add(key[1])
    unpaired = {topic: len(stamps.get(topic, [])) - len(used[topic]) for topic in [driver, *partners]}
    return pairs, unpaired


def _nearest(ordered: list, stamp: int, tolerance: int) -> int | None:
    position = bisect.bisect_left(ordered, (stamp, -1))
    best = None
    for candidate in ordered[max(position - 1, 0) : position + 1]:
        gap = abs(candidate[0] - stamp)
        if gap <= tolerance and (best is None or gap < best[0]):
            best = (gap, candidate[1])
    return None if best is None else best[1]
