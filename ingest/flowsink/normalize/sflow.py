"""sFlow samples -> ECS documents: one per flow sample, discarded packet or counter sample.

``observer.ip`` is the sFlow *agent address* written inside the datagram (the switch that sampled), which is
what sFlow users filter on; the UDP sender the datagram came from is kept in ``sflow.exporter_address`` (they
differ behind a NAT, a relay or an agent with several addresses). Flow samples are renormalised: one sampled
frame stands for ``sampling_rate`` frames, so ``network.bytes = frame_length * sampling_rate`` and
``network.packets = sampling_rate``; the raw values stay in ``sflow.frame_length`` and ``sflow.sampling_rate``.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from typing import Any

from flowsink.enrich import hook
from flowsink.normalize.common import TRANSPORT_NAMES, community_digest
from flowsink.normalize.netflow import exporter_tag
from flowsink.normalize.records import Datagram, PacketInfo

ACTION_FLOW = "sflow_flow_sample"
ACTION_COUNTER = "sflow_counter_sample"
ACTION_DISCARD = "sflow_discarded_packet"

_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_b64 = base64.urlsafe_b64encode
_b64std = base64.b64encode
_blake2b = hashlib.blake2b

# sFlow header_protocol numbers -> names (sFlow v5 spec, "header_protocol")
HEADER_PROTOCOL_NAMES = {
    1: "ethernet",
    2: "iso88024_tokenbus",
    3: "iso88025_tokenring",
    4: "fddi",
    5: "frame_relay",
    6: "x25",
    7: "ppp",
    8: "smds",
    9: "aal5",
    10: "aal5_ip",
    11: "ipv4",
    12: "ipv6",
    13: "mpls",
    14: "pos",
    15: "ieee80211_mac",
    16: "ieee80211_ampdu",
    17: "ieee80211_amsdu_subframe",
}

_second_cache: list[Any] = [None, ""]


def iso_timestamp(epoch_ns: int) -> str:
    """Nanoseconds since the epoch -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the second's text cached: one per datagram)."""
    seconds, rest = divmod(epoch_ns, 1_000_000_000)
    if _second_cache[0] != seconds:
        _second_cache[0] = seconds
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_second_cache[1]}.{rest // 1_000_000:03d}Z"


def prepare_datagram(datagram: Datagram, payload: bytes) -> None:
    """Derive once per datagram what each of its documents shares: the timestamp and the id's hash prefix.

    The id hashes the UDP sender and the whole payload (which holds the agent, sub-agent, datagram sequence
    and agent uptime), then the sample's index: a replayed datagram gets the same ids, and two different
    datagrams never share one, even from agents that reuse sequence numbers after a restart.
    """
    datagram.timestamp = iso_timestamp(datagram.arrival_ns)
    hasher = _blake2b(datagram.exporter.encode(), digest_size=15)
    hasher.update(b"|sflow|")
    hasher.update(payload)
    datagram.id_prefix = _b64(hasher.digest()).decode("ascii") + "-"
    datagram.tag = _agent_tag(datagram.agent)
    datagram.fields = {
        "agent_address": datagram.agent,
        "sub_agent_id": datagram.sub_agent,
        "datagram_sequence": datagram.sequence,
        "uptime_millis": datagram.uptime,
        "exporter_address": datagram.exporter,
    }


_TAGS: dict[str, str] = {}


def _agent_tag(agent: str) -> str:
    tag = _TAGS.get(agent)
    if tag is None:
        if len(_TAGS) >= 65536:
            _TAGS.clear()
        tag = _TAGS[agent] = exporter_tag(agent)
    return tag


def _flow_ids(
    datagram: Datagram, raw_src: bytes, raw_dst: bytes, proto: int, src_port: int, dst_port: int
) -> tuple[str | None, str | None]:
    """(Community ID, flow.id) from one SHA-1: flow.id is built as NetFlow/IPFIX documents build theirs (the
    device's tag, then the Community ID hash), so a 5-tuple seen by sFlow and NetFlow from one device shares it."""
    digest = community_digest(raw_src, raw_dst, proto, src_port, dst_port)
    if digest is None:
        return None, None
    return "1:" + _b64std(digest).decode("ascii"), datagram.tag + digest[:10].hex()


def _document_id(datagram: Datagram, index: int) -> str:
    return f"{datagram.id_prefix}{index}"


def _ip(raw: bytes) -> str:
    return _inet_ntop(_AF_INET if len(raw) == 4 else _AF_INET6, raw)


# A switch's samples carry few distinct MACs (its neighbours, gateways): their text is worth keeping.
_MAC_CACHE: dict[bytes, str] = {}
_MAC_CACHE_SIZE = 16384


def _ecs_mac(raw: bytes) -> str:
    """ECS writes MAC addresses upper-case with hyphens."""
    text = _MAC_CACHE.get(raw)
    if text is None:
        if len(_MAC_CACHE) >= _MAC_CACHE_SIZE:
            _MAC_CACHE.clear()
        text = _MAC_CACHE[raw] = raw.hex("-").upper()
    return text


def _datagram_fields(datagram: Datagram, sflow: dict[str, Any]) -> None:
    sflow.update(datagram.fields)


def _base(datagram: Datagram, index: int, action: str, kind: str, event_type: str) -> dict[str, Any]:
    ts = datagram.timestamp
    return {
        "_id": _document_id(datagram, index),
        "@timestamp": ts,
        "event": {
            "kind": kind,
            "category": ["network"],
            "type": [event_type],
            "action": action,
            "start": ts,
            "end": ts,
            "duration": 0,
        },
        "observer": {"ip": datagram.agent},
    }


def _interfaces(doc: dict[str, Any], sflow: dict[str, Any], enrichment: Any) -> None:
    observer = doc["observer"]
    if "input_interface" in sflow:
        observer["ingress"] = {"interface": _interface(sflow["input_interface"], None, enrichment)}
    if "output_interface" in sflow:
        observer["egress"] = {"interface": _interface(sflow["output_interface"], None, enrichment)}


def _interface(index: int, name: str | None, enrichment: Any) -> dict[str, Any]:
    if enrichment is not None:
        return hook.interface(index, name, enrichment)
    return {"id": str(index)} if name is None else {"id": str(index), "name": name}


def _enrich(doc: dict[str, Any], enrichment: Any, src: bytes | None, dst: bytes | None) -> None:
    """The additions at the ends of the finished document's objects (observer, source, destination, flow, the
    document), and network.direction in its place: the slots of flowsink.enrich.hook, in the C writers' order."""
    addresses = hook.packed_addresses(enrichment, src, dst)
    hook.end_observer(doc["observer"], enrichment)
    if addresses is not None:
        network = doc["network"]
        network["direction"] = hook.direction(addresses, network["direction"])
        if "source" in doc:
            hook.end_endpoint(doc["source"], addresses.source)
        if "destination" in doc:
            hook.end_endpoint(doc["destination"], addresses.destination)
        hook.end_flow(doc["flow"], addresses)
    hook.end_document(doc, enrichment, addresses)


def _direction(sflow: dict[str, Any]) -> str:
    """Whether the interface that sampled (the data source) saw the packet come in or go out."""
    source = sflow["source_id_index"]
    input_interface = sflow.get("input_interface")
    if source == input_interface:
        return "ingress"
    if input_interface is not None or source == sflow.get("output_interface"):
        return "egress"
    return "unknown"


def _packet_fields(
    datagram: Datagram, doc: dict[str, Any], sflow: dict[str, Any], info: PacketInfo | None
) -> tuple[bytes | None, bytes | None]:
    """Fill source/destination/network from the parsed header or, lacking one, the IP data record.

    Returns the packed source and destination addresses of source.ip and destination.ip (None where none).
    """
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    network: dict[str, Any] = doc["network"]
    proto = None
    raw_src = raw_dst = None
    vlans: list[int] | tuple[()] = ()
    ip_data = sflow.pop("ip_data", None)
    src_mac = sflow.pop("src_mac", None)
    dst_mac = sflow.pop("dst_mac", None)
    if info is not None:
        src_mac = info.src_mac or src_mac
        dst_mac = info.dst_mac or dst_mac
        vlans = info.vlans
        if vlans:
            sflow["vlan"] = vlans[0]
            if len(vlans) > 1:
                sflow["vlans"] = vlans
        if info.ethertype is not None:
            sflow["ethertype"] = info.ethertype
        if info.mpls_labels:
            sflow["mpls_labels"] = info.mpls_labels
        if info.ip_src is not None:
            proto = info.protocol
            raw_src, raw_dst = info.ip_src, info.ip_dst
            source["ip"] = _ip(raw_src)
            destination["ip"] = _ip(raw_dst)
            network["type"] = "ipv4" if info.ip_version == 4 else "ipv6"
            sflow["ip_tos"] = info.tos
            sflow["ip_ttl"] = info.ttl
            sflow["ip_total_length"] = info.ip_total_length
            if info.ip_version == 4:
                sflow["ip_id"] = info.ip_id
                sflow["ip_flags"] = info.ip_flags
            else:
                sflow["ipv6_flow_label"] = info.ipv6_flow_label
                if info.ipv6_extensions:
                    sflow["ipv6_extension_headers"] = info.ipv6_extensions
            if info.fragment_offset:
                sflow["fragment_offset"] = info.fragment_offset
            if info.src_port is not None:
                source["port"] = info.src_port
                destination["port"] = info.dst_port
            if info.tcp_flags is not None:
                sflow["tcp_flags"] = info.tcp_flags
            if info.icmp_type is not None:
                sflow["icmp_type"] = info.icmp_type
                sflow["icmp_code"] = info.icmp_code
        if info.truncated:
            sflow["header_truncated"] = True
    if ip_data is not None and "ip" not in source:
        length, proto, raw_src, raw_dst, src_port, dst_port, tcp_flags, tos = ip_data
        source["ip"] = _ip(raw_src)
        destination["ip"] = _ip(raw_dst)
        network["type"] = "ipv4" if len(raw_src) == 4 else "ipv6"
        sflow["ip_total_length"] = length
        sflow["ip_tos"] = tos
        if proto in (6, 17, 132):
            source["port"] = src_port
            destination["port"] = dst_port
        if proto == 6:
            sflow["tcp_flags"] = tcp_flags
        elif proto in (1, 58):
            sflow["icmp_type"] = src_port
            sflow["icmp_code"] = dst_port
    if src_mac is not None:
        source["mac"] = _ecs_mac(src_mac)
    if dst_mac is not None:
        destination["mac"] = _ecs_mac(dst_mac)
    if proto is not None:
        network["iana_number"] = str(proto)
        transport = TRANSPORT_NAMES.get(proto)
        if transport is not None:
            network["transport"] = transport
    if vlans:  # after the transport, as the common path's network object has it
        network["vlan"] = {"id": str(vlans[0])}
        if len(vlans) > 1:
            network["inner"] = {"vlan": {"id": str(vlans[1])}}
    if proto is not None and raw_src is not None:
        if proto in (1, 58):
            ports = sflow.get("icmp_type", 0), sflow.get("icmp_code", 0)
        else:
            ports = source.get("port", 0), destination.get("port", 0)
        cid, this_flow_id = _flow_ids(datagram, raw_src, raw_dst, proto, ports[0], ports[1])
        if cid is not None:
            network["community_id"] = cid
            doc["flow"]["id"] = this_flow_id
    if source:
        doc["source"] = source
    if destination:
        doc["destination"] = destination
    return raw_src, raw_dst


def _as_numbers(doc: dict[str, Any], sflow: dict[str, Any]) -> None:
    if "src_as" in sflow and "source" in doc:
        doc["source"]["as"] = {"number": sflow["src_as"]}
    if "dst_as" in sflow and "destination" in doc:
        doc["destination"]["as"] = {"number": sflow["dst_as"]}


def flow_document(
    datagram: Datagram, sflow: dict[str, Any], info: PacketInfo | None, index: int, renormalize: bool
) -> dict[str, Any]:
    """One flow sample (with its records merged into ``sflow``) -> one ECS flow document."""
    doc = _base(datagram, index, ACTION_FLOW, "event", "connection")
    rate = sflow["sampling_rate"] or 1  # 0 is not a valid rate; count the frame once rather than lose it
    frame_length = sflow.get("frame_length", 0)
    if renormalize:
        doc["network"] = {"bytes": frame_length * rate, "packets": rate, "direction": _direction(sflow)}
    else:
        doc["network"] = {"bytes": frame_length, "packets": 1, "direction": _direction(sflow)}
    doc["flow"] = {"sampling_rate": rate}
    if "header_protocol" in sflow:
        sflow["header_protocol_name"] = HEADER_PROTOCOL_NAMES.get(sflow["header_protocol"], "unknown")
    src, dst = _packet_fields(datagram, doc, sflow, info)
    _as_numbers(doc, sflow)
    enrichment = datagram.enrichment
    _interfaces(doc, sflow, enrichment)
    doc["sflow"] = _flow_sflow_order(sflow, datagram.fields)
    if enrichment is not None:
        _enrich(doc, enrichment, src, dst)
    return doc


# The key order of a flow document's sflow object, whichever path built it: these keys first, in this order, then
# other records' keys as decoded (router, gateway, ...), the datagram's fields, and last the VLAN tags. It is the
# order common_flow_document and native/sflow.c write, so one C writer serves common and less common samples alike
# (key order is no contract, but C and Python documents are compared byte for byte).
_FLOW_SFLOW_ORDER = (
    "sample_sequence",
    "source_id_type",
    "source_id_index",
    "sampling_rate",
    "sample_pool",
    "drops",
    "input_interface",
    "input_discard_reason",
    "input_interface_count",
    "input_interface_format",
    "input_interface_value",
    "output_interface",
    "output_discard_reason",
    "output_interface_count",
    "output_interface_format",
    "output_interface_value",
    "expanded",
    "header_protocol",
    "frame_length",
    "stripped",
    "header_length",
    "header_protocol_name",
    "ethertype",
    "ip_tos",
    "ip_ttl",
    "ip_total_length",
    "src_vlan",
    "src_priority",
    "dst_vlan",
    "dst_priority",
    "ip_id",
    "ip_flags",
    "ipv6_flow_label",
    "ipv6_extension_headers",
    "fragment_offset",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    "mpls_labels",
    "header_truncated",
)
_LAST = frozenset(("vlan", "vlans"))


def _flow_sflow_order(sflow: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: sflow[key] for key in _FLOW_SFLOW_ORDER if key in sflow}
    if len(ordered) < len(sflow):
        for key, value in sflow.items():
            if key not in ordered and key not in _LAST:
                ordered[key] = value
    ordered.update(fields)
    for key in ("vlan", "vlans"):
        if key in sflow:
            ordered[key] = sflow[key]
    return ordered


def discard_document(
    datagram: Datagram, sflow: dict[str, Any], info: PacketInfo | None, index: int
) -> dict[str, Any]:
    """A discarded-packet event (sFlow drop notification): the dropped frame's fields and the drop reason.

    Drop events are not sampled at a rate (agents rate-limit them instead), so the frame counts once.
    """
    doc = _base(datagram, index, ACTION_DISCARD, "event", "denied")
    doc["network"] = {"bytes": sflow.get("frame_length", 0), "packets": 1, "direction": _direction(sflow)}
    doc["flow"] = {"sampling_rate": 1}
    src, dst = _packet_fields(datagram, doc, sflow, info)
    enrichment = datagram.enrichment
    _interfaces(doc, sflow, enrichment)
    _datagram_fields(datagram, sflow)
    doc["event"]["reason"] = f"sflow drop reason {sflow['drop_reason']}"
    doc["sflow"] = sflow
    if enrichment is not None:
        _enrich(doc, enrichment, src, dst)
    return doc


def counter_document(datagram: Datagram, sflow: dict[str, Any], index: int) -> dict[str, Any]:
    """One counter sample (all its records as groups under ``sflow.counters``) -> one metric document."""
    doc = _base(datagram, index, ACTION_COUNTER, "metric", "info")
    counters = {}
    for group in (
        "interface",
        "ethernet",
        "token_ring",
        "vg",
        "vlan",
        "lag",
        "processor",
        "host",
        "host_adapters",
        "host_parent",
        "host_cpu",
        "host_memory",
        "host_disk_io",
        "host_net_io",
        "mib2_ip_group",
        "mib2_icmp_group",
        "mib2_tcp_group",
        "mib2_udp_group",
        "virt_node",
        "virt_cpu",
        "virt_memory",
        "virt_disk_io",
        "virt_net_io",
        "port_name",
    ):
        if group in sflow:
            counters[group] = sflow.pop(group)
    interface = counters.get("interface")
    enrichment = datagram.enrichment
    if interface is not None:
        doc["observer"]["ingress"] = {
            "interface": _interface(interface["if_index"], counters.get("port_name"), enrichment)
        }
    sflow["counters"] = counters
    _datagram_fields(datagram, sflow)
    doc["sflow"] = sflow
    if enrichment is not None:  # exporter-level additions only: a counter sample is no flow between addresses
        hook.end_observer(doc["observer"], enrichment)
        hook.end_document(doc, enrichment, None)
    return doc


def common_flow_document(
    datagram: Datagram, values: tuple[Any, ...], index: int, renormalize: bool
) -> dict[str, Any]:
    """``flow_document`` for what ``decode.sflow._common_flow_sample`` parsed, built in one go.

    It must equal what the general path builds for the same sample (tests decode every input both ways).
    """
    (
        sequence,
        source_id,
        rate,
        pool,
        drops,
        input_if,
        output_if,
        frame_length,
        stripped,
        header_length,
        switch,
        src_mac,
        dst_mac,
        vlan,
        ethertype,
        tos,
        ttl,
        total_length,
        extra,
        proto,
        raw_src,
        raw_dst,
        src_port,
        dst_port,
        tcp_flags,
    ) = values
    source_index = source_id & 0xFFFFFF
    effective_rate = rate or 1
    family = _AF_INET if ethertype == 0x0800 else _AF_INET6
    src_ip = _inet_ntop(family, raw_src)
    dst_ip = _inet_ntop(family, raw_dst)
    ts = datagram.timestamp
    sflow: dict[str, Any] = {
        "sample_sequence": sequence,
        "source_id_type": source_id >> 24,
        "source_id_index": source_index,
        "sampling_rate": rate,
        "sample_pool": pool,
        "drops": drops,
        "input_interface": input_if,
        "output_interface": output_if,
        "header_protocol": 1,
        "frame_length": frame_length,
        "stripped": stripped,
        "header_length": header_length,
        "header_protocol_name": "ethernet",
        "ethertype": ethertype,
        "ip_tos": tos,
        "ip_ttl": ttl,
        "ip_total_length": total_length,
    }
    if switch is not None:
        sflow["src_vlan"], sflow["src_priority"], sflow["dst_vlan"], sflow["dst_priority"] = switch
    if ethertype == 0x0800:
        sflow["ip_id"], sflow["ip_flags"] = extra
        network_type = "ipv4"
    else:
        sflow["ipv6_flow_label"] = extra
        network_type = "ipv6"
    if tcp_flags is not None:
        sflow["tcp_flags"] = tcp_flags
    sflow.update(datagram.fields)
    network = {
        "bytes": frame_length * effective_rate if renormalize else frame_length,
        "packets": effective_rate if renormalize else 1,
        "direction": "ingress" if source_index == input_if else "egress",
        "type": network_type,
        "iana_number": "6" if proto == 6 else "17",
        "transport": "tcp" if proto == 6 else "udp",
    }
    if vlan is not None:
        sflow["vlan"] = vlan
        network["vlan"] = {"id": str(vlan)}
    cid, this_flow_id = _flow_ids(datagram, raw_src, raw_dst, proto, src_port, dst_port)
    if cid is not None:
        network["community_id"] = cid
    agent = datagram.agent
    enrichment = datagram.enrichment
    if enrichment is not None:
        ingress = {"interface": hook.interface(input_if, None, enrichment)}
        egress = {"interface": hook.interface(output_if, None, enrichment)}
    else:
        ingress = {"interface": {"id": str(input_if)}}
        egress = {"interface": {"id": str(output_if)}}
    doc = {
        "_id": f"{datagram.id_prefix}{index}",
        "@timestamp": ts,
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection"],
            "action": ACTION_FLOW,
            "start": ts,
            "end": ts,
            "duration": 0,
        },
        "observer": {"ip": agent, "ingress": ingress, "egress": egress},
        "network": network,
        "flow": {"sampling_rate": effective_rate, "id": this_flow_id}
        if this_flow_id
        else {"sampling_rate": effective_rate},
        "source": {"ip": src_ip, "port": src_port, "mac": _MAC_CACHE.get(src_mac) or _ecs_mac(src_mac)},
        "destination": {"ip": dst_ip, "port": dst_port, "mac": _MAC_CACHE.get(dst_mac) or _ecs_mac(dst_mac)},
        "sflow": sflow,
    }
    if enrichment is not None:
        _enrich(doc, enrichment, raw_src, raw_dst)
    return doc
