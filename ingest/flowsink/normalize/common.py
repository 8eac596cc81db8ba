"""ECS helpers every protocol's normaliser shares: transport names, network type, Community ID."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
import struct

from flowsink.native import EXTENSION

# IANA protocol numbers -> ECS network.transport (lower-case keyword, as Filebeat writes it)
TRANSPORT_NAMES: dict[int, str] = {
    1: "icmp",
    2: "igmp",
    4: "ipv4",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    88: "eigrp",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
}


def transport_name(iana_number: int | None) -> str | None:
    if iana_number is None:
        return None
    return TRANSPORT_NAMES.get(iana_number)


def network_type(ip: str | None) -> str | None:
    """``ipv4`` or ``ipv6`` from an address in text form."""
    if not ip:
        return None
    return "ipv6" if ":" in ip else "ipv4"


# ICMP type -> the type that answers it, so both directions of an exchange get one Community ID (spec v1).
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    144: 145,
    145: 144,
}


def community_id(
    src_ip: str, dst_ip: str, proto: int, src_port: int = 0, dst_port: int = 0, seed: int = 0
) -> str | None:
    """Community ID v1 (https://github.com/corelight/community-id-spec) of a flow's 5-tuple.

    Written here because the reference Python package pulls no weight beyond these lines and is slow per call;
    for ICMP/ICMPv6 pass the type as ``src_port`` and the code as ``dst_port``, as the spec does.
    """
    try:
        src = ipaddress.ip_address(src_ip).packed
        dst = ipaddress.ip_address(dst_ip).packed
    except ValueError:
        return None
    return community_id_packed(src, dst, proto, src_port, dst_port, seed)


def community_id_packed(
    src: bytes, dst: bytes, proto: int, src_port: int = 0, dst_port: int = 0, seed: int = 0
) -> str | None:
    """``community_id`` from addresses already in network byte order (4 or 16 bytes): no text to parse."""
    digest = community_digest(src, dst, proto, src_port, dst_port, seed)
    return None if digest is None else "1:" + base64.b64encode(digest).decode("ascii")


def community_digest(
    src: bytes, dst: bytes, proto: int, src_port: int = 0, dst_port: int = 0, seed: int = 0
) -> bytes | None:
    """The SHA-1 digest behind a Community ID (callers that also want a flow hash reuse it)."""
    if EXTENSION is not None:
        try:
            return EXTENSION.community_digest(src, dst, proto, src_port, dst_port, seed)
        except (OverflowError, TypeError, ValueError):
            pass  # values the C path does not take (huge ports, odd types): the Python path decides
    return community_digest_python(src, dst, proto, src_port, dst_port, seed)


def community_digest_python(
    src: bytes, dst: bytes, proto: int, src_port: int = 0, dst_port: int = 0, seed: int = 0
) -> bytes | None:
    """``community_digest`` in pure Python (the reference the C extension is tested against)."""
    if len(src) != len(dst):
        return None
    one_way = False
    if proto in (1, 58):
        icmp_type, icmp_code = src_port, dst_port
        pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
        if icmp_type in pairs:
            src_port, dst_port = icmp_type, pairs[icmp_type]
        else:
            src_port, dst_port, one_way = icmp_type, icmp_code, True
    if not one_way and (src, src_port) > (dst, dst_port):
        src, dst, src_port, dst_port = dst, src, dst_port, src_port
    if proto in (1, 6, 17, 58, 132):
        tail = struct.pack("!BBHH", proto, 0, src_port & 0xFFFF, dst_port & 0xFFFF)
    else:
        tail = struct.pack("!BB", proto, 0)
    return hashlib.sha1(struct.pack("!H", seed) + src + dst + tail).digest()


def ip_text(raw: bytes) -> str:
    """4 or 16 bytes -> text form (inet_ntop is several times faster than ipaddress)."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
