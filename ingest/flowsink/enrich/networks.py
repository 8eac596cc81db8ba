"""Which addresses are internal: ``enrich.internal_networks``, plus the addresses that never leave a host or a link.

The rules are those of Filebeat's netflow input (``getIPLocality`` in x-pack/filebeat/input/netflow/convert.go),
so that dashboards built on its ``source.locality`` / ``flow.locality`` read flowsink's documents the same way:

- an address inside one of the configured networks is internal;
- so is, whatever the configuration, a loopback, unspecified, limited-broadcast (255.255.255.255), link-local
  unicast or link-local / interface-local multicast address (they cannot be anyone else's);
- everything else is external, an address of the other family than every configured network included;
- an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is its IPv4 address, as Go's ``net.IP`` treats it.

Addresses arrive packed (4 or 16 bytes), as the C writers have them: no text is parsed per flow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_V6_LOOPBACK = b"\x00" * 15 + b"\x01"
_V6_UNSPECIFIED = b"\x00" * 16


def _always_local(packed: bytes) -> bool:
    """Loopback, unspecified, 255.255.255.255, link-local unicast, link-local or interface-local multicast."""
    if len(packed) == 4:
        first = packed[0]
        return (
            first == 127
            or packed == b"\x00\x00\x00\x00"
            or packed == b"\xff\xff\xff\xff"
            or packed[:2] == b"\xa9\xfe"  # 169.254.0.0/16
            or packed[:3] == b"\xe0\x00\x00"  # 224.0.0.0/24
        )
    return (
        packed == _V6_LOOPBACK
        or packed == _V6_UNSPECIFIED
        or (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80)  # fe80::/10
        or (packed[0] == 0xFF and packed[1] & 0x0F in (0x01, 0x02))  # ff01::/16, ff02::/16 (any flags)
    )


class InternalNetworks:
    """``is_internal(packed)`` for a list of CIDRs (already validated by ``EnrichSettings``)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        # (prefix bits as an int, mask) per family: a linear scan, run only on a cache miss
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for text in cidrs:
            network = ipaddress.ip_network(text.strip(), strict=True)
            table = self._v4 if network.version == 4 else self._v6
            table.append((int(network.network_address), int(network.netmask)))

    def is_internal(self, packed: bytes) -> bool:
        if len(packed) == 16 and packed[:12] == _V4_MAPPED:
            packed = packed[12:]
        if _always_local(packed):
            return True
        value = int.from_bytes(packed, "big")
        table = self._v4 if len(packed) == 4 else self._v6
        return any(value & mask == prefix for prefix, mask in table)
