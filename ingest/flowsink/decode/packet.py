"""Parse the first bytes of a sampled packet: Ethernet, 802.1Q/QinQ, IPv4, IPv6 (+ extension headers), L4.

sFlow exporters send the leading bytes of each sampled frame (usually 128), so every parser here stops quietly
where the bytes run out and reports how far it got (``truncated``) instead of failing. Hand-written rather than
through dpkt or scapy: those build an object per layer and raise on short input, which costs tens of
microseconds per sample; here one pass with precompiled ``struct`` formats fills one slotted object
(``normalize.records.PacketInfo``, the type the normaliser reads).
"""

from __future__ import annotations

import struct

from flowsink.normalize.records import PacketInfo

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
# 802.1Q, 802.1ad (QinQ service tag) and the pre-standard 0x9100 QinQ tag
VLAN_ETHERTYPES = frozenset((0x8100, 0x88A8, 0x9100))
MPLS_ETHERTYPES = frozenset((0x8847, 0x8848))

# sFlow header_protocol values (sFlow v5 spec, "header_protocol") that this module can parse
HEADER_PROTOCOL_ETHERNET = 1
HEADER_PROTOCOL_IPV4 = 11
HEADER_PROTOCOL_IPV6 = 12

# IPv6 extension headers walked to reach the transport header: hop-by-hop, routing, destination options,
# mobility, HIP, shim6. Fragment (44) and AH (51) have their own length rules below; ESP (50) hides the rest.
_IPV6_GENERIC_EXTENSIONS = frozenset((0, 43, 60, 135, 139, 140))
_MAX_VLAN_TAGS = 8
_MAX_MPLS_LABELS = 16
_MAX_IPV6_EXTENSIONS = 16

