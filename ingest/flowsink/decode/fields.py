"""IPFIX information elements (IANA registry, shipped as ``flowsink/data/ipfix_fields.csv``) -> names and types.

NetFlow v9 field types 1-127 are the same numbers as IPFIX elements (RFC 3954 section 8 / RFC 5102), so one
table serves both. Names are the registry's camelCase turned into snake_case (``octetDeltaCount`` ->
``octet_delta_count``), which is what documents carry under ``netflow.*``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

# RFC 5103: elements with this private enterprise number are the reverse direction of the IANA element of the
# same id (reverseOctetDeltaCount = PEN 29305, id 1).
REVERSE_PEN = 29305

# Vendor elements seen in the wild without a PEN (NetFlow v9 ids above 32767 from Cisco ASA / NSEL);
# kept small on purpose: anything else stays under its stable fallback name.
NETFLOW_V9_VENDOR_FIELDS: dict[int, tuple[str, str]] = {
    33000: ("ingress_acl_id", "octetArray"),
    33001: ("egress_acl_id", "octetArray"),
    33002: ("fw_ext_event", "unsigned16"),
    40000: ("username", "string"),
    40001: ("xlate_src_addr_ipv4", "ipv4Address"),
    40002: ("xlate_dst_addr_ipv4", "ipv4Address"),
    40003: ("xlate_src_port", "unsigned16"),
    40004: ("xlate_dst_port", "unsigned16"),
    40005: ("fw_event", "unsigned8"),
}

# NetFlow v9 options scope types (RFC 3954 section 6.1): a namespace of their own, not IPFIX elements.
NETFLOW_V9_SCOPE_NAMES: dict[int, str] = {
    1: "scope_system",
    2: "scope_interface",
    3: "scope_line_card",
    4: "scope_cache",
    5: "scope_template",
}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``sourceIPv4Address`` -> ``source_ipv4_address``; ``minimumTTL`` -> ``minimum_ttl``."""
    name = name.replace("IPv4", "Ipv4").replace("IPv6", "Ipv6")
    return _CAMEL_BOUNDARY.sub("_", name).lower()


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One information element: its snake_case document name and IANA abstract data type."""

    name: str
    data_type: str


@cache
def iana_fields() -> dict[int, FieldInfo]:
    """The IANA registry, element id -> FieldInfo (read once from the packaged CSV)."""
    table: dict[int, FieldInfo] = {}
    text = resources.files("flowsink.data").joinpath("ipfix_fields.csv").read_text(encoding="utf-8")
    lines = (line for line in text.splitlines() if line and not line.startswith("#"))
    for row in csv.DictReader(lines):
        table[int(row["element_id"])] = FieldInfo(snake_case(row["name"]), row["data_type"])
    return table


@lru_cache(maxsize=65536)  # bounded: enterprise numbers come from the network
def field_info(element_id: int, enterprise: int = 0, netflow_v9: bool = False) -> FieldInfo:
    """Name and type of an element; unknown ones get a stable name and are decoded as raw octets.

    Unknown IANA ids become ``field_<id>``, enterprise ones ``enterprise_<pen>_<id>`` (reverse-direction
    elements of RFC 5103 become ``reverse_<name>``).
    """
    if enterprise == REVERSE_PEN:
        forward = iana_fields().get(element_id)
        if forward is not None:
            return FieldInfo("reverse_" + forward.name, forward.data_type)
        return FieldInfo(f"reverse_field_{element_id}", "octetArray")
    if enterprise:
        return FieldInfo(f"enterprise_{enterprise}_{element_id}", "octetArray")
    known = iana_fields().get(element_id)
    if known is not None:
        return known
    if netflow_v9 and element_id in NETFLOW_V9_VENDOR_FIELDS:
        name, data_type = NETFLOW_V9_VENDOR_FIELDS[element_id]
        return FieldInfo(name, data_type)
    return FieldInfo(f"field_{element_id}", "octetArray")
