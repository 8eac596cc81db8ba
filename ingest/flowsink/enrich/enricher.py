"""The ``Enricher``: every addition to a flow document rendered once, in the two forms the writers need.

A document has several writers: the pure-Python normalisers (dicts, encoded by ``flowsink.bulk``), the C dict
builders and the C bulk-line writers (``flowsink.native``). Each addition is made here once as a dict (what the
Python path and the C dict builders put in the document) and, from that dict with orjson, as the JSON fragment
the C bulk writers copy (``render``): the two forms cannot disagree, and no writer formats an added value itself.

What is added, and where (docs/enrichment.md):

- per exporter (``enrich.exporters``, looked up once per datagram): ``observer.name`` at the end of ``observer``;
  ``labels`` and ``tags`` at the end of the document; per ifIndex ``name``, ``alias``, ``speed`` in
  ``observer.{ingress,egress}.interface`` (a configured name replaces the one the exporter's options records
  give, in its place after ``id``; alias and speed follow);
- per address (``enrich.internal_networks``; GeoIP and AS later, in the same entries): ``locality`` at the end of
  ``source`` / ``destination``, through a bounded cache keyed by the packed address (``AddressCache``: in C when
  the extension is there, so a cached address costs no Python call);
- per flow, from the two addresses' classes (a table of nine entries made here): ``network.direction`` (replacing
  the normaliser's value in its place), ``locality`` at the end of ``flow``, and ``related.ip`` (the flow's
  addresses, once each) at the end of the document, before ``labels`` and ``tags``.

These NamedTuples are what the C writers read (as tuples, by position): change a field only together with
``native/enrichment.c``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from flowsink.enrich.networks import InternalNetworks
from flowsink.enrich.settings import EnrichSettings
from flowsink.native import EXTENSION

# an address's class, as the flow table is indexed: none (no address), internal, external
NONE, INTERNAL, EXTERNAL = 0, 1, 2
LOCALITY = {INTERNAL: "internal", EXTERNAL: "external"}


def render(fields: dict[str, Any]) -> bytes:
    """The members of ``fields`` as JSON that follows an object's last member: ``,"a":1,"b":[..]`` (b"" for none).

    orjson writes them exactly as it writes the same dict inside a document (``flowsink.bulk``), so a fragment
    copied by a C writer equals what the Python path's document serialises to.
    """
    return b"," + orjson.dumps(fields)[1:-1] if fields else b""


class InterfaceEnrichment(NamedTuple):
    """A configured ifIndex: its name (None: the exporter's own, if any, stays) and what follows the name."""

    name: str | None
    name_json: bytes  # render({"name": name}), or b""
    tail: dict[str, Any]  # alias, speed
    tail_json: bytes


class AddressEntry(NamedTuple):
    """What one address adds at the end of ``source`` or ``destination``; one object per distinct result."""

    klass: int  # INTERNAL or EXTERNAL
    fields: dict[str, Any]
    json: bytes


class FlowEntry(NamedTuple):
    """What a flow adds from its addresses' classes: ``network.direction`` (None: the normaliser's stays) and the
    members at the end of ``flow``."""

    direction: str | None
    direction_json: bytes  # the quoted value, or b""
    fields: dict[str, Any]
    json: bytes


class ExporterEnrichment(NamedTuple):
    """Everything one exporter's documents get: handed to the writers once per datagram."""

    observer: dict[str, Any]  # at the end of observer
    observer_json: bytes
    document: dict[str, Any]  # at the end of the document (after related)
    document_json: bytes
    interfaces: dict[int, InterfaceEnrichment]
    addresses: Any  # an AddressCache, or None: no per-address additions


def flow_table() -> tuple[FlowEntry, ...]:
    """The flow entry of every (source class, destination class), at ``3 * source + destination``.

    ``network.direction`` as ECS defines it from the perimeter's point of view (the rules of Elasticsearch's
    network_direction processor and Beats' add_network_direction): internal to internal ``internal``, internal
    to external ``outbound``, external to internal ``inbound``, external to external ``external``; a flow with
    one address keeps the normaliser's direction. ``flow.locality`` is internal when every address the flow has
    is internal (Filebeat's rule), and absent without any.
    """
    names = {
        (INTERNAL, INTERNAL): "internal",
        (INTERNAL, EXTERNAL): "outbound",
        (EXTERNAL, INTERNAL): "inbound",
        (EXTERNAL, EXTERNAL): "external",
    }
    table = []
    for source in (NONE, INTERNAL, EXTERNAL):
        for destination in (NONE, INTERNAL, EXTERNAL):
            present = [c for c in (source, destination) if c != NONE]
            fields = (
                {"locality": "internal" if all(c == INTERNAL for c in present) else "external"}
                if present
                else {}
            )
            direction = names.get((source, destination))
            table.append(
                FlowEntry(direction, orjson.dumps(direction) if direction else b"", fields, render(fields))
            )
    return tuple(table)


class PythonAddressCache:
    """``native.AddressCache`` for the pure-Python path: the same entries from the same lookup, in a dict that is
    emptied when full (which entries a bounded cache keeps changes its speed, never a document)."""

    def __init__(self, lookup: Callable[[bytes], AddressEntry], flows: tuple[FlowEntry, ...], capacity: int):
        self._lookup = lookup
        self._flows = flows
        self._capacity = capacity
        self._entries: dict[bytes, AddressEntry] = {}
        self.hits = self.misses = self.evictions = 0

    def get(self, packed: bytes) -> AddressEntry:
        entry = self._entries.get(packed)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        if len(self._entries) >= self._capacity:
            self.evictions += len(self._entries)
            self._entries.clear()
        entry = self._entries[packed] = self._lookup(packed)
        return entry

    def flow(self, source: int, destination: int) -> FlowEntry:
        return self._flows[3 * source + destination]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Enricher:
    """The additions of an ``enrich`` section, rendered: built once per pipeline worker (again on SIGHUP, which so
    empties its caches), then asked once per datagram for the exporter's ``ExporterEnrichment``."""

    def __init__(self, settings: EnrichSettings) -> None:
        self.settings = settings
        self._networks = InternalNetworks(settings.internal_networks) if settings.internal_networks else None
        # one object per distinct result, shared by every address that has it (a cache slot holds a reference)
        self._by_class = {klass: _entry(klass) for klass in (INTERNAL, EXTERNAL)}
        self.addresses: Any = None
        if self._networks is not None:
            cache_class = EXTENSION.AddressCache if EXTENSION is not None else PythonAddressCache
            self.addresses = cache_class(self.lookup, flow_table(), settings.address_cache_size)
        self._exporters = {
            ipaddress.ip_address(str(address)).compressed: self._exporter(entry)
            for address, entry in settings.exporters.items()
        }
        # unconfigured exporters get the per-address additions only (or nothing at all)
        self._default = self._exporter({}) if self.addresses is not None else None

    def _exporter(self, entry: dict[str, Any]) -> ExporterEnrichment:
        observer = {"name": entry["name"]} if entry.get("name") else {}
        document: dict[str, Any] = {}
        if entry.get("labels"):
            # ECS labels are keywords: a number configured is written as the text Elasticsearch would index
            document["labels"] = {name: str(value) for name, value in entry["labels"].items()}
        if entry.get("tags"):
            document["tags"] = list(entry["tags"])
        interfaces = {}
        for index, interface in (entry.get("interfaces") or {}).items():
            name = interface.get("name")
            tail = {key: interface[key] for key in ("alias", "speed") if key in interface}
            interfaces[int(index)] = InterfaceEnrichment(
                name, render({"name": name}) if name is not None else b"", tail, render(tail)
            )
        return ExporterEnrichment(
            observer, render(observer), document, render(document), interfaces, self.addresses
        )

    def exporter(self, *addresses: str) -> ExporterEnrichment | None:
        """The additions of the first of ``addresses`` that is configured, else those every exporter gets (None:
        nothing is added). sFlow asks with the agent address, then the datagram's sender."""
        for address in addresses:
            found = self._exporters.get(address)
            if found is not None:
                return found
        return self._default

    def lookup(self, packed: bytes) -> AddressEntry:
        """An address's entry, computed: what the cache calls on a miss. GeoIP and AS join here: their results
        then make more distinct entries, each made once and shared."""
        networks = self._networks
        return self._by_class[INTERNAL if networks is not None and networks.is_internal(packed) else EXTERNAL]


def _entry(klass: int) -> AddressEntry:
    fields = {"locality": LOCALITY[klass]}
    return AddressEntry(klass, fields, render(fields))


def build_enricher(settings: EnrichSettings) -> Enricher | None:
    """The enricher of a section, or None when it adds nothing (documents then stay exactly as without it)."""
    return Enricher(settings) if settings.configured() else None
