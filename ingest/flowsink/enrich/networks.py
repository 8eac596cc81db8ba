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
_from_bytes = int.from_bytes


def _always_local_v4(value: int) -> bool:
    """Loopback 127/8, 0.0.0.0, 255.255.255.255, link-local 169.254/16, link-local multicast 224.0.0/24."""
    return (
        value >> 24 == 127
        or value == 0
        or value == 0xFFFFFFFF
        or value >> 16 == 0xA9FE
        or value >> 8 == 0xE00000
    )


def _always_local_v6(value: int) -> bool:
    """::1, ::, link-local fe80::/10, interface- and link-local multicast ff01::/16 and ff02::/16 (any flags)."""
    return value <= 1 or value >> 118 == 0x3FA or (value >> 120 == 0xFF and (value >> 112) & 0x0F in (1, 2))


class InternalNetworks:
    """``is_internal(packed)`` for a list of CIDRs (already validated by ``EnrichSettings``).

    Runs on every miss of the address cache: integers and a linear scan of the networks, no objects made.
    """

    def __init__(self, cidrs: Iterable[str]) -> None:
        # (prefix bits as an int, mask) per family
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for text in cidrs:
            network = ipaddress.ip_network(text.strip(), strict=True)
            table = self._v4 if network.version == 4 else self._v6
            table.append((int(network.network_address), int(network.netmask)))

    def is_internal(self, packed: bytes) -> bool:
        if len(packed) == 16 and packed.startswith(_V4_MAPPED):
            packed = packed[12:]
        value = _from_bytes(packed, "big")
        if len(packed) == 4:
            for prefix, mask in self._v4:
                if value & mask == prefix:
                    return True
            return _always_local_v4(value)
        for prefix, mask in self._v6:
            if value & mask == prefix:
                return True
        return _always_local_v6(value)
