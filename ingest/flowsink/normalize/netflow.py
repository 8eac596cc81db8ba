"""NetFlow v5/v9 and IPFIX records -> ECS documents.

Decoders hand over one dict per record, keyed by IPFIX snake_case names (NetFlow v5 fields are mapped to their
IPFIX equivalents), plus the datagram's ``ExportContext``. Times in documents are ISO-8601 UTC strings with
milliseconds (``2024-04-17T18:42:58.304Z``); ``event.duration`` is in nanoseconds as ECS says.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from flowsink.enrich import hook
from flowsink.native import EXTENSION
from flowsink.normalize.common import TRANSPORT_NAMES, community_digest_python

MAX_LONG = (1 << 63) - 1  # Elasticsearch long: renormalised counters are clamped, never overflow
MAX_DURATION_MS = MAX_LONG // 1_000_000  # event.duration is in ns and must fit an Elasticsearch long
NTP_EPOCH_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
UINT32 = 1 << 32

_second_text: dict[int, str] = {}  # epoch second -> its text; records of one export share a few seconds


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (each second's text computed once, then cached)."""
    seconds, millis = divmod(epoch_ms, 1000)
    text = _second_text.get(seconds)
    if text is None:
        try:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        except (OverflowError, OSError, ValueError):
            return "1970-01-01T00:00:00.000Z"
        if len(_second_text) >= 65536:
            _second_text.clear()
        _second_text[seconds] = text
    return f"{text}.{millis:03d}Z"


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
    exporter_tag: str = ""
    # the exporter's flowsink.enrich.enricher.ExporterEnrichment, set by the decoder: None adds nothing
    enrichment: Any = None

    @classmethod
    def create(
        cls,
        exporter: str,
        version: int,
        domain: int,
        sequence: int,
        export_ms: int,
        uptime_ms: int | None,
        payload: bytes,
        arrival_ns: int = 0,
    ) -> ExportContext:
        # The id prefix hashes the exporter and the whole datagram: a replay of the same datagram gets the same
        # ids, any other datagram (even one with a repeated sequence number) different ones.
        digest = hashlib.blake2b(payload, digest_size=12, person=b"flowsink", key=exporter.encode()[:64])
        prefix = base64.urlsafe_b64encode(digest.digest()).decode("ascii")
        exporter_fields: dict[str, Any] = {
            "address": exporter,
            "version": version,
            "source_id": domain,
            "timestamp": iso_ms(export_ms),
        }
        if uptime_ms is not None:
            exporter_fields["uptime_millis"] = uptime_ms
        # @timestamp is the export time; an exporter that sends none (0) gets the arrival time instead of 1970
        timestamp = iso_ms(export_ms if export_ms > 0 else arrival_ns // 1_000_000)
        return cls(
            exporter,
            version,
            domain,
            sequence,
            export_ms,
            uptime_ms,
            prefix,
            timestamp,
            exporter_fields,
            exporter_tag(exporter),
        )


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
    record: dict[str, Any],
    time_fields: tuple[tuple[str, str], ...],
    context: ExportContext,
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
        return _relative_times(record, context, system_init_ms, start, end)
    return start, end


def _relative_times(
    record: dict[str, Any],
    context: ExportContext,
    system_init_ms: int | None,
    start: int | None,
    end: int | None,
) -> tuple[int | None, int | None]:
    """Start/end the absolute dateTime elements left open, from sysUpTime, delta or duration elements."""
    if start is None or end is None:
        up_start = record.get("flow_start_sys_up_time")
        up_end = record.get("flow_end_sys_up_time")
        if context.uptime_ms is not None:  # NetFlow v9: relative to the header's sysUpTime
            base = context.export_ms - context.uptime_ms
            if start is None and isinstance(up_start, int):
                start = base + _uptime_delta(up_start, context.uptime_ms)
            if end is None and isinstance(up_end, int):
                end = base + _uptime_delta(up_end, context.uptime_ms)
        elif system_init_ms is not None:  # IPFIX: relative to systemInitTimeMilliseconds
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
    if behind > UINT32 // 2:  # the flow time is (slightly) after the header's uptime
        behind -= UINT32
    return uptime_ms - behind


def _icmp_type_code(record: dict[str, Any], protocol: int, dst_port: int | None) -> tuple[int, int] | None:
    code = _first(record, "icmp_type_code_ipv4", "icmp_type_code_ipv6")
    if code is None:
        icmp_type = _first(record, "icmp_type_ipv4", "icmp_type_ipv6")
        if icmp_type.__class__ is int:
            icmp_code = _first(record, "icmp_code_ipv4", "icmp_code_ipv6")
            return icmp_type & 0xFF, icmp_code & 0xFF if icmp_code.__class__ is int else 0
        code = dst_port  # Cisco and others put type * 256 + code in the destination port
    if code.__class__ is not int:
        return None
    return (code >> 8) & 0xFF, code & 0xFF


def _packed(ip: str) -> bytes:
    # inet_pton is an order of magnitude cheaper than ipaddress for the Community ID's packed addresses
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def _community_digest(src_ip: str, dst_ip: str, protocol: int, src_port: int, dst_port: int) -> bytes | None:
    try:
        return community_digest_python(_packed(src_ip), _packed(dst_ip), protocol, src_port, dst_port)
    except OSError:  # not an address
        return None


def community_ids_python(
    src_ip: str,
    dst_ip: str,
    protocol: int,
    src_port: int,
    dst_port: int,
    exporter_tag: str,
) -> tuple[str, str] | None:
    """(Community ID, flow.id) of a 5-tuple in text form, None when an address is not one."""
    digest = _community_digest(src_ip, dst_ip, protocol, src_port, dst_port)
    if digest is None:
        return None
    # flow.id: the exporter's tag + the Community ID's own hash, so no second hash per record
    return "1:" + _b64encode(digest).decode("ascii"), exporter_tag + digest[:10].hex()


def community_ids(
    src_ip: str,
    dst_ip: str,
    protocol: int,
    src_port: int,
    dst_port: int,
    exporter_tag: str,
) -> tuple[str, str] | None:
    """``community_ids_python``, done by the C extension when it is there (one call instead of six)."""
    if EXTENSION is not None:
        try:
            return EXTENSION.community_pair(src_ip, dst_ip, protocol, src_port, dst_port, exporter_tag)
        except (OverflowError, TypeError, ValueError):
            pass  # ports beyond 64 bits and the like: the Python path decides
    return community_ids_python(src_ip, dst_ip, protocol, src_port, dst_port, exporter_tag)


def flow_id(exporter: str, src: Any, dst: Any, protocol: Any, src_port: Any, dst_port: Any) -> str:
    """Stable id of a flow without a Community ID (no addresses or protocol): hash of what there is."""
    return _blake2b(
        f"{exporter}|{src}|{dst}|{protocol}|{src_port}|{dst_port}".encode(), digest_size=14
    ).hexdigest()


@lru_cache(maxsize=65536)  # per datagram otherwise; bounded, exporters' addresses come from the network
def exporter_tag(exporter: str) -> str:
    """8 hex characters naming an exporter inside ``flow.id``."""
    return _blake2b(exporter.encode(), digest_size=4).hexdigest()


_blake2b = hashlib.blake2b
_b64encode = base64.b64encode
_DIRECTIONS = {0: "ingress", 1: "egress"}
_IANA_TEXT = [str(n) for n in range(256)]
EVENT_CATEGORY = ["network"]  # shared by every document: documents are written once and never mutated
EVENT_TYPE_CONNECTION = ["connection"]


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """Which of a template's fields feed each ECS field, worked out once per template layout."""

    src: str | tuple[str, ...] | None
    dst: str | tuple[str, ...] | None
    src_port: str | tuple[str, ...] | None
    dst_port: str | tuple[str, ...] | None
    fwd_bytes: str | tuple[str, ...] | None
    fwd_packets: str | tuple[str, ...] | None
    rev_bytes: str | tuple[str, ...] | None
    rev_packets: str | tuple[str, ...] | None
    biflow: bool
    times: bool
    uptime_only: bool  # start/end only from sysUpTime-relative fields (NetFlow v5, most v9): the fast path


_CANDIDATES = {
    "src": ("source_ipv4_address", "source_ipv6_address"),
    "dst": ("destination_ipv4_address", "destination_ipv6_address"),
    "src_port": ("source_transport_port", "tcp_source_port", "udp_source_port"),
    "dst_port": ("destination_transport_port", "tcp_destination_port", "udp_destination_port"),
    "fwd_bytes": ("octet_delta_count", "octet_total_count", "initiator_octets", "layer2_octet_delta_count"),
    "fwd_packets": ("packet_delta_count", "packet_total_count", "initiator_packets"),
    "rev_bytes": ("reverse_octet_delta_count", "reverse_octet_total_count", "responder_octets"),
    "rev_packets": ("reverse_packet_delta_count", "reverse_packet_total_count", "responder_packets"),
}
_TIME_NAMES = frozenset(
    {
        "flow_start_sys_up_time",
        "flow_end_sys_up_time",
        "flow_start_delta_microseconds",
        "flow_end_delta_microseconds",
        "flow_duration_milliseconds",
    }
)
RELATIVE_NAMES = _TIME_NAMES  # what _relative_times reads: without any of them it adds nothing


@lru_cache(maxsize=4096)  # bounded: layouts come from the network
def flow_plan(names: tuple[str, ...], has_time_fields: bool) -> FlowPlan:
    """The plan for records with these field names (cached: one per template layout)."""
    present = set(names)
    picked: dict[str, Any] = {}
    for key, candidates in _CANDIDATES.items():
        found = tuple(n for n in candidates if n in present)
        # one candidate (the usual case) is looked up directly; dict.get(None) gives None when there is none
        picked[key] = found if len(found) > 1 else (found[0] if found else None)
    uptime_names = {"flow_start_sys_up_time", "flow_end_sys_up_time"}
    return FlowPlan(
        **picked,
        biflow=bool(picked["rev_bytes"] or picked["rev_packets"]),
        times=has_time_fields or not _TIME_NAMES.isdisjoint(present),
        uptime_only=not has_time_fields
        and uptime_names <= present
        and not (_TIME_NAMES - uptime_names) & present,
    )


# the fields flow_document reads besides its plan's and the dateTime elements
_READ_NAMES = _TIME_NAMES | {
    "protocol_identifier",
    "flow_direction",
    "ingress_interface",
    "egress_interface",
    "icmp_type_code_ipv4",
    "icmp_type_code_ipv6",
    "icmp_type_ipv4",
    "icmp_type_ipv6",
    "icmp_code_ipv4",
    "icmp_code_ipv6",
}


def read_names(plan: FlowPlan, time_fields: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """Every field ``flow_document`` reads (or rewrites) for records of this plan: the rest go to ``netflow.*``
    as they are, so the C bulk writer copies them from the bytes without a dict."""
    names = set(_READ_NAMES)
    names.update(name for name, _ in time_fields)
    for picked in (
        plan.src,
        plan.dst,
        plan.src_port,
        plan.dst_port,
        plan.fwd_bytes,
        plan.fwd_packets,
        plan.rev_bytes,
        plan.rev_packets,
    ):
        if isinstance(picked, str):
            names.add(picked)
        elif picked:
            names.update(picked)
    return frozenset(names)


def _pick(record: dict[str, Any], names: str | tuple[str, ...] | None) -> Any:
    if names.__class__ is not tuple:
        return record.get(names)
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def flow_document(
    record: dict[str, Any],
    context: ExportContext,
    doc_id: str,
    action: str,
    sampling_rate: int,
    renormalize: bool,
    plan: FlowPlan,
    time_fields: tuple[tuple[str, str], ...] = (),
    interfaces: dict[int, str] | None = None,
    system_init_ms: int | None = None,
) -> dict[str, Any]:
    """One flow record -> ECS document; ``record`` becomes the document's ``netflow`` object.

    The reference for the C extension's ``flow_documents`` (tests/test_decode_fast.py), and the path for
    the records it declines (biflows, values beyond 64 bits) and for machines without it.
    """
    get = record.get
    # A field sent with an unusual length is kept raw as hex text: only well-formed values feed ECS fields.
    src_ip = get(plan.src) if plan.src.__class__ is not tuple else _pick(record, plan.src)
    if src_ip is not None and "." not in src_ip and ":" not in src_ip:
        src_ip = None
    dst_ip = get(plan.dst) if plan.dst.__class__ is not tuple else _pick(record, plan.dst)
    if dst_ip is not None and "." not in dst_ip and ":" not in dst_ip:
        dst_ip = None
    protocol = get("protocol_identifier")
    if protocol.__class__ is not int or protocol > 255:
        protocol = None
    src_port = get(plan.src_port) if plan.src_port.__class__ is not tuple else _pick(record, plan.src_port)
    if src_port.__class__ is not int:
        src_port = None
    dst_port = get(plan.dst_port) if plan.dst_port.__class__ is not tuple else _pick(record, plan.dst_port)
    if dst_port.__class__ is not int:
        dst_port = None
    scale = sampling_rate if renormalize else 1

    event: dict[str, Any] = {
        "kind": "event",
        "category": EVENT_CATEGORY,
        "type": EVENT_TYPE_CONNECTION,
        "action": action,
    }
    uptime = context.uptime_ms
    if plan.uptime_only and uptime is not None:
        start = get("flow_start_sys_up_time")
        end = get("flow_end_sys_up_time")
        if start.__class__ is int and end.__class__ is int:
            # how long before the export each happened, across one 32-bit wrap of the uptime either way
            start_behind = (uptime - start) & 0xFFFFFFFF
            end_behind = (uptime - end) & 0xFFFFFFFF
            start = context.export_ms - (start_behind if start_behind < 0x80000000 else start_behind - UINT32)
            end = context.export_ms - (end_behind if end_behind < 0x80000000 else end_behind - UINT32)
            event["start"] = iso_ms(start)
            event["end"] = iso_ms(end)
            if end >= start:
                event["duration"] = (end - start) * 1_000_000
    elif plan.times:
        start, end = _record_times(record, time_fields, context, system_init_ms)
        if start is not None:
            event["start"] = iso_ms(start)
        if end is not None:
            event["end"] = iso_ms(end)
            # corrupt dateTime elements can put start and end ages apart: beyond a long, leave duration out
            if start is not None and end >= start and end - start <= MAX_DURATION_MS:
                event["duration"] = (end - start) * 1_000_000

    network: dict[str, Any] = {}
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    document: dict[str, Any] = {
        "_id": doc_id,
        "@timestamp": context.timestamp,
        "event": event,
        "network": network,
    }
    if src_ip is not None:
        source["ip"] = src_ip
        network["type"] = "ipv6" if ":" in src_ip else "ipv4"
    if dst_ip is not None:
        destination["ip"] = dst_ip
        if src_ip is None:
            network["type"] = "ipv6" if ":" in dst_ip else "ipv4"
    if src_port is not None:
        source["port"] = src_port
    if dst_port is not None:
        destination["port"] = dst_port
    if protocol is not None:
        network["iana_number"] = _IANA_TEXT[protocol]
        transport = TRANSPORT_NAMES.get(protocol)
        if transport is not None:
            network["transport"] = transport
    fwd_bytes = (
        get(plan.fwd_bytes) if plan.fwd_bytes.__class__ is not tuple else _pick(record, plan.fwd_bytes)
    )
    fwd_packets = (
        get(plan.fwd_packets) if plan.fwd_packets.__class__ is not tuple else _pick(record, plan.fwd_packets)
    )
    if plan.biflow:  # RFC 5103 reverse elements, or NSEL initiator/responder counters
        rev_bytes = (
            get(plan.rev_bytes) if plan.rev_bytes.__class__ is not tuple else _pick(record, plan.rev_bytes)
        )
        rev_packets = (
            get(plan.rev_packets)
            if plan.rev_packets.__class__ is not tuple
            else _pick(record, plan.rev_packets)
        )
        if isinstance(fwd_bytes, int):
            source["bytes"] = min(fwd_bytes * scale, MAX_LONG)
        if isinstance(fwd_packets, int):
            source["packets"] = min(fwd_packets * scale, MAX_LONG)
        if isinstance(rev_bytes, int):
            destination["bytes"] = min(rev_bytes * scale, MAX_LONG)
            fwd_bytes = (fwd_bytes if isinstance(fwd_bytes, int) else 0) + rev_bytes
        if isinstance(rev_packets, int):
            destination["packets"] = min(rev_packets * scale, MAX_LONG)
            fwd_packets = (fwd_packets if isinstance(fwd_packets, int) else 0) + rev_packets
    # a biflow's totals are sums, clamped like renormalised counters: two raw u64 halves may sum past 64 bits
    keep_raw = scale == 1 and not plan.biflow
    if fwd_bytes.__class__ is int:
        network["bytes"] = fwd_bytes * scale if keep_raw else min(fwd_bytes * scale, MAX_LONG)
    if fwd_packets.__class__ is int:
        network["packets"] = fwd_packets * scale if keep_raw else min(fwd_packets * scale, MAX_LONG)
    enrichment = context.enrichment
    addresses = hook.flow_addresses(enrichment, src_ip, dst_ip) if enrichment is not None else None
    network["direction"] = hook.direction(addresses, _DIRECTIONS.get(get("flow_direction"), "unknown"))
    ids = None
    if src_ip is not None and dst_ip is not None and protocol is not None:
        if protocol == 1 or protocol == 58:
            type_code = _icmp_type_code(record, protocol, dst_port)
            if type_code is not None:
                ids = community_ids(
                    src_ip, dst_ip, protocol, type_code[0], type_code[1], context.exporter_tag
                )
        else:
            ids = community_ids(src_ip, dst_ip, protocol, src_port or 0, dst_port or 0, context.exporter_tag)
    if ids is not None:
        network["community_id"], this_flow_id = ids
    else:
        this_flow_id = flow_id(context.exporter, src_ip, dst_ip, protocol, src_port, dst_port)

    observer: dict[str, Any] = {"ip": context.exporter}
    ingress = get("ingress_interface")
    if ingress.__class__ is int:
        observer["ingress"] = {"interface": _interface(ingress, interfaces, enrichment)}
    egress = get("egress_interface")
    if egress.__class__ is int:
        observer["egress"] = {"interface": _interface(egress, interfaces, enrichment)}
    document["observer"] = observer
    flow = {"sampling_rate": sampling_rate, "id": this_flow_id}
    if enrichment is not None:
        hook.end_observer(observer, enrichment)
        if addresses is not None:
            hook.end_endpoint(source, addresses.source)
            hook.end_endpoint(destination, addresses.destination)
            hook.end_flow(flow, addresses)
    if source:
        document["source"] = source
    if destination:
        document["destination"] = destination
    document["flow"] = flow
    record["exporter"] = context.exporter_fields
    document["netflow"] = record
    if enrichment is not None:
        hook.end_document(document, enrichment, addresses)
    return document


if EXTENSION is not None:  # the pieces the C flow_document calls back into for rare cases
    EXTENSION.configure_netflow(
        _relative_times,
        iso_ms,
        flow_id,
        _DIRECTIONS,
        EVENT_CATEGORY,
        EVENT_TYPE_CONNECTION,
        MAX_LONG,
        MAX_DURATION_MS,
    )


def _interface(index: int, names: dict[int, str] | None, enrichment: Any = None) -> dict[str, Any]:
    if enrichment is not None:
        return hook.interface(index, names.get(index) if names else None, enrichment)
    if not names:
        return {"id": str(index)}
    interface: dict[str, Any] = {"id": str(index)}
    if names:
        name = names.get(index)
        if name is not None:
            interface["name"] = name
    return interface


def options_document(
    record: dict[str, Any],
    context: ExportContext,
    doc_id: str,
    time_fields: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """One options data record (sampling, interface names, exporter statistics ...) -> its own document."""
    for name, unit in time_fields:
        value = record.get(name)
        if isinstance(value, int):
            record[name] = iso_ms(time_to_ms(value, unit))
    record["exporter"] = context.exporter_fields
    document = {
        "_id": doc_id,
        "@timestamp": context.timestamp,
        "event": {"kind": "event", "category": ["network"], "type": ["info"], "action": "netflow_options"},
        "observer": {"ip": context.exporter},
        "netflow": record,
    }
    enrichment = context.enrichment
    if (
        enrichment is not None
    ):  # exporter-level additions only: an options record is no flow between addresses
        hook.end_observer(document["observer"], enrichment)
        hook.end_document(document, enrichment, None)
    return document


def sampling_rate_from_options(record: dict[str, Any]) -> int | None:
    """The 1-in-N rate an options (or flow) record announces, from whichever sampling elements it carries."""
    interval = _first(record, "sampling_interval", "sampler_random_interval", "sampling_flow_interval")
    if isinstance(interval, int) and interval > 0:
        return interval
    packet_interval = record.get("sampling_packet_interval")
    if isinstance(packet_interval, int) and packet_interval > 0:
        space = record.get("sampling_packet_space")
        if isinstance(space, int) and space > 0:  # select `interval` packets, then skip `space` (RFC 5477)
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
