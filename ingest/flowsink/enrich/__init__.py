"""Enrichment: what flowsink adds to each flow document on the ingest tier (docs/enrichment.md).

- ``settings``: the ``enrich`` section (``EnrichSettings``);
- ``networks``: which addresses are internal (``enrich.internal_networks``, and Filebeat's always-local ones);
- ``enricher``: the ``Enricher`` built from the settings: every addition rendered once, as the dicts of the
  Python path and the JSON fragments of the C writers, per exporter and (through a bounded cache) per address;
- ``geoip``: GeoIP and AS from MaxMind-format databases; ``snmp``: names polled from the exporters;
- ``sources``: where a worker's databases and SNMP names come from (published by the node's enrichment process);
- ``hook``: where the Python normalisers apply them. ``flowsink/native/enrichment.c`` is the same for the C
  writers, at the same places of the document, so both paths write the same bytes.

This package is imported by the normalisers and imports nothing above ``flowsink.native``; the settings module
stays light (configuration loading imports it, not the rest).
"""
