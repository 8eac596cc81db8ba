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
- per address (``enrich.internal_networks``, ``enrich.geoip_databases``): ``as``, ``geo`` and ``locality`` at the
  end of ``source`` / ``destination`` (an sFlow gateway's own ``as`` decided in its place), through a bounded cache
  keyed by the packed address (``AddressCache``: in C when the extension is there, so a cached address costs no
  Python call);
- per exporter from SNMP (``enrich.snmp_targets``, polled by the node's enrichment process): names merged under
  the configured ones;
- per flow, from the two addresses' classes (a table of nine entries made here): ``network.direction`` (replacing
  the normaliser's value in its place), ``locality`` at the end of ``flow``, and ``related.ip`` (the flow's
  addresses, once each) at the end of the document, before ``labels`` and ``tags``.

These NamedTuples are what the C writers read (as tuples, by position): change a field only together with
``native/enrichment.c``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from flowsink.enrich.geoip import GeoLookup
from flowsink.enrich.networks import InternalNetworks
from flowsink.enrich.settings import EnrichSettings
from flowsink.log import get_logger
from flowsink.native import EXTENSION

log = get_logger(__name__)

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
    """What one address adds at the end of ``source`` or ``destination``: ``as``, ``geo``, ``locality`` in this
    order; one object per distinct result.

    ``as`` comes first so that it lands where a writer with an AS number of its own (sFlow's extended gateway
    record, written after ``mac``) writes it: such a writer decides the ``as`` before writing it
    (``hook.end_endpoint``, ``jb_enrich_endpoint_as``) and appends ``rest`` after it.
    """

    klass: int  # INTERNAL or EXTERNAL (without internal networks: EXTERNAL, and no locality is written)
    fields: dict[str, Any]
    json: bytes  # render(fields) == render({"as": as_fields}) + rest_json
    as_number: int  # the database's AS number, -1 when it gave none
    as_fields: dict[str, Any]  # the database's ``as`` ({} without)
    rest: dict[str, Any]  # fields without ``as``
    rest_json: bytes


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


def flow_table(classes: bool = True) -> tuple[FlowEntry, ...]:
    """The flow entry of every (source class, destination class), at ``3 * source + destination``.

    ``network.direction`` as ECS defines it from the perimeter's point of view (the rules of Elasticsearch's
    network_direction processor and Beats' add_network_direction): internal to internal ``internal``, internal
    to external ``outbound``, external to internal ``inbound``, external to external ``external``; a flow with
    one address keeps the normaliser's direction. ``flow.locality`` is internal when every address the flow has
    is internal (Filebeat's rule), and absent without any. Without internal networks (``classes`` False: GeoIP
    alone) no entry adds anything.
    """
    if not classes:
        return tuple(FlowEntry(None, b"", {}, b"") for _ in range(9))
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
    empties its caches), then asked once per datagram for the exporter's ``ExporterEnrichment``.

    ``sources`` gives what is not in the section itself: the GeoIP databases to open and the names SNMP polling
    found (``flowsink.enrich.sources``: the configured files directly, or what the node's enrichment process
    published in its run dir). ``maintain()``, called between batches, takes a new version of either: new
    databases empty the address cache, new names rebuild the exporters' additions.
    """

    def __init__(self, settings: EnrichSettings, sources: Any = None) -> None:
        from flowsink.enrich.sources import DirectSources

        self.settings = settings
        self.sources = sources if sources is not None else DirectSources(settings)
        self._networks = InternalNetworks(settings.internal_networks) if settings.internal_networks else None
        # one object per distinct result, shared by every address that has it (a cache slot holds a reference)
        self._by_class = {klass: self._entry(klass, None, None) for klass in (INTERNAL, EXTERNAL)}
        self._entries: dict[tuple[int, bytes, bytes], AddressEntry] = {}
        self.geo: GeoLookup | None = None
        self.addresses: Any = None
        if self._networks is not None or settings.geoip_databases:
            self.geo = self.sources.open_databases() if settings.geoip_databases else None
            cache_class = EXTENSION.AddressCache if EXTENSION is not None else PythonAddressCache
            flows = flow_table(classes=self._networks is not None)
            self.addresses = cache_class(self.lookup, flows, settings.address_cache_size)
        self._counted = (0, 0, 0)  # the cache's hits, misses, evictions already added to the metrics
        self._next_check = 0.0
        self._build_exporters(self.sources.snmp_names())

    def _build_exporters(self, polled: dict[str, Any]) -> None:
        """The exporters' additions from the section and the names SNMP found: the configured value of each key
        wins (explicit beats discovered), SNMP's fills what the section leaves out (docs/enrichment.md)."""
        configured = {ipaddress.ip_address(str(a)).compressed: e for a, e in self.settings.exporters.items()}
        exporters = {}
        for address in configured.keys() | polled.keys():
            exporters[address] = self._exporter(_merged(configured.get(address, {}), polled.get(address, {})))
        self._exporters = exporters
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
        """An address's entry, computed: what the cache calls on a miss. Its class (internal networks), then its
        ``geo`` and ``as`` (the databases); each distinct result is made once and shared."""
        networks = self._networks
        klass = INTERNAL if networks is not None and networks.is_internal(packed) else EXTERNAL
        geo = self.geo
        if geo is None:
            return self._by_class[klass]
        place, system = geo.lookup(packed)
        if place is None and system is None:
            return self._by_class[klass]
        key = (klass, place.json if place is not None else b"", system.json if system is not None else b"")
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= _ENTRIES_LIMIT:
                self._entries.clear()
            entry = self._entries[key] = self._entry(klass, place, system)
        return entry

    def _entry(self, klass: int, place: Any, system: Any) -> AddressEntry:
        rest: dict[str, Any] = {}
        if place is not None:
            rest["geo"] = place.value
        if self._networks is not None:
            rest["locality"] = LOCALITY[klass]
        as_fields = system.value if system is not None else {}
        fields = {"as": as_fields, **rest} if as_fields else dict(rest)
        as_number = as_fields.get("number", -1) if as_fields else -1
        return AddressEntry(klass, fields, render(fields), as_number, as_fields, rest, render(rest))

    # -- between batches ------------------------------------------------------------------------------

    def maintain(self, now: float | None = None) -> None:
        """Called between batches (``PipelineWorker.tick``): the address cache's counters to the metrics, and,
        at most once a second, a new version of the sources taken (databases: the cache emptied first)."""
        from flowsink import metrics

        cache = self.addresses
        if cache is not None:
            counted = (cache.hits, cache.misses, cache.evictions)
            hits, misses, evictions = (
                now_ - before for now_, before in zip(counted, self._counted, strict=True)
            )
            if hits:
                metrics.ENRICH_CACHE_LOOKUPS.labels(result="hit").inc(hits)
            if misses:
                metrics.ENRICH_CACHE_LOOKUPS.labels(result="miss").inc(misses)
            if evictions:
                metrics.ENRICH_CACHE_EVICTIONS.inc(evictions)
            self._counted = counted
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        databases, names = self.sources.changes()
        if databases and self.settings.geoip_databases:
            old, self.geo = self.geo, self.sources.open_databases()
            # nothing cached from the old files may outlive them
            self._entries.clear()
            self.addresses.clear()
            if old is not None:
                old.close()
            metrics.ENRICH_RELOADS.labels(source="geoip").inc()
            log.info("GeoIP databases reloaded: %s", self.describe_databases())
        if names:
            self._build_exporters(self.sources.snmp_names())
            metrics.ENRICH_RELOADS.labels(source="snmp").inc()

    def describe_databases(self) -> str:
        if self.geo is None or not self.geo.databases:
            return "none"
        return ", ".join(f"{d.source} ({d.database_type}, {d.kind})" for d in self.geo.databases)

    def close(self) -> None:
        if self.geo is not None:
            self.geo.close()


_ENTRIES_LIMIT = 1 << 17  # distinct (class, geo, as) results kept before the table starts again


def _merged(configured: dict[str, Any], polled: dict[str, Any]) -> dict[str, Any]:
    """An exporter's settings with what SNMP found under them: each configured key (and each configured key of an
    interface) wins over the polled one."""
    if not polled:
        return configured
    merged = {**polled, **{k: v for k, v in configured.items() if k != "interfaces"}}
    interfaces = {int(i): dict(v) for i, v in (polled.get("interfaces") or {}).items()}
    for index, interface in (configured.get("interfaces") or {}).items():
        interfaces[int(index)] = {**interfaces.get(int(index), {}), **interface}
    if interfaces:
        merged["interfaces"] = interfaces
    return merged


def build_enricher(settings: EnrichSettings, sources: Any = None) -> Enricher | None:
    """The enricher of a section, or None when it adds nothing (documents then stay exactly as without it)."""
    return Enricher(settings, sources) if settings.configured() else None
