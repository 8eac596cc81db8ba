"""NetFlow v5/v9 and IPFIX records -> ECS documents.

Decoders hand over one dict per record, keyed by IPFIX snake_case names (NetFlow v5 fields are mapped to their
IPFIX equivalents), plus the datagram's ``ExportContext``. Times in documents are ISO-8601 UTC strings with
milliseconds (``2024-04-17T18:42:58.304Z``); ``event.duration`` is in nanoseconds as ECS says.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from flowsink.normalize.common import TRANSPORT_NAMES, community_id

NTP_EPOCH_OFFSET_S = 2_208_988_800   # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
UINT32 = 1 << 32

_second_text: list[Any] = [None, ""]


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ``; the second's text is cached (records share it)."""
    seconds, millis = divmod(epoch_ms, 1000)
    if _second_text[0] != seconds:
        try:
            _second_text[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        except (OverflowError, OSError, ValueError):
            return "1970-01-01T00:00:00.000Z"
        _second_text[0] = seconds
    return f"{_second_text[1]}.{millis:03d}Z"


def time_to_ms(value: int, unit: str) -> int:
    """A dateTime element's integer value -> epoch milliseconds (``ntp``: RFC 7011 section 6.1.9/10)."""
    if unit == "ms":
        return value
    if unit == "s":
        return value * 1000
    return ((value >> 32) - NTP_EPOCH_OFFSET_S) * 1000 + (((value & 0xFFFFFFFF) * 1000) >> 32)


@dataclass(slots=True)
class ExportContext:
    """What every record of one datagram shares: who sent it, when, and the datagram's identity."""

    exporter: str
    version: int
    domain: int
    sequence: int
    export_ms: int
    uptime_ms: int | None
    id_prefix: str
    timestamp: str = ""
    exporter_fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls, exporter: str, version: int, domain: int, sequence: int, export_ms: int, uptime_ms: int | None,
        payload: bytes,
    ) -> ExportContext:
        # The id prefix hashes the exporter and the whole datagram: a replay of the same datagram gets the same
        # ids, any other datagram (even one with a repeated sequence number) different ones.
        digest = hashlib.blake2b(payload, digest_size=12, person=b"flowsink", key=exporter.encode()[:64])
        prefix = base64.urlsafe_b64encode(digest.digest()).decode("ascii")
        exporter_fields: dict[str, Any] = {
            "address": exporter, "version": version, "source_id": domain, "timestamp": iso_ms(export_ms),
        }
        if uptime_ms is not None:
            exporter_fields["uptime_millis"] = uptime_ms
        return cls(exporter, version, domain, sequence, export_ms, uptime_ms, prefix, iso_ms(export_ms),
                   exporter_fields)


def document_id(context: ExportContext, set_index: int, record_index: int) -> str:
    """Deterministic ``_id``: datagram digest + the record's position (set, record) in that datagram."""
    return f"{context.id_prefix}{set_index}.{record_index}"


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def _record_times(
    record: dict[str, Any], time_fields: tuple[tuple[str, str], ...], context: ExportContext,
    system_init_ms: int | None,
) -> tuple[int | None, int | None]:
    """Absolute start/end (epoch ms) from whichever time elements the record has; converts them to ISO text."""
    start = end = None
    for name, unit in time_fields:
        value = record.get(name)
        if not isinstance(value, int):
            continue
        millis = time_to_ms(value, unit)
        record[name] = iso_ms(millis)
        if name.startswith("flow_start_") and start is None:
            start = millis
        elif name.startswith("flow_end_") and end is None:
            end = millis
    if start is None or end is None:
        up_start = record.get("flow_start_sys_up_time")
        up_end = record.get("flow_end_sys_up_time")
        if context.uptime_ms is not None:   # NetFlow v9: relative to the header's sysUpTime
            base = context.export_ms - context.uptime_ms
            if start is None and isinstance(up_start, int):
                start = base + _uptime_delta(up_start, context.uptime_ms)
            if end is None and isinstance(up_end, int):
                end = base + _uptime_delta(up_end, context.uptime_ms)
        elif system_init_ms is not None:   # IPFIX: relative to systemInitTimeMilliseconds
            if start is None and isinstance(up_start, int):
                start = system_init_ms + up_start
            if end is None and isinstance(up_end, int):
                end = system_init_ms + up_end
    if start is None or end is None:
        delta_start = record.get("flow_start_delta_microseconds")
        delta_end = record.get("flow_end_delta_microseconds")
        if start is None and isinstance(delta_start, int):
            start = context.export_ms - delta_start // 1000
        if end is None and isinstance(delta_end, int):
            end = context.export_ms - delta_end // 1000
    duration = record.get("flow_duration_milliseconds")
    if isinstance(duration, int):
        if end is None and start is not None:
            end = start + duration
        elif start is None and end is not None:
            start = end - duration
    return start, end


