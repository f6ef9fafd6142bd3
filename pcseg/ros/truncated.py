"""Reading bags cut short (a crash, a full disk): every whole record before the cut.

A ROS 1 bag and an MCAP file (ROS 2) write their index at the end, so a truncated one has
none and `rosbags`' readers refuse it (as `rosbag play` does until `rosbag reindex`). The
records before the cut are intact: these readers walk them in file order and stop at the
first incomplete one, saying where (`stopped`). A truncated ROS 2 sqlite3 bag is not
handled: sqlite cannot open a database missing its pages.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SequentialRosbag1Reader", "TruncatedBag", "truncated_mcap_reader"]

_MAGIC = b"#ROSBAG V2.0\n"


class SequentialRosbag1Reader:
    """A ROS 1 bag read record by record, with the `connections` / `messages` interface of
    `rosbags.rosbag1.Reader` (connections are those found before the cut).

    Args:
        path: the `.bag` file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.connections: list = []
        self.stopped: str | None = None  # where the readable part ends, None for a whole bag
        self._handle = None

    def open(self) -> None:
        """Scan the bag once for its connections and message counts."""
        counts: dict[int, int] = {}
        found = {}
        try:
            for kind, value in self._records():
                if kind == "connection" and value.id not in found:
                    found[value.id] = value
                elif kind == "message":
                    counts[value[0]] = counts.get(value[0], 0) + 1
        except TruncatedBag as stop:
            self.stopped = str(stop)
        self.connections = [connection._replace(msgcount=counts.get(connection.id, 0)) for connection in found.values()]

    def close(self) -> None:
        pass

    def messages(self, connections=()) -> Iterator[tuple[object, int, bytes]]:
        """(connection, timestamp ns, raw bytes) in file order; raises at the cut."""
        wanted = {connection.id for connection in connections} or {c.id for c in self.connections}
        by_id = {connection.id: connection for connection in self.connections}
        for kind, value in self._records():
            if kind == "message" and value[0] in wanted:
                yield by_id[value[0]], value[1], value[2]

    def _records(self) -> Iterator[tuple[str, object]]:
        from rosbags.rosbag1.reader import Header, ReaderError, RecordType, decompressors

        size = self.path.stat().st_size
        with open(self.path, "rb") as handle:
            if handle.read(len(_MAGIC)) != _MAGIC:
                raise TruncatedBag(f"{self.path} is not a ROS 1 bag (V2.0): wrong first line")
            while handle.tell() < size:
                position = handle.tell()
                try:
                    header = Header.read(handle)
                    expected = _read_uint32(handle)
                    data = handle.read(expected)
                    if header.get_uint8("op") == RecordType.CHUNK:
                        compression = header.get_string("compression")
                        if len(data) < expected and compression != "none":
                            raise EOFError(f"a {compression} chunk needs {expected} bytes, found {len(data)}")
                        # An uncompressed chunk cut short still holds whole records before the cut.
                        inner = io.BytesIO(decompressors[compression](data))
                        while inner.tell() < len(inner.getbuffer()):
                            record = Header.read(inner)
                            yield from _record(record, _read_exactly(inner, _read_uint32(inner)), self)
                    elif len(data) == expected:
                        yield from _record(header, data, self)
                    if len(data) < expected:
                        raise EOFError(f"a record needs {expected} bytes, found {len(data)}")
                except (ReaderError, KeyError, OSError, EOFError, ValueError) as error:
                    raise TruncatedBag(
                        f"{self.path} ends in an incomplete record at byte {position} of {size} "
                        f"({type(error).__name__}: {error})"
                    ) from None


class TruncatedBag(Exception):
    """The readable part of the bag ends here (the message says where)."""


def _read_uint32(handle) -> int:
    return int.from_bytes(_read_exactly(handle, 4), "little")


def _read_exactly(handle, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise EOFError(f"needed {size} bytes, found {len(data)}")
    return data


def _record(header, data: bytes, owner) -> Iterator[tuple[str, object]]:
    """("connection", Connection) or ("message", (conn id, time ns, raw)) for one record."""
    from rosbags.interfaces import Connection, ConnectionExtRosbag1, MessageDefinition, MessageDefinitionFormat
    from rosbags.rosbag1.reader import Header, RecordType, normalize
    from rosbags.typesys.msg import normalize_msgtype

    op = header.get_uint8("op")
    if op == RecordType.MSGDATA:
        yield "message", (header.get_uint32("conn"), header.get_time("time"), data)
    elif op == RecordType.CONNECTION:
        fields = Header.read(io.BytesIO(len(data).to_bytes(4, "little") + data))
        latching = fields.get_string("latching") if "latching" in fields else ""
        yield (
            "connection",
            Connection(
                header.get_uint32("conn"),
                normalize(header.get_string("topic")),
                normalize_msgtype(fields.get_string("type")),
                MessageDefinition(MessageDefinitionFormat.MSG, fields.get_string("message_definition")),
                fields.get_string("md5sum"),
                0,
                ConnectionExtRosbag1(
                    fields.get_string("callerid") if "callerid" in fields else None, int(latching) if latching else None
                ),
                owner,
            ),
        )


_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_DATA_END, _MCAP_FOOTER = 0x0F, 0x02


def truncated_mcap_reader(path: str | Path):
    """A `rosbags` MCAP storage reader over the whole records of an MCAP file cut short.

    Args:
        path: the `.mcap` file of a ROS 2 bag.

    Returns:
        reader: opened, with `connections`, `messages(connections)` and `stopped` (where
        the readable part ends, None when the file was whole after all).

    Raises:
        ValueError: when the file does not start like an MCAP file of the ros2 profile.
    """
    from rosbags.rosbag2.storage_mcap import McapReader

    class TruncatedMcapReader(McapReader):
        stopped = None

        def _open(self) -> None:
            bio = self.bio
            size = Path(self.path).stat().st_size
            if bio.read(8) != _MCAP_MAGIC or bio.read(1) != b"\x01":
                raise ValueError(f"{self.path} is not an MCAP file (wrong magic or first record)")
            self.data_start = bio.tell() + 8 + int.from_bytes(bio.read(8), "little")
            end = self.data_start
            while True:  # walk the top-level records (opcode u8, length u64) to the last whole one
                bio.seek(end)
                head = bio.read(9)
                if len(head) < 9 or head[0] in (_MCAP_DATA_END, _MCAP_FOOTER):
                    break
                following = end + 9 + int.from_bytes(head[1:], "little")
                if following > size:
                    self.stopped = f"{self.path} ends in an incomplete record at byte {end} of {size}"
                    break
                end = following
            self.data_end = end
            self.meta_scan()
            counts = self.statistics.channel_message_counts
            self.connections = [c._replace(msgcount=counts.get(c.id, 0)) for c in self.connections]

    reader = TruncatedMcapReader(Path(path))
    reader.open()
    return reader
