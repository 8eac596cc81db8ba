"""Read UDP datagrams out of pcap / pcapng captures, or take a raw payload file as one datagram.

Hand-written rather than through dpkt or scapy: both build an object per packet and layer (scapy costs ~100 µs
a packet), their readers raise on the truncated last record that an interrupted ``tcpdump`` leaves behind,
and we need only the UDP payload and its source. The formats are small: pcap (both byte orders, micro- and
nanosecond magic) and pcapng (SHB/IDB/EPB/SPB/OPB blocks, per-interface link type and ``if_tsresol``).
Link types: Ethernet (with VLAN tags), Linux cooked v1/v2, raw IP, BSD null/loopback; IPv4 (fragments
reassembled) and IPv6 (extension headers walked).
"""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from flowsink.decode.packet import VLAN_ETHERTYPES
from flowsink.errors import UserError

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_OLD = 12  # OpenBSD's DLT_RAW number
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

MAX_RECORD_BYTES = 1 << 20  # larger than any snap length; a bigger length field means a corrupt file
MAX_PENDING_FRAGMENTS = 1024
MAX_UDP_PAYLOAD = 65507  # the largest UDP payload over IPv4


class CapturedDatagram(NamedTuple):
    """One UDP payload: when it was captured (ns since the epoch), who sent it, the bytes, the ports."""

    timestamp_ns: int
    src_ip: str
    payload: bytes
    src_port: int = 0
    dst_port: int = 0


class CaptureStats:
    """What a capture held besides the datagrams returned: skipped frames by reason."""

    def __init__(self) -> None:
        self.packets = 0
        self.skipped: Counter[str] = Counter()


