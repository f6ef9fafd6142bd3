"""Reading bags cut short (a crash, a full disk): every whole record before the cut.

A ROS 1 bag and an MCAP file (ROS 2) write their index at the end, so a truncated one has
none and `rosbags`' readers refuse it (as `rosbag play` does until `rosbag reindex`). The
records before the cut are intact: these readers walk them in file order and stop at the
first incomplete one, saying where (`stopped`).

A ROS 2 sqlite3 bag cut short is refused by sqlite itself ("database disk image is malformed":
its header names more pages than the file holds). With `PRAGMA writable_schema=ON` sqlite
takes the file's own size instead, and every message whose pages (its overflow pages
included) lie before the cut reads back intact; the first one that does not raises, and
reading stops there. rosbag2 writes `metadata.yaml` only when a recording ends cleanly, so
these readers need none.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SequentialRosbag1Reader", "TruncatedBag", "TruncatedSqlite3Reader", "truncated_mcap_reader"]

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


class TruncatedSqlite3Reader:
    """The `.db3` files of a ROS 2 sqlite3 bag read row by row in recording order, through a
    cut at the end of the last file, with the `connections` / `messages` interface of
    `rosbags`' readers. Connections of several files (a split bag) are merged by topic and type.

    Args:
        paths: the bag's `.db3` files in recording order.
    """

    def __init__(self, paths: list[Path]):
        self.paths = [Path(path) for path in paths]
        self.connections: list = []
        self.stopped: str | None = None  # where the readable part ends, None for a whole bag
        self._ids: list[dict[int, int]] = []  # per file: its topics.id -> connection id

    def open(self) -> None:
        """Read each file's topics and count its readable messages (one pass over the rows)."""
        from rosbags.interfaces import Connection, ConnectionExtRosbag2
        from rosbags.rosbag2.metadata import parse_qos

        merged: dict[tuple[str, str], Connection] = {}
        counts: dict[int, int] = {}
        for path in self.paths:
            database = _open_cut_database(path)
            try:
                ids = {}
                for topic_id, name, msgtype, serialization, qos, digest in _topics(database, path):
                    if (name, msgtype) not in merged:
                        ext = ConnectionExtRosbag2(serialization, parse_qos(qos) if qos else [])
                        definition = _definition(database, msgtype)
                        merged[name, msgtype] = Connection(
                            len(merged) + 1, name, msgtype, definition, digest, 0, ext, self
                        )
                    ids[topic_id] = merged[name, msgtype].id
                self._ids.append(ids)
                for (topic_id,) in _rows(database, path, "topic_id", self):
                    counts[ids.get(topic_id, 0)] = counts.get(ids.get(topic_id, 0), 0) + 1
            finally:
                database.close()
            if self.stopped:  # the files after a cut file are not read
                break
        self.connections = [c._replace(msgcount=counts.get(c.id, 0)) for c in merged.values()]

    def close(self) -> None:
        pass

    def messages(self, connections=()) -> Iterator[tuple[object, int, bytes]]:
        """(connection, timestamp ns, raw bytes) in recording order; raises `TruncatedBag` at the cut."""
        by_id = {connection.id: connection for connection in self.connections}
        wanted = {connection.id for connection in connections} or set(by_id)
        for path, ids in zip(self.paths, self._ids):
            database = _open_cut_database(path)
            try:
                for topic_id, timestamp, data in _rows(database, path, "topic_id, timestamp, data", None):
                    connection_id = ids.get(topic_id)
                    if connection_id in wanted:
                        yield by_id[connection_id], timestamp, data
            finally:
                database.close()


def _open_cut_database(path: Path):
    import sqlite3

    # immutable: sqlite takes no lock and writes nothing (no journal), so the bag is never touched
    database = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    database.execute("PRAGMA writable_schema=ON")
    return database


def _topics(database, path: Path) -> list[tuple[int, str, str, str, str, str]]:
    """(id, name, type, serialization_format, offered_qos_profiles, type hash) of every topic,
    for each of rosbag2's schema versions (the last columns came in later versions)."""
    import sqlite3

    try:
        columns = {row[1] for row in database.execute("PRAGMA table_info(topics)")}
        if not {"id", "name", "type"} <= columns:
            raise TruncatedBag(f"{path} is not a rosbag2 sqlite3 file: it has no topics table")
        wanted = [
            "id",
            "name",
            "type",
            "serialization_format" if "serialization_format" in columns else "'cdr'",
            "offered_qos_profiles" if "offered_qos_profiles" in columns else "''",
            "type_description_hash" if "type_description_hash" in columns else "''",
        ]
        return database.execute(f"SELECT {', '.join(wanted)} FROM topics ORDER BY id").fetchall()
    except sqlite3.DatabaseError as error:
        raise TruncatedBag(f"{path}: its topics table cannot be read (sqlite: {error})") from None


def _definition(database, msgtype: str):
    """The message definition a rosbag2 file of schema 4 or later stores for `msgtype`."""
    import sqlite3

    from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

    formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
    try:
        row = database.execute(
            "SELECT encoding, encoded_message_definition FROM message_definitions WHERE topic_type = ?", (msgtype,)
        ).fetchone()
    except sqlite3.DatabaseError:  # no such table (older schemas), or it lies past the cut
        row = None
    if row is None or row[0] not in formats:
        return MessageDefinition(MessageDefinitionFormat.NONE, "")
    return MessageDefinition(formats[row[0]], row[1])


def _rows(database, path: Path, columns: str, owner) -> Iterator[tuple]:
    """The `messages` rows in insertion order (the rowid b-tree: no index needed) up to the
    first unreadable one. With `owner`, the cut is recorded in `owner.stopped` and the rows
    end quietly; without, `TruncatedBag` is raised there."""
    import sqlite3

    read = 0
    try:
        for row in database.execute(f"SELECT {columns} FROM messages ORDER BY id"):
            yield row
            read += 1
    except sqlite3.DatabaseError as error:
        where = f"{path} ({path.stat().st_size} bytes) stops after its {read} readable messages (sqlite: {error})"
        if owner is None:
            raise TruncatedBag(where) from None
        owner.stopped = where