def _uptime_delta(value: int, uptime_ms: int) -> int:
    """A sysUpTime-relative time as an offset from the boot time, tolerating one 32-bit wrap of the uptime."""
    behind = (uptime_ms - value) % UINT32
    if behind > UINT32 // 2:   # the flow time is (slightly) after the header's uptime
        behind -= UINT32
    return uptime_ms - behind


def _icmp_type_code(record: dict[str, Any], protocol: int, dst_port: int | None) -> tuple[int, int] | None:
    code = _first(record, "icmp_type_code_ipv4", "icmp_type_code_ipv6")
    if code is None:
        icmp_type = _first(record, "icmp_type_ipv4", "icmp_type_ipv6")
        if icmp_type is not None:
            return icmp_type, _first(record, "icmp_code_ipv4", "icmp_code_ipv6") or 0
        code = dst_port   # Cisco and others put type * 256 + code in the destination port
    if code is None:
        return None
    return code >> 8, code & 0xFF


def flow_id(exporter: str, src: Any, dst: Any, protocol: Any, src_port: Any, dst_port: Any) -> str:
    """Stable id of the flow's 5-tuple as one exporter saw it (same for every record of that flow)."""
    key = f"{exporter}|{src}|{dst}|{protocol}|{src_port}|{dst_port}".encode()
    return base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=9).digest()).decode("ascii")


_DIRECTIONS = {0: "ingress", 1: "egress"}


def flow_document(
    record: dict[str, Any], context: ExportContext, doc_id: str, action: str, sampling_rate: int,
    renormalize: bool, time_fields: tuple[tuple[str, str], ...] = (), interfaces: dict[int, str] | None = None,
    system_init_ms: int | None = None,
) -> dict[str, Any]:
    """One flow record -> ECS document; ``record`` becomes the document's ``netflow`` object."""
    src_ip = _first(record, "source_ipv4_address", "source_ipv6_address")
    dst_ip = _first(record, "destination_ipv4_address", "destination_ipv6_address")
    protocol = record.get("protocol_identifier")
    src_port = _first(record, "source_transport_port", "tcp_source_port", "udp_source_port")
    dst_port = _first(record, "destination_transport_port", "tcp_destination_port", "udp_destination_port")
    start, end = _record_times(record, time_fields, context, system_init_ms)

    rate = sampling_rate if sampling_rate > 0 else 1
    scale = rate if renormalize else 1
    fwd_bytes = _first(record, "octet_delta_count", "octet_total_count", "initiator_octets", "layer2_octet_delta_count")
    fwd_packets = _first(record, "packet_delta_count", "packet_total_count", "initiator_packets")
    rev_bytes = _first(record, "reverse_octet_delta_count", "reverse_octet_total_count", "responder_octets")
    rev_packets = _first(record, "reverse_packet_delta_count", "reverse_packet_total_count", "responder_packets")

    event: dict[str, Any] = {
        "kind": "event", "category": ["network"], "type": ["connection"], "action": action,
    }
    if start is not None:
        event["start"] = iso_ms(start)
    if end is not None:
        event["end"] = iso_ms(end)
    if start is not None and end is not None and end >= start:
        event["duration"] = (end - start) * 1_000_000

    network: dict[str, Any] = {}
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    if src_ip is not None:
        source["ip"] = src_ip
        network["type"] = "ipv6" if ":" in src_ip else "ipv4"
    if dst_ip is not None:
        destination["ip"] = dst_ip
        network.setdefault("type", "ipv6" if ":" in dst_ip else "ipv4")
    if src_port is not None:
        source["port"] = src_port
    if dst_port is not None:
        destination["port"] = dst_port
    if isinstance(protocol, int):
        network["iana_number"] = str(protocol)
        transport = TRANSPORT_NAMES.get(protocol)
        if transport is not None:
            network["transport"] = transport
    if isinstance(fwd_bytes, int) or isinstance(rev_bytes, int):
        network["bytes"] = ((fwd_bytes or 0) + (rev_bytes or 0)) * scale
    if isinstance(fwd_packets, int) or isinstance(rev_packets, int):
        network["packets"] = ((fwd_packets or 0) + (rev_packets or 0)) * scale
    if isinstance(rev_bytes, int) or isinstance(rev_packets, int):   # biflow (RFC 5103, or NSEL initiator/responder)
        if isinstance(fwd_bytes, int):
            source["bytes"] = fwd_bytes * scale
        if isinstance(fwd_packets, int):
            source["packets"] = fwd_packets * scale
        if isinstance(rev_bytes, int):
            destination["bytes"] = rev_bytes * scale
        if isinstance(rev_packets, int):
            destination["packets"] = rev_packets * scale
    network["direction"] = _DIRECTIONS.get(record.get("flow_direction"), "unknown")
    if src_ip is not None and dst_ip is not None and isinstance(protocol, int):
        if protocol in (1, 58):
            type_code = _icmp_type_code(record, protocol, dst_port)
            if type_code is not None:
                network["community_id"] = community_id(src_ip, dst_ip, protocol, type_code[0], type_code[1])
        else:
            network["community_id"] = community_id(src_ip, dst_ip, protocol, src_port or 0, dst_port or 0)

    observer: dict[str, Any] = {"ip": context.exporter}
    ingress = record.get("ingress_interface")
    egress = record.get("egress_interface")
    if isinstance(ingress, int):
        observer["ingress"] = {"interface": _interface(ingress, interfaces)}
    if isinstance(egress, int):
        observer["egress"] = {"interface": _interface(egress, interfaces)}

    record["exporter"] = context.exporter_fields
    document = {
        "_id": doc_id,
        "@timestamp": context.timestamp,
        "event": event,
        "network": network,
        "observer": observer,
        "flow": {"sampling_rate": rate, "id": flow_id(context.exporter, src_ip, dst_ip, protocol, src_port, dst_port)},
        "netflow": record,
    }
    if source:
        document["source"] = source
    if destination:
        document["destination"] = destination
    return document