def is_capture(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a pcap or pcapng capture (else: a raw payload)."""
    return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC


def read_file(
    path: str | os.PathLike[str], stats: CaptureStats | None = None, exporter: str = "127.0.0.1"
) -> Iterator[CapturedDatagram]:
    """Datagrams in a capture, in file order; a raw payload file (``.dat``/``.bin``/anything) is one datagram
    from ``exporter``, stamped with the file's modification time (so decoding it twice gives the same output).
    """
    stats = stats or CaptureStats()
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        head = handle.read(4)
        handle.seek(0)
        if head == PCAPNG_MAGIC:
            yield from _udp_datagrams(_pcapng_frames(handle, stats), stats)
        elif head in PCAP_MAGICS:
            yield from _udp_datagrams(_pcap_frames(handle, stats), stats)
        else:
            payload = handle.read(MAX_UDP_PAYLOAD + 1)
            if len(payload) > MAX_UDP_PAYLOAD:
                raise UserError(f"{path} is neither a pcap/pcapng capture nor a datagram (over 65,507 bytes)")
            stats.packets += 1
            yield CapturedDatagram(path.stat().st_mtime_ns, exporter, payload)


# --- containers: (timestamp_ns, link type, frame bytes) -------------------------------------------------------


def _pcap_frames(handle: BinaryIO, stats: CaptureStats) -> Iterator[tuple[int, int, bytes]]:
    header = handle.read(24)
    if len(header) < 24:
        stats.skipped["truncated_file"] += 1
        return
    order, ns_per_unit = PCAP_MAGICS[header[:4]]
    (link_type,) = struct.unpack(order + "I", header[20:24])
    link_type &= 0x0FFFFFFF  # the upper bits may carry FCS information
    record = struct.Struct(order + "IIII")
    while True:
        head = handle.read(16)
        if not head:
            return
        if len(head) < 16:
            stats.skipped["truncated_file"] += 1
            return
        seconds, fraction, captured, _original = record.unpack(head)
        if captured > MAX_RECORD_BYTES:
            stats.skipped["corrupt_record"] += 1
            return
        frame = handle.read(captured)
        if len(frame) < captured:
            stats.skipped["truncated_file"] += 1
            return
        stats.packets += 1
        yield seconds * 1_000_000_000 + fraction * ns_per_unit, link_type, frame


def _pcapng_frames(handle: BinaryIO, stats: CaptureStats) -> Iterator[tuple[int, int, bytes]]:
    order = "<"
    interfaces: list[tuple[int, int]] = []  # (link type, timestamp ticks per second)
    while True:
        head = handle.read(8)
        if not head:
            return
        if len(head) < 8:
            stats.skipped["truncated_file"] += 1
            return
        if head[:4] == PCAPNG_MAGIC:  # a section header: its byte-order magic decides the endianness
            magic = handle.read(4)
            order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
            (total,) = struct.unpack(order + "I", head[4:8])
            body_length = total - 12
        else:
            block_type, total = struct.unpack(order + "II", head)
            body_length = total - 8
        if total < 12 or total > MAX_RECORD_BYTES or total % 4:
            stats.skipped["corrupt_record"] += 1
            return
        body = handle.read(body_length)
        if len(body) < body_length:
            stats.skipped["truncated_file"] += 1
            return
        if head[:4] == PCAPNG_MAGIC:
            continue
        if block_type == 1:
            interfaces.append(_pcapng_interface(body, order))
        elif block_type in (6, 2):  # enhanced packet block, obsolete packet block
            frame = _pcapng_packet(body, order, interfaces, block_type, stats)
            if frame is not None:
                yield frame
        elif block_type == 3 and interfaces:  # simple packet block: no timestamp, interface 0
            (original,) = struct.unpack_from(order + "I", body, 0)
            stats.packets += 1
            yield 0, interfaces[0][0], body[4 : 4 + min(original, len(body) - 8)]


def _pcapng_interface(body: bytes, order: str) -> tuple[int, int]:
    link_type = struct.unpack_from(order + "H", body, 0)[0]
    resolution = 6
    offset = 8
    while offset + 4 <= len(body) - 4:  # the body ends with the repeated block length
        code, length = struct.unpack_from(order + "HH", body, offset)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            resolution = body[offset + 4]
        offset += 4 + ((length + 3) & ~3)
    # if_tsresol: the high bit says a power of two, else a power of ten, ticks per second
    ticks = 2 ** (resolution & 0x7F) if resolution & 0x80 else 10 ** min(resolution, 18)
    return link_type, ticks


def _pcapng_packet(
    body: bytes, order: str, interfaces: list[tuple[int, int]], block_type: int, stats: CaptureStats
) -> tuple[int, int, bytes] | None:
    if len(body) < 24:
        stats.skipped["corrupt_record"] += 1
        return None
    if block_type == 6:
        interface, high, low, captured, _original = struct.unpack_from(order + "IIIII", body, 0)
    else:
        interface, _drops, high, low, captured, _original = struct.unpack_from(order + "HHIIII", body, 0)
    frame_start = 20  # both block layouts put the frame after five 32-bit words
    if interface >= len(interfaces) or frame_start + captured > len(body):
        stats.skipped["corrupt_record"] += 1
        return None
    link_type, ticks = interfaces[interface]
    stamp = (high << 32) | low
    stats.packets += 1
    return stamp * 1_000_000_000 // ticks, link_type, body[frame_start : frame_start + captured]


# --- frames -> UDP payloads ------------------------------------------------------------------------------------


def _network_layer(link_type: int, frame: bytes) -> tuple[int, int] | None:
    """(ethertype-like protocol, offset of the IP header) for a frame of ``link_type``."""
    if link_type == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        offset = 14
        while ethertype in VLAN_ETHERTYPES and len(frame) >= offset + 4:
            (ethertype,) = struct.unpack_from("!H", frame, offset + 2)
            offset += 4
        return ethertype, offset
    if link_type == LINKTYPE_LINUX_SLL:
        return (struct.unpack_from("!H", frame, 14)[0], 16) if len(frame) >= 16 else None
    if link_type == LINKTYPE_LINUX_SLL2:
        return (struct.unpack_from("!H", frame, 0)[0], 20) if len(frame) >= 20 else None
    if link_type in (LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            return None
        return (0x0800 if frame[0] >> 4 == 4 else 0x86DD), 0
    if link_type in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 5:
            return None
        return (0x0800 if frame[4] >> 4 == 4 else 0x86DD), 4
    return None


def _udp_datagrams(
    frames: Iterator[tuple[int, int, bytes]], stats: CaptureStats
) -> Iterator[CapturedDatagram]:
    fragments: dict[tuple[bytes, bytes, int], _Fragments] = {}
    for timestamp_ns, link_type, frame in frames:
        layer = _network_layer(link_type, frame)
        if layer is None:
            stats.skipped[
                "unsupported_link_type"
                if link_type not in (0, 1, 12, 101, 108, 113, 228, 229, 276)
                else "truncated_frame"
            ] += 1
            continue
        ethertype, offset = layer
        if ethertype == 0x0800:
            found = _ipv4_udp(frame, offset, fragments, stats)
        elif ethertype == 0x86DD:
            found = _ipv6_udp(frame, offset, stats)
        else:
            stats.skipped["not_ip"] += 1
            continue
        if found is not None:
            src, src_port, dst_port, payload = found
            yield CapturedDatagram(timestamp_ns, src, payload, src_port, dst_port)


def _udp_header(segment: bytes, stats: CaptureStats) -> tuple[int, int, bytes] | None:
    if len(segment) < 8:
        stats.skipped["truncated_frame"] += 1
        return None
    src_port, dst_port, length = struct.unpack_from("!HHH", segment, 0)
    if length < 8:
        length = len(segment)  # 0 in jumbograms; trust the capture
    payload = segment[8:length]
    if len(payload) < length - 8:
        stats.skipped["truncated_frame"] += 1  # snap length cut the datagram: never decode half of it
        return None
    return src_port, dst_port, payload


def _ipv4_udp(
    frame: bytes, offset: int, fragments: dict[tuple[bytes, bytes, int], _Fragments], stats: CaptureStats
) -> tuple[str, int, int, bytes] | None:
    if len(frame) < offset + 20:
        stats.skipped["truncated_frame"] += 1
        return None
    ihl = (frame[offset] & 0x0F) * 4
    total_length, ip_id, flags_fragment = struct.unpack_from("!HHH", frame, offset + 2)
    proto = frame[offset + 9]
    src, dst = frame[offset + 12 : offset + 16], frame[offset + 16 : offset + 20]
    if proto != 17:
        stats.skipped["not_udp"] += 1
        return None
    end = offset + total_length if total_length >= ihl else len(frame)
    body = frame[offset + ihl : end]
    more, fragment_offset = flags_fragment & 0x2000, (flags_fragment & 0x1FFF) * 8
    if more or fragment_offset:
        body = _reassemble(fragments, (src, dst, ip_id), fragment_offset, body, bool(more), stats)
        if body is None:
            return None
    found = _udp_header(body, stats)
    if found is None:
        return None
    return socket.inet_ntop(socket.AF_INET, src), *found


class _Fragments:
    """The fragments of one IPv4 datagram seen so far, by offset; ``total`` once the last one arrived."""

    __slots__ = ("parts", "total")

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.total: int | None = None

    def add(self, offset: int, body: bytes, more: bool) -> bytes | None:
        self.parts[offset] = body
        if not more:
            self.total = offset + len(body)
        if self.total is None:
            return None
        joined = bytearray()
        for start in sorted(self.parts):
            if start > len(joined):
                return None  # a hole: wait for the missing fragment
            joined[start : start + len(self.parts[start])] = self.parts[start]
        return bytes(joined[: self.total]) if len(joined) >= self.total else None


def _reassemble(
    fragments: dict[tuple[bytes, bytes, int], _Fragments],
    key: tuple[bytes, bytes, int],
    offset: int,
    body: bytes,
    more: bool,
    stats: CaptureStats,
) -> bytes | None:
    """Collect IPv4 fragments (exporters' large v9/IPFIX datagrams get fragmented); the whole body once complete."""
    pending = fragments.get(key)
    if pending is None:
        if len(fragments) >= MAX_PENDING_FRAGMENTS:
            del fragments[next(iter(fragments))]
            stats.skipped["fragments_incomplete"] += 1
        pending = fragments[key] = _Fragments()
    whole = pending.add(offset, body, more)
    if whole is not None:
        del fragments[key]
    return whole


def _ipv6_udp(frame: bytes, offset: int, stats: CaptureStats) -> tuple[str, int, int, bytes] | None:
    if len(frame) < offset + 40:
        stats.skipped["truncated_frame"] += 1
        return None
    payload_length = struct.unpack_from("!H", frame, offset + 4)[0]
    next_header = frame[offset + 6]
    src = frame[offset + 8 : offset + 24]
    end = offset + 40 + payload_length if payload_length else len(frame)
    position = offset + 40
    for _ in range(16):
        if next_header not in (0, 43, 60, 51) or len(frame) < position + 2:
            break
        length = (frame[position + 1] + 2) * 4 if next_header == 51 else (frame[position + 1] + 1) * 8
        next_header = frame[position]
        position += length
    if next_header == 44:
        stats.skipped["ipv6_fragment"] += 1
        return None
    if next_header != 17:
        stats.skipped["not_udp"] += 1
        return None
    found = _udp_header(frame[position:end], stats)
    if found is None:
        return None
    return socket.inet_ntop(socket.AF_INET6, src), *found
