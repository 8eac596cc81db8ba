"""NetFlow v5 export datagrams, written from Cisco's published v5 format (24-byte header, 48-byte records)."""

from __future__ import annotations

import struct

from flowsink.generate.model import Flow

HEADER = struct.Struct("!HHIIIIBBH")
RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")
MAX_RECORDS = 30  # the format's own limit per datagram


class NetflowV5Encoder:
    """One v5 exporter: engine identity, boot time and the flow sequence counter."""

    protocol = "netflow_v5"
    header_size = HEADER.size

    def __init__(
        self, engine_id: int, boot_ms: int, sampling_interval: int = 1, max_records: int = MAX_RECORDS
    ):
        self.engine_type = 0
        self.engine_id = engine_id & 0xFF
        self.boot_ms = boot_ms
        self.sampling_interval = sampling_interval
        self.max_records = min(max_records, MAX_RECORDS)
        self.flow_sequence = 0  # flows exported before this datagram (the v5 header's meaning)
        self.options_records = 0

    def _uptime(self, unix_ms: int) -> int:
        return (unix_ms - self.boot_ms) & 0xFFFFFFFF

    def pack(self, flows: list[Flow], now_ms: int) -> tuple[bytes, int]:
        """One datagram with the first ``n`` flows (``n`` <= 30); returns ``(payload, n)``."""
        batch = flows[: self.max_records]
        # sampling mode 01 (deterministic) in the top two bits, the interval below; 0 means unsampled
        sampling = 0 if self.sampling_interval <= 1 else (1 << 14) | (self.sampling_interval & 0x3FFF)
        parts = [
            HEADER.pack(
                5,
                len(batch),
                self._uptime(now_ms),
                now_ms // 1000,
                (now_ms % 1000) * 1_000_000,
                self.flow_sequence & 0xFFFFFFFF,
                self.engine_type,
                self.engine_id,
                sampling,
            )
        ]
        for flow in batch:
            parts.append(
                RECORD.pack(
                    flow.src_raw,
                    flow.dst_raw,
                    b"\x00\x00\x00\x00",
                    flow.in_if,
                    flow.out_if,
                    flow.packets,
                    flow.bytes,
                    self._uptime(flow.start_ms),
                    self._uptime(flow.end_ms),
                    flow.src_port,
                    flow.dst_port,
                    flow.tcp_flags,
                    flow.protocol,
                    flow.tos,
                    0,
                    0,
                    24,
                    24,
                )
            )
        self.flow_sequence += len(batch)
        return b"".join(parts), len(batch)

    def accepts(self, flow: Flow) -> bool:
        """v5 carries IPv4 only."""
        return flow.ip_version == 4
