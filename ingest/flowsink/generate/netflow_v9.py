"""NetFlow v9 export datagrams (RFC 3954): templates, options templates, data and options data flowsets."""

from __future__ import annotations

import struct

from flowsink.generate.model import Flow
from flowsink.generate.templated import TEMPLATE_V4, TEMPLATE_V6, TemplateClock, data_sets, pad4, take_fitting

HEADER = struct.Struct("!HHIIII")
FLOWSET_HEADER = struct.Struct("!HH")

TEMPLATE_IFNAME, TEMPLATE_SAMPLING = 258, 259
IF_NAME_LENGTH = 16

# (field type, length) per RFC 3954 section 8
_COMMON_HEAD = [(1, 8), (2, 4), (4, 1), (5, 1), (6, 1), (7, 2)]
_COMMON_TAIL = [(21, 4), (22, 4)]
FIELDS_V4 = [*_COMMON_HEAD, (8, 4), (10, 4), (11, 2), (12, 4), (14, 4), *_COMMON_TAIL]
FIELDS_V6 = [*_COMMON_HEAD, (27, 16), (10, 4), (11, 2), (28, 16), (14, 4), *_COMMON_TAIL]
RECORD_V4 = struct.Struct("!QIBBBH4sIH4sIII")
RECORD_V6 = struct.Struct("!QIBBBH16sIH16sIII")
# options: interface names (scope: interface) and sampling (scope: system)
IFNAME_SCOPE, IFNAME_FIELDS = [(2, 4)], [(82, IF_NAME_LENGTH)]
SAMPLING_SCOPE, SAMPLING_FIELDS = [(1, 4)], [(34, 4)]
IFNAME_RECORD = struct.Struct(f"!I{IF_NAME_LENGTH}s")
SAMPLING_RECORD = struct.Struct("!II")
INTERFACES = range(1, 17)


def interface_name(index: int) -> str:
    return f"xe-0/0/{index}"


def _template_record(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", template_id, len(fields)) + b"".join(
        struct.pack("!HH", t, n) for t, n in fields
    )


def _options_template_record(
    template_id: int, scope: list[tuple[int, int]], fields: list[tuple[int, int]]
) -> bytes:
    head = struct.pack("!HHH", template_id, 4 * len(scope), 4 * len(fields))
    return head + b"".join(struct.pack("!HH", t, n) for t, n in scope + fields)


def _flowset(flowset_id: int, body: bytes) -> bytes:
    body = pad4(body)
    return FLOWSET_HEADER.pack(flowset_id, FLOWSET_HEADER.size + len(body)) + body


class NetflowV9Encoder:
    """One v9 exporter (one source id): uptime, packet sequence and the template refresh clock."""

    protocol = "netflow_v9"
    header_size = HEADER.size

    def __init__(
        self,
        source_id: int,
        boot_ms: int,
        *,
        template_refresh_ms: int = 10_000,
        options: bool = True,
        sampling_interval: int = 1,
        max_datagram_bytes: int = 1400,
        max_records: int = 1000,
    ):
        self.source_id = source_id
        self.boot_ms = boot_ms
        self.template_clock = TemplateClock(template_refresh_ms)
        self.options = options
        self.sampling_interval = sampling_interval
        self.max_datagram_bytes = max_datagram_bytes
        self.max_records = max_records
        self.package_sequence = 0  # export packets sent before this one (RFC 3954 section 5.1)
        self.options_records = 0

    def _uptime(self, unix_ms: int) -> int:
        return (unix_ms - self.boot_ms) & 0xFFFFFFFF

    def _template_flowsets(self) -> tuple[list[bytes], int]:
        """Template flowset, options template flowset and options data; returns the flowsets and record count."""
        sets = [
            _flowset(0, _template_record(TEMPLATE_V4, FIELDS_V4) + _template_record(TEMPLATE_V6, FIELDS_V6))
        ]
        records = 2
        if self.options:
            # one options template per flowset, as Cisco exporters do: some collectors assume that layout
            sets.append(_flowset(1, _options_template_record(TEMPLATE_IFNAME, IFNAME_SCOPE, IFNAME_FIELDS)))
            sets.append(
                _flowset(1, _options_template_record(TEMPLATE_SAMPLING, SAMPLING_SCOPE, SAMPLING_FIELDS))
            )
            names = b"".join(IFNAME_RECORD.pack(i, interface_name(i).encode()) for i in INTERFACES)
            sets.append(_flowset(TEMPLATE_IFNAME, names))
            sets.append(_flowset(TEMPLATE_SAMPLING, SAMPLING_RECORD.pack(0, self.sampling_interval)))
            records += 2 + len(INTERFACES) + 1
            self.options_records += len(INTERFACES) + 1
        return sets, records

    def _encode_flow(self, flow: Flow) -> bytes:
        record = RECORD_V4 if flow.ip_version == 4 else RECORD_V6
        return record.pack(
            flow.bytes,
            flow.packets,
            flow.protocol,
            flow.tos,
            flow.tcp_flags & 0xFF,
            flow.src_port,
            flow.src_raw,
            flow.in_if,
            flow.dst_port,
            flow.dst_raw,
            flow.out_if,
            self._uptime(flow.end_ms),
            self._uptime(flow.start_ms),
        )

    def pack(self, flows: list[Flow], now_ms: int) -> tuple[bytes, int]:
        """One datagram with as many leading flows as fit (templates first when due); returns ``(payload, n)``."""
        sets: list[bytes] = []
        records = 0
        if self.template_clock.due(now_ms):
            sets, records = self._template_flowsets()
        used = HEADER.size + sum(len(s) for s in sets)
        taken = take_fitting(
            flows,
            self.max_datagram_bytes - used - 2 * (FLOWSET_HEADER.size + 3),
            lambda f: RECORD_V4.size if f.ip_version == 4 else RECORD_V6.size,
            self.max_records,
        )
        sets += data_sets(flows[:taken], self._encode_flow, _flowset)
        records += taken
        header = HEADER.pack(
            9,
            records,
            self._uptime(now_ms),
            now_ms // 1000,
            self.package_sequence & 0xFFFFFFFF,
            self.source_id,
        )
        self.package_sequence += 1
        return header + b"".join(sets), taken

    def accepts(self, flow: Flow) -> bool:
        return True
