"""Write UDP datagrams to a classic pcap file (Ethernet/IPv4/UDP), for tshark checks and replays.

Hand-written because the format is a 24-byte file header and a 16-byte header per packet; the Python
packet libraries would be a runtime dependency for these few lines.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1


@dataclass(slots=True)
class Datagram:
    """One UDP datagram as it went over the wire."""

    time_s: float
    src: str
    dst: str
    src_port: int
    dst_port: int
    payload: bytes


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, as IPv4 headers carry it."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(d: Datagram) -> bytes:
    """Ethernet + IPv4 + UDP around the payload (UDP checksum 0: optional over IPv4)."""
    udp = struct.pack("!HHHH", d.src_port, d.dst_port, 8 + len(d.payload), 0) + d.payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0x4000,
        64,
        17,
        0,
        socket.inet_aton(d.src),
        socket.inet_aton(d.dst),
    )
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp


def write_pcap(path: Path, datagrams: Iterable[Datagram]) -> int:
    """Write the datagrams; returns how many were written."""
    count = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for d in datagrams:
            data = frame(d)
            seconds = int(d.time_s)
            out.write(struct.pack("<IIII", seconds, int((d.time_s - seconds) * 1e6), len(data), len(data)))
            out.write(data)
            count += 1
    return count