def _interface(index: int, names: dict[int, str] | None) -> dict[str, Any]:
    interface: dict[str, Any] = {"id": str(index)}
    if names:
        name = names.get(index)
        if name is not None:
            interface["name"] = name
    return interface


def options_document(
    record: dict[str, Any], context: ExportContext, doc_id: str, time_fields: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """One options data record (sampling, interface names, exporter statistics ...) -> its own document."""
    for name, unit in time_fields:
        value = record.get(name)
        if isinstance(value, int):
            record[name] = iso_ms(time_to_ms(value, unit))
    record["exporter"] = context.exporter_fields
    return {
        "_id": doc_id,
        "@timestamp": context.timestamp,
        "event": {"kind": "event", "category": ["network"], "type": ["info"], "action": "netflow_options"},
        "observer": {"ip": context.exporter},
        "netflow": record,
    }


def sampling_rate_from_options(record: dict[str, Any]) -> int | None:
    """The 1-in-N rate an options (or flow) record announces, from whichever sampling elements it carries."""
    interval = _first(record, "sampling_interval", "sampler_random_interval", "sampling_flow_interval")
    if isinstance(interval, int) and interval > 0:
        return interval
    packet_interval = record.get("sampling_packet_interval")
    if isinstance(packet_interval, int) and packet_interval > 0:
        space = record.get("sampling_packet_space")
        if isinstance(space, int) and space > 0:   # select `interval` packets, then skip `space` (RFC 5477)
            return max(1, round((packet_interval + space) / packet_interval))
        return packet_interval
    population = record.get("sampling_population")
    size = record.get("sampling_size")
    if isinstance(population, int) and isinstance(size, int) and size > 0 and population >= size:
        return max(1, round(population / size))
    probability = record.get("sampling_probability")
    if isinstance(probability, float) and 0 < probability <= 1:
        return max(1, round(1 / probability))
    return None


def sampler_key(record: dict[str, Any]) -> int | None:
    """Which sampler a record names (v9 samplerId, IPFIX selectorId), None when it names none."""
    key = _first(record, "sampler_id", "selector_id")
    return key if isinstance(key, int) else None
