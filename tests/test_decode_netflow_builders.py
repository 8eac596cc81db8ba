"""Byte-level builders for NetFlow v5/v9 and IPFIX datagrams used by the decode tests, checked against the
independent ``netflow`` PyPI package so that the tests built on them test the decoder, not the builder."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBB2x")


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def ip6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def v5_record(
    src: str,
    dst: str,
    packets: int,
    octets: int,
    first: int,
    last: int,
    src_port: int = 1000,
    dst_port: int = 80,
    protocol: int = 6,
    input_if: int = 1,
    output_if: int = 2,
    tcp_flags: int = 0x18,
) -> bytes:
    return V5_RECORD.pack(
        ip4(src),
        ip4(dst),
        ip4("0.0.0.0"),
        input_if,
        output_if,
        packets,
        octets,
        first,
        last,
        src_port,
        dst_port,
        tcp_flags,
        protocol,
        0,
        0,
        0,
        24,
        24,
    )


def v5_packet(
    records: Sequence[bytes],
    uptime: int = 100_000,
    secs: int = 1_700_000_000,
    nsecs: int = 0,
    sequence: int = 0,
    engine_type: int = 0,
    engine_id: int = 0,
    sampling: int = 0,
) -> bytes:
    header = struct.pack(
        "!HHIIIIBBH", 5, len(records), uptime, secs, nsecs, sequence, engine_type, engine_id, sampling
    )
    return header + b"".join(records)


def pad4(body: bytes) -> bytes:
    return body + b"\x00" * (-len(body) % 4)


def flowset(set_id: int, body: bytes, pad: bool = True) -> bytes:
    body = pad4(body) if pad else body
    return struct.pack("!HH", set_id, len(body) + 4) + body


def v9_template_set(templates: Iterable[tuple[int, Sequence[tuple[int, int]]]]) -> bytes:
    body = b""
    for template_id, fields in templates:
        body += struct.pack("!HH", template_id, len(fields))
        body += b"".join(struct.pack("!HH", t, n) for t, n in fields)
    return flowset(0, body)


def v9_options_template_set(
    template_id: int, scopes: Sequence[tuple[int, int]], options: Sequence[tuple[int, int]]
) -> bytes:
    body = struct.pack("!HHH", template_id, 4 * len(scopes), 4 * len(options))
    body += b"".join(struct.pack("!HH", t, n) for t, n in (*scopes, *options))
    return flowset(1, body)


def v9_packet(
    sets: Sequence[bytes],
    sequence: int = 1,
    source_id: int = 0,
    uptime: int = 100_000,
    secs: int = 1_700_000_000,
) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), uptime, secs, sequence, source_id) + b"".join(sets)


def ipfix_field(element_id: int, length: int, enterprise: int = 0) -> bytes:
    if enterprise:
        return struct.pack("!HHI", element_id | 0x8000, length, enterprise)
    return struct.pack("!HH", element_id, length)


def ipfix_template_set(
    templates: Iterable[tuple[int, Sequence[tuple[int, int] | tuple[int, int, int]]]],
) -> bytes:
    body = b""
    for template_id, fields in templates:
        body += struct.pack("!HH", template_id, len(fields)) + b"".join(ipfix_field(*f) for f in fields)
    return flowset(2, body, pad=False)


def ipfix_options_template_set(
    template_id: int, scope_count: int, fields: Sequence[tuple[int, int]]
) -> bytes:
    body = struct.pack("!HHH", template_id, len(fields), scope_count) + b"".join(
        ipfix_field(*f) for f in fields
    )
    return flowset(3, body, pad=False)


def ipfix_withdrawal(template_id: int, options: bool = False) -> bytes:
    return flowset(3 if options else 2, struct.pack("!HH", template_id, 0), pad=False)


def varlen(value: bytes, long_form: bool = False) -> bytes:
    """RFC 7011 section 7: 1-byte length below 255, else 255 + 2-byte length (forced with long_form)."""
    if len(value) < 255 and not long_form:
        return bytes([len(value)]) + value
    return b"\xff" + struct.pack("!H", len(value)) + value


def ipfix_message(
    sets: Sequence[bytes], sequence: int = 0, domain: int = 1, export_time: int = 1_700_000_000
) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


FLOW_V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4)]


def flow_v9_record(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    proto: int,
    octets: int,
    packets: int,
    first: int = 90_000,
    last: int = 95_000,
) -> bytes:
    return struct.pack("!4s4sHHBIIII", ip4(src), ip4(dst), sport, dport, proto, octets, packets, first, last)


# ---- the builders agree with an independent decoder -----------------------------------------------------------


def test_v5_builder_reads_back_with_the_netflow_package() -> None:
    from netflow.v5 import V5ExportPacket

    packet = V5ExportPacket(v5_packet([v5_record("10.0.0.1", "10.0.0.2", 3, 300, 1000, 2000)]))
    flow = packet.flows[0].data
    assert (flow["IPV4_SRC_ADDR"], flow["IN_PACKETS"], flow["IN_OCTETS"]) == (ip4_int("10.0.0.1"), 3, 300)


def test_v9_builder_reads_back_with_the_netflow_package() -> None:
    from netflow.v9 import V9ExportPacket

    payload = v9_packet(
        [
            v9_template_set([(300, FLOW_V9_FIELDS)]),
            flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1234, 80, 6, 500, 5)),
        ]
    )
    packet = V9ExportPacket(payload, {})
    flow = packet.flows[0].data
    assert (flow["L4_SRC_PORT"], flow["IN_BYTES"], flow["IN_PKTS"]) == (1234, 500, 5)


def test_ipfix_builder_reads_back_with_the_netflow_package() -> None:
    from netflow.ipfix import IPFIXExportPacket

    payload = ipfix_message(
        [
            ipfix_template_set([(400, [(8, 4), (12, 4), (1, 8)])]),
            flowset(400, ip4("10.0.0.1") + ip4("10.0.0.2") + (777).to_bytes(8, "big"), pad=False),
        ]
    )
    packet = IPFIXExportPacket(payload, {})
    flow = packet.flows[0].data
    assert flow["octetDeltaCount"] == 777


def ip4_int(text: str) -> int:
    return int.from_bytes(ip4(text), "big")
