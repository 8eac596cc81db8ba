"""IPFIX messages (RFC 7011, information elements from RFC 7012 / IANA): templates with variable-length and
enterprise-specific fields, options templates with interface names and the sampling interval."""

from __future__ import annotations

import struct

from flowsink.generate.model import Flow
from flowsink.generate.netflow_v9 import INTERFACES, interface_name
from flowsink.generate.templated import TEMPLATE_V4, TEMPLATE_V6, TemplateClock, data_sets, pad4, take_fitting

HEADER = struct.Struct("!HHIII")
SET_HEADER = struct.Struct("!HH")
VARIABLE = 65535
ENTERPRISE_BIT = 0x8000
# RFC 5612's enterprise number for documentation: no real collector assigns meaning to it
EXAMPLE_PEN = 32473
TAG_ELEMENT, TENANT_ELEMENT = 1, 2

TEMPLATE_IFNAME, TEMPLATE_SAMPLING = 258, 259

# (element id, length, enterprise number or None)
_HEAD = [(1, 8, None), (2, 8, None), (4, 1, None), (5, 1, None), (6, 2, None), (7, 2, None)]
_TAIL = [(152, 8, None), (153, 8, None)]
FIELDS_V4 = [*_HEAD, (8, 4, None), (10, 4, None), (11, 2, None), (12, 4, None), (14, 4, None), *_TAIL]
FIELDS_V6 = [*_HEAD, (27, 16, None), (10, 4, None), (11, 2, None), (28, 16, None), (14, 4, None), *_TAIL]
# applicationName (variable length), then two enterprise-specific elements: a variable-length tag and a tenant id
EXTRA_FIELDS = [(96, VARIABLE, None), (TAG_ELEMENT, VARIABLE, EXAMPLE_PEN), (TENANT_ELEMENT, 4, EXAMPLE_PEN)]
FIXED_V4 = struct.Struct("!QQBBHH4sIH4sIQQ")
FIXED_V6 = struct.Struct("!QQBBHH16sIH16sIQQ")
# options: interfaceName/interfaceDescription (variable length) scoped by ingressInterface;
# samplingInterval/samplingAlgorithm scoped by meteringProcessId
IFNAME_SCOPE = [(10, 4, None)]
IFNAME_FIELDS = [(82, VARIABLE, None), (83, VARIABLE, None)]
SAMPLING_SCOPE = [(143, 4, None)]
SAMPLING_FIELDS = [(34, 4, None), (35, 1, None)]


def varlen(data: bytes) -> bytes:
    """RFC 7011 section 7: one length octet below 255, else 255 and a two-octet length."""
    if len(data) < 255:
        return bytes([len(data)]) + data
    return b"\xff" + struct.pack("!H", len(data)) + data


def _field_specifiers(fields: list[tuple[int, int, int | None]]) -> bytes:
    out = []
    for element, length, pen in fields:
        if pen is None:
            out.append(struct.pack("!HH", element, length))
        else:
            out.append(struct.pack("!HHI", element | ENTERPRISE_BIT, length, pen))
    return b"".join(out)


def _set(set_id: int, body: bytes) -> bytes:
    body = pad4(body)
    return SET_HEADER.pack(set_id, SET_HEADER.size + len(body)) + body


def site_tag(flow: Flow) -> str:
    """The enterprise tag element's value: derived from the flow so that a decoder's output can be checked."""
    return f"site-{flow.in_if % 4}/rack-{flow.out_if}"


def tenant_id(flow: Flow) -> int:
    return 1000 + flow.in_if