_ETH = struct.Struct("!6s6sH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_TCP_FLAGS = struct.Struct("!H")


def parse_header(header_protocol: int, data: bytes) -> PacketInfo | None:
    """Parse an sFlow sampled header by its ``header_protocol``; ``None`` for protocols not parsed here."""
    if header_protocol == HEADER_PROTOCOL_ETHERNET:
        return parse_ethernet(data)
    if header_protocol == HEADER_PROTOCOL_IPV4:
        info = PacketInfo()
        parse_ipv4(data, 0, info)
        return info
    if header_protocol == HEADER_PROTOCOL_IPV6:
        info = PacketInfo()
        parse_ipv6(data, 0, info)
        return info
    return None


def parse_ethernet(data: bytes) -> PacketInfo:
    """Ethernet II frame (with any number of VLAN tags, up to a bound, and MPLS) down to the transport header."""
    info = PacketInfo()
    if len(data) < 14:
        info.truncated = True
        return info
    info.dst_mac, info.src_mac, ethertype = _ETH.unpack_from(data, 0)
    offset = 14
    if ethertype in VLAN_ETHERTYPES:
        vlans: list[int] = []
        priorities: list[int] = []
        info.vlans, info.vlan_priorities = vlans, priorities
        while ethertype in VLAN_ETHERTYPES:
            if len(data) < offset + 4 or len(vlans) >= _MAX_VLAN_TAGS:
                info.ethertype = ethertype
                info.truncated = True
                return info
            tci, ethertype = _PORTS.unpack_from(data, offset)
            vlans.append(tci & 0x0FFF)
            priorities.append(tci >> 13)
            offset += 4
    info.ethertype = ethertype
    if ethertype in MPLS_ETHERTYPES:
        offset = _parse_mpls(data, offset, info)
        if offset < 0:
            return info
        # after the bottom of the stack: guess IPv4/IPv6 from the version nibble, as Wireshark does
        if offset < len(data):
            version = data[offset] >> 4
            ethertype = ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6 if version == 6 else 0
    if ethertype == ETHERTYPE_IPV4:
        parse_ipv4(data, offset, info)
    elif ethertype == ETHERTYPE_IPV6:
        parse_ipv6(data, offset, info)
    return info


def _parse_mpls(data: bytes, offset: int, info: PacketInfo) -> int:
    """Walk the MPLS label stack; the offset after it, or -1 when the bytes end first."""
    labels: list[int] = []
    info.mpls_labels = labels
    for _ in range(_MAX_MPLS_LABELS):
        if len(data) < offset + 4:
            break
        (entry,) = _U32.unpack_from(data, offset)
        labels.append(entry >> 12)
        offset += 4
        if entry & 0x100:  # bottom of stack
            return offset
    info.truncated = True
    return -1


def parse_ipv4(data: bytes, offset: int, info: PacketInfo) -> None:
    """IPv4 header at ``offset``; continues into TCP/UDP/ICMP unless this is a non-first fragment."""
    if len(data) < offset + 20:
        info.truncated = True
        return
    (ver_ihl, tos, total_length, ip_id, flags_frag, ttl, proto, _csum, src, dst) = _IPV4.unpack_from(
        data, offset
    )
    if ver_ihl >> 4 != 4:
        info.truncated = True
        return
    info.ip_version = 4
    info.tos = tos
    info.ip_total_length = total_length
    info.ip_id = ip_id
    info.ip_flags = flags_frag >> 13
    info.fragment_offset = flags_frag & 0x1FFF
    info.ttl = ttl
    info.protocol = proto
    info.ip_src = src
    info.ip_dst = dst
    header_length = (ver_ihl & 0x0F) * 4
    if header_length < 20:
        info.truncated = True
        return
    if info.fragment_offset:
        return  # only the first fragment carries the transport header
    parse_transport(proto, data, offset + header_length, info)


def parse_ipv6(data: bytes, offset: int, info: PacketInfo) -> None:
    """IPv6 header at ``offset``, then its extension headers (bounded), then the transport header."""
    if len(data) < offset + 40:
        info.truncated = True
        return
    first_word, payload_length, next_header, hop_limit, src, dst = _IPV6.unpack_from(data, offset)
    if first_word >> 28 != 6:
        info.truncated = True
        return
    info.ip_version = 6
    info.tos = (first_word >> 20) & 0xFF
    info.ipv6_flow_label = first_word & 0xFFFFF
    info.ip_total_length = payload_length + 40
    info.ttl = hop_limit
    info.ip_src = src
    info.ip_dst = dst
    offset += 40
    first_fragment = True
    extensions: list[int] = []
    for _ in range(_MAX_IPV6_EXTENSIONS):
        if next_header not in _IPV6_GENERIC_EXTENSIONS and next_header not in (44, 51):
            break
        if len(data) < offset + 8:  # every extension header is at least 8 bytes
            info.protocol = next_header
            info.truncated = True
            return
        if next_header == 44:  # fragment header: fixed 8 bytes
            length = 8
            (frag_field,) = _U16.unpack_from(data, offset + 2)
            info.fragment_offset = frag_field >> 3
            first_fragment = info.fragment_offset == 0
        elif next_header == 51:  # AH counts its length in 4-byte words, minus 2
            length = (data[offset + 1] + 2) * 4
        else:
            length = 8 + data[offset + 1] * 8
        extensions.append(next_header)
        info.ipv6_extensions = extensions
        next_header = data[offset]
        offset += length
    info.protocol = next_header
    if first_fragment:
        parse_transport(next_header, data, offset, info)


def parse_transport(proto: int, data: bytes, offset: int, info: PacketInfo) -> None:
    """TCP/UDP/SCTP ports (+ TCP flags, UDP length) or ICMP/ICMPv6 type and code at ``offset``."""
    if proto in (6, 17, 132):
        if len(data) < offset + 4:
            info.truncated = True
            return
        info.src_port, info.dst_port = _PORTS.unpack_from(data, offset)
        if proto == 6:
            if len(data) < offset + 14:
                info.truncated = True
                return
            # 9 flag bits: NS sits in the low bit of the data-offset byte
            (flags,) = _TCP_FLAGS.unpack_from(data, offset + 12)
            info.tcp_flags = flags & 0x01FF
        elif proto == 17:
            if len(data) < offset + 6:
                info.truncated = True
                return
            (info.udp_length,) = _U16.unpack_from(data, offset + 4)
    elif proto in (1, 58):
        if len(data) < offset + 2:
            info.truncated = True
            return
        info.icmp_type = data[offset]
        info.icmp_code = data[offset + 1]


def parse_tcp(data: bytes) -> PacketInfo:
    """A bare TCP header (ports, flags)."""
    info = PacketInfo()
    info.protocol = 6
    parse_transport(6, data, 0, info)
    return info


def parse_udp(data: bytes) -> PacketInfo:
    """A bare UDP header (ports, length)."""
    info = PacketInfo()
    info.protocol = 17
    parse_transport(17, data, 0, info)
    return info
