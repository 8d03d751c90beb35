"""Replay images: a recording laid out for bulk replay, placed in guest memory by the emulator.

Layout (every field little-endian; the numbers are REPLAY's constants in
device_sim/protocol/messages.toml, from which the firmware's tag_proto.h is generated too):

    offset 0                 magic     u32  MAGIC ("TRPL")
           4                 version   u16  IMAGE_VERSION
           6                 axes      u16  AXES (3: x, y, z)
           8                 segments  u32  S
          12                 samples   u32  N, the sum of the segment table
          16                 table     S x u32: samples per segment
          16 + 4 S           counts    N x (x, y, z) int16: the segments one after the other

A segment is one stream: the device starts its window state afresh at each one, as after the
RESET before each bout when streaming, so no window spans two segments. The device checks the
same things (app_main.c) and answers a bad image with ERROR(BAD_REPLAY, detail = what).

    image = build_image([bout_counts, other_bout_counts])
    path = write_image(build_dir / "replay.bin", segments)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from device_sim.errors import EmulatorError, ReplayImageError
from device_sim.protocol import MESSAGES

_C = MESSAGES["REPLAY"].constants
MAGIC: int = _C["MAGIC"]
VERSION: int = _C["IMAGE_VERSION"]
AXES: int = _C["AXES"]
HEADER = struct.Struct("<IHHII")
HEADER_BYTES: int = _C["HEADER_BYTES"]
assert HEADER.size == HEADER_BYTES, "messages.toml's HEADER_BYTES disagrees with the layout"
MAX_COUNT = 0xFFFF_FFFF  # segments and samples are u32


def image_size(segment_lengths: Sequence[int]) -> int:
    """Bytes of the image of segments of these lengths (in samples)."""
    return HEADER_BYTES + 4 * len(segment_lengths) + 2 * AXES * sum(segment_lengths)


def build_image(segments: Sequence[np.ndarray]) -> bytes:
    """The image of `segments`, each (n, 3) int16 wire counts."""
    arrays = [np.asarray(s) for s in segments]
    for i, array in enumerate(arrays):
        if array.ndim != 2 or array.shape[1] != AXES:
            raise ReplayImageError(f"segment {i} has shape {array.shape}; a replay image holds "
                                   f"(samples, {AXES}) counts")
        if array.dtype != np.int16 and (array.min(initial=0) < -32768
                                        or array.max(initial=0) > 32767):
            raise ReplayImageError(f"segment {i} holds values outside int16")
    lengths = [len(a) for a in arrays]
    if len(lengths) > MAX_COUNT or sum(lengths) > MAX_COUNT:
        raise ReplayImageError("more segments or samples than a replay image's u32 counts hold")
    header = HEADER.pack(MAGIC, VERSION, AXES, len(lengths), sum(lengths))
    table = np.asarray(lengths, dtype="<u4").tobytes()
    counts = b"".join(np.ascontiguousarray(a, dtype="<i2").tobytes() for a in arrays)
    return header + table + counts


def parse_image(data: bytes) -> list[np.ndarray]:
    """The segments of an image, (n, 3) int16 each; ReplayImageError saying what is wrong."""
    if len(data) < HEADER_BYTES:
        raise ReplayImageError(f"a replay image of {len(data)} bytes has no room for its "
                               f"{HEADER_BYTES}-byte header")
    magic, version, axes, segments, samples = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ReplayImageError(f"not a replay image: magic 0x{magic:08X}, expected "
                               f"0x{MAGIC:08X}")
    if version != VERSION:
        raise ReplayImageError(f"replay image version {version}; this harness writes {VERSION}")
    if axes != AXES:
        raise ReplayImageError(f"a replay image of {axes} axes; the tag has {AXES}")
    table_end = HEADER_BYTES + 4 * segments
    if table_end > len(data):
        raise ReplayImageError(f"the table of {segments} segments runs past the image's "
                               f"{len(data)} bytes")
    if segments == 0:
        return []
    lengths = np.frombuffer(data, dtype="<u4", count=segments, offset=HEADER_BYTES)
    if int(lengths.sum(dtype=np.uint64)) != samples:
        raise ReplayImageError(f"the segment table adds up to {int(lengths.sum())} samples, "
                               f"the header says {samples}")
    if table_end + 2 * AXES * samples > len(data):
        raise ReplayImageError(f"{samples} samples run past the image's {len(data)} bytes")
    counts = np.frombuffer(data, dtype="<i2", count=AXES * samples, offset=table_end)
    counts = counts.reshape(-1, AXES).astype(np.int16)
    return np.split(counts, np.cumsum(lengths)[:-1].astype(np.int64))


def write_image(path: Path, segments: Sequence[np.ndarray]) -> Path:
    """Write the image of `segments` to `path` (whole or not at all); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(build_image(segments))
    partial.replace(path)
    return path


def check_image(path: Path, capacity: int, where: str) -> None:
    """What an emulator checks before it starts with a replay image: that the file is there
    (EmulatorError) and fits the region (check_fits)."""
    if not Path(path).is_file():
        raise EmulatorError(f"replay image {path} does not exist")
    check_fits(path, capacity, where)


def check_fits(path: Path, capacity: int, where: str) -> None:
    """An image must fit the replay region of `capacity` bytes that `where` names."""
    size = Path(path).stat().st_size
    if size > capacity:
        raise ReplayImageError(
            f"the replay image {path} is {size:,} bytes, the replay region of {where} holds "
            f"{capacity:,}: replay fewer windows (--max-windows) or stream them")