class IpfixEncoder:
    """One IPFIX exporting process (one observation domain): export time, sequence, template refresh."""

    protocol = "ipfix"
    header_size = HEADER.size

    def __init__(
        self,
        observation_domain: int,
        *,
        template_refresh_ms: int = 10_000,
        options: bool = True,
        extras: bool = True,
        sampling_interval: int = 1,
        max_datagram_bytes: int = 1400,
        max_records: int = 1000,
    ):
        self.observation_domain = observation_domain
        self.template_clock = TemplateClock(template_refresh_ms)
        self.options = options
        self.extras = extras
        self.sampling_interval = sampling_interval
        self.max_datagram_bytes = max_datagram_bytes
        self.max_records = max_records
        self.sequence = (
            0  # data records sent before this message, options data included (RFC 7011 section 3.1)
        )
        self.options_records = 0

    def _flow_fields(self, version: int) -> list[tuple[int, int, int | None]]:
        fields = FIELDS_V4 if version == 4 else FIELDS_V6
        return fields + EXTRA_FIELDS if self.extras else fields

    def _template_sets(self) -> tuple[list[bytes], int]:
        """Template set, options template set and options data; returns the sets and the data records among them."""
        templates = b"".join(
            struct.pack("!HH", template_id, len(fields)) + _field_specifiers(fields)
            for template_id, fields in (
                (TEMPLATE_V4, self._flow_fields(4)),
                (TEMPLATE_V6, self._flow_fields(6)),
            )
        )
        sets = [_set(2, templates)]
        if not self.options:
            return sets, 0
        options = b"".join(
            struct.pack("!HHH", template_id, len(scope) + len(fields), len(scope))
            + _field_specifiers(scope + fields)
            for template_id, scope, fields in (
                (TEMPLATE_IFNAME, IFNAME_SCOPE, IFNAME_FIELDS),
                (TEMPLATE_SAMPLING, SAMPLING_SCOPE, SAMPLING_FIELDS),
            )
        )
        sets.append(_set(3, options))
        names = b"".join(
            struct.pack("!I", i) + varlen(interface_name(i).encode()) + varlen(f"uplink {i} to core".encode())
            for i in INTERFACES
        )
        sets.append(_set(TEMPLATE_IFNAME, names))
        sets.append(_set(TEMPLATE_SAMPLING, struct.pack("!IIB", 1, self.sampling_interval, 1)))
        data_records = len(INTERFACES) + 1
        self.options_records += data_records
        return sets, data_records

    def _encode_flow(self, flow: Flow) -> bytes:
        fixed = FIXED_V4 if flow.ip_version == 4 else FIXED_V6
        record = fixed.pack(
            flow.bytes,
            flow.packets,
            flow.protocol,
            flow.tos,
            flow.tcp_flags,
            flow.src_port,
            flow.src_raw,
            flow.in_if,
            flow.dst_port,
            flow.dst_raw,
            flow.out_if,
            flow.start_ms,
            flow.end_ms,
        )
        if not self.extras:
            return record
        return (
            record
            + varlen(flow.app_name.encode())
            + varlen(site_tag(flow).encode())
            + struct.pack("!I", tenant_id(flow))
        )

    def _record_size(self, flow: Flow) -> int:
        size = FIXED_V4.size if flow.ip_version == 4 else FIXED_V6.size
        if self.extras:
            size += 1 + len(flow.app_name) + 1 + len(site_tag(flow)) + 4
        return size

    def pack(self, flows: list[Flow], now_ms: int) -> tuple[bytes, int]:
        """One message with as many leading flows as fit (templates first when due); returns ``(payload, n)``."""
        sets: list[bytes] = []
        options_data = 0
        if self.template_clock.due(now_ms):
            sets, options_data = self._template_sets()
        used = HEADER.size + sum(len(s) for s in sets)
        taken = take_fitting(
            flows,
            self.max_datagram_bytes - used - 2 * (SET_HEADER.size + 3),
            self._record_size,
            self.max_records,
        )
        export_secs = now_ms // 1000
        sets += data_sets(flows[:taken], self._encode_flow, _set)
        body = b"".join(sets)
        header = HEADER.pack(
            10, HEADER.size + len(body), export_secs, self.sequence & 0xFFFFFFFF, self.observation_domain
        )
        self.sequence += taken + options_data
        return header + body, taken

    def accepts(self, flow: Flow) -> bool:
        return True
