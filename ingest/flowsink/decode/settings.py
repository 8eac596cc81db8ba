"""Settings of the decoders (the ``decode`` section): one instance is shared by NetFlow v5/v9, IPFIX and sFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowsink.bulk import BulkFormat
from flowsink.settings import MIB, setting


@dataclass(slots=True)
class DecoderSettings:
    renormalize: bool = setting(
        True, help="multiply counters by the sampling rate into network.bytes/packets"
    )
    pending_max_bytes: int = setting(
        8 * MIB, min=0, help="data held waiting for its template, per worker; beyond it the oldest expires"
    )
    pending_max_seconds: float = setting(
        60.0, min=0, help="data held waiting for its template is counted as expired after this long"
    )
    template_expiry_seconds: float = setting(
        24 * 3600.0, min=1, help="a template (and sampling options) not re-sent this long is forgotten"
    )
    sequence_window: int = setting(
        10_000, min=1, help="reordering tolerated before a sequence jump is a restart"
    )
    sequence_hole_max_age_s: float = setting(
        10.0, min=0.1, help="a hole in an exporter's sequence numbers not filled this long is counted as lost"
    )
    max_templates_per_exporter: int = setting(
        1024, min=1, help="templates kept per (exporter, domain); the least recently used is evicted"
    )
    max_exporters: int = setting(10_000, min=1, help="(exporter, domain) states kept, same eviction rule")
    template_cache_path: str = setting(
        "",
        help="saved NetFlow v9/IPFIX templates (empty: <run_dir>/templates-<partition>.json; '{partition}' is replaced)",
    )
    template_save_interval_s: float = setting(30.0, min=1, help="how often the template cache is saved")
    expire_interval_s: float = setting(1.0, min=0.05, help="how often held data is checked for expiry")
    # Set by code: documents come out as bulk lines in this format (the C writers write them without
    # building dicts); None gives dicts in DecodeResult.documents.
    bulk: BulkFormat | None = setting(None, internal=True)
    # Set by code: a flowsink.enrich.enricher.Enricher, what is added to every document (the ``enrich`` section);
    # None adds nothing. Replaced on SIGHUP: the decoders read it once per datagram. (Typed Any: settings modules
    # stay light, and the configuration's type hints are evaluated where the enricher is not imported.)
    enricher: Any = setting(None, internal=True)
