"""Where the pure-Python normalisers apply the additions: the same places, in the same order, as the C writers
(``flowsink/native/enrichment.c``), so a document is the same bytes whichever wrote it.

The slots of a flow document (docs/design.md, "Where a new field goes"):

- ``network.direction``: decided before ``network`` is written (``direction``): the flow entry's, else the
  normaliser's own; never written twice;
- the end of ``observer.{ingress,egress}.interface``: ``interface`` builds the object: ``id``, then the configured
  name or else the exporter's own, then the configured ``alias``, ``speed``;
- the end of ``observer`` (``end_observer``), of ``source`` / ``destination`` (``end_endpoint``), of ``flow``
  (``end_flow``), of the document (``end_document``: ``related``, then the exporter's ``labels``, ``tags``).

Every function here is called only with an enrichment (the normalisers test for None first), so documents of a
node without an ``enrich`` section are built exactly as before.
"""

from __future__ import annotations

import socket
from typing import Any, NamedTuple

from flowsink.enrich.enricher import NONE, AddressEntry, ExporterEnrichment, FlowEntry

_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


class FlowAddresses(NamedTuple):
    """A flow's per-address additions: each end's entry (None without an address), the flow's, and related.ip."""

    source: AddressEntry | None
    destination: AddressEntry | None
    flow: FlowEntry
    related: list[str]


def _packed(ip: str | None) -> bytes | None:
    """An address as the C writers key the cache: inet_pton, the family from a ':' (their rule); None if none."""
    if ip is None:
        return None
    try:
        return _inet_pton(_AF_INET6 if ":" in ip else _AF_INET, ip)
    except (OSError, ValueError):  # not an address (a NUL in it is a ValueError)
        return None


def flow_addresses(
    enrichment: ExporterEnrichment, src_ip: str | None, dst_ip: str | None
) -> FlowAddresses | None:
    """The per-address additions of a flow whose addresses are text (source.ip, destination.ip); None when the
    exporter gets none."""
    if enrichment.addresses is None:
        return None
    return packed_addresses(enrichment, _packed(src_ip), _packed(dst_ip), src_ip, dst_ip)


def packed_addresses(
    enrichment: ExporterEnrichment,
    src: bytes | None,
    dst: bytes | None,
    src_ip: str | None = None,
    dst_ip: str | None = None,
) -> FlowAddresses | None:
    """``flow_addresses`` for addresses already packed (4 or 16 bytes, or None), with their texts when the caller
    has them (else inet_ntop's: what the decoders write)."""
    cache = enrichment.addresses
    if cache is None:
        return None
    source = cache.get(src) if src is not None else None
    destination = cache.get(dst) if dst is not None else None
    flow = cache.flow(source.klass if source else NONE, destination.klass if destination else NONE)
    # related.ip: source.ip and destination.ip as written, the same address once
    related = []
    if src is not None:
        related.append(src_ip if src_ip is not None else _text(src))
    if dst is not None and dst != src:
        related.append(dst_ip if dst_ip is not None else _text(dst))
    return FlowAddresses(source, destination, flow, related)


def _text(packed: bytes) -> str:
    return _inet_ntop(_AF_INET if len(packed) == 4 else _AF_INET6, packed)


def direction(addresses: FlowAddresses | None, own: str) -> str:
    """``network.direction``: the perimeter's view when both addresses are classed, else the normaliser's."""
    if addresses is None:
        return own
    return addresses.flow.direction or own


def interface(index: int, own_name: Any, enrichment: ExporterEnrichment | None) -> dict[str, Any]:
    """``observer.*.interface``: ``id``, the name (configured, else the exporter's own ``own_name``), the rest.

    The configured name wins: it is the operator's word, made to correct or complete what the device reports,
    and it does not come and go with the device's options records (docs/enrichment.md).
    """
    configured = (
        enrichment.interfaces.get(index) if enrichment is not None and enrichment.interfaces else None
    )
    found: dict[str, Any] = {"id": str(index)}
    if configured is None:
        if own_name is not None:
            found["name"] = own_name
        return found
    name = configured.name if configured.name is not None else own_name
    if name is not None:
        found["name"] = name
    found.update(configured.tail)
    return found


def end_observer(observer: dict[str, Any], enrichment: ExporterEnrichment) -> None:
    observer.update(enrichment.observer)


def end_endpoint(endpoint: dict[str, Any], entry: AddressEntry | None) -> None:
    """The address entry's members at the end of ``source`` / ``destination``; when the writer put an ``as`` of
    the exporter's there (sFlow's extended gateway record), the two are decided in its place: the exporter's BGP
    number stays, with the database's organization when the database gives the same number; a 0 (RFC 7607's
    reserved "no AS": the router had no BGP origin for the address) is replaced by the database's ``as``."""
    if entry is None:
        return
    own = endpoint.get("as")
    if own is None:
        endpoint.update(entry.fields)
        return
    number = own.get("number")
    if entry.as_number >= 0 and (number == 0 or number == entry.as_number):
        endpoint["as"] = entry.as_fields
    endpoint.update(entry.rest)


def end_flow(flow: dict[str, Any], addresses: FlowAddresses | None) -> None:
    if addresses is not None:
        flow.update(addresses.flow.fields)


def end_document(
    document: dict[str, Any], enrichment: ExporterEnrichment, addresses: FlowAddresses | None
) -> None:
    if addresses is not None and addresses.related:
        document["related"] = {"ip": addresses.related}
    document.update(enrichment.document)
