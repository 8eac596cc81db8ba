"""Flow decoding: the ``FlowDecoder`` facade recognises the protocol of a datagram and dispatches it.

One ``FlowDecoder`` per pipeline worker holds all per-exporter state (templates, held data, sequence trackers).
``decode`` never raises on bad input: problems come back as ``DecodeResult.errors`` with a bounded reason label.
"""

from __future__ import annotations

import importlib
from typing import Any

from flowsink.bulk import encode_document
from flowsink.decode.result import DecodeResult
from flowsink.decode.settings import DecoderSettings

__all__ = ["DecodeResult", "DecoderSettings", "FlowDecoder"]


def detect_protocol(payload: bytes) -> str | None:
    """Protocol name from the first bytes of a datagram, or None when it is none we know.

    sFlow v5 starts with a 32-bit version 5 (``00 00 00 05``); NetFlow/IPFIX with a 16-bit version, so the
    two never collide (sFlow's first 16 bits are 0).
    """
    if len(payload) >= 4 and payload[:4] == b"\x00\x00\x00\x05":
        return "sflow"
    if len(payload) < 2:
        return None
    version = (payload[0] << 8) | payload[1]
    return _VERSION_PROTOCOLS.get(version)


_VERSION_PROTOCOLS = {5: "netflow_v5", 9: "netflow_v9", 10: "ipfix"}

# protocol -> (module, class); imported lazily so one missing or broken decoder never stops the others
_DECODER_CLASSES = {
    "netflow_v5": ("flowsink.decode.netflow_v5", "NetflowV5Decoder"),
    "netflow_v9": ("flowsink.decode.netflow_v9", "NetflowV9Decoder"),
    "ipfix": ("flowsink.decode.ipfix", "IpfixDecoder"),
    "sflow": ("flowsink.decode.sflow", "SflowDecoder"),
}


class FlowDecoder:
    """Decodes NetFlow v5/v9, IPFIX and sFlow v5 datagrams into ECS documents (see docs/design.md seam 1).

    NetFlow v9 and IPFIX share one template store (scoped per protocol, exporter and domain) and one bound
    on data held before its template.
    """

    def __init__(self, settings: DecoderSettings | None = None) -> None:
        from flowsink.decode.template_cache import PendingSets, TemplateStore

        self.settings = settings or DecoderSettings()
        s = self.settings
        self.templates = TemplateStore(
            s.max_templates_per_exporter, s.max_exporters, s.template_expiry_seconds
        )
        self.pending = PendingSets(s.pending_max_bytes, s.pending_max_seconds)
        self._decoders: dict[str, Any] = {}
        self._unavailable: set[str] = set()
        self.cache_error: str | None = None  # why the template cache could not be read at start, if so
        # documents encoded by the Python reference (no C writer, or one that declined them): tests watch it
        self.reference_encoded = 0
        if s.template_cache_path:
            try:
                self.load_templates(s.template_cache_path)
            except ValueError as exc:  # a corrupt cache costs the cached templates, never the start-up
                self.cache_error = str(exc)

    def _decoder_for(self, protocol: str) -> Any | None:
        decoder = self._decoders.get(protocol)
        if decoder is not None or protocol in self._unavailable:
            return decoder
        module_name, class_name = _DECODER_CLASSES[protocol]
        try:
            decoder_class = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            self._unavailable.add(protocol)
            return None
        if protocol in ("netflow_v9", "ipfix"):
            decoder = decoder_class(self.settings, self.templates, self.pending)
        else:
            decoder = decoder_class(self.settings)
        self._decoders[protocol] = decoder
        return decoder

    def decode(self, payload: bytes, exporter: str, arrival_ns: int) -> DecodeResult:
        """Decode one datagram from ``exporter`` (its IP address as text) received at ``arrival_ns``.

        Never raises on bad input: an unexpected exception inside a protocol decoder is reported as the
        ``decoder_error`` reason so one hostile datagram cannot stop a pipeline worker.
        """
        protocol = detect_protocol(payload)
        if protocol is None:
            result = DecodeResult()
            version = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            result.error("unknown_version", f"datagram from {exporter}: unknown version {version!r}")
            return result
        decoder = self._decoder_for(protocol)
        if decoder is None:
            result = DecodeResult(protocol=protocol)
            result.error("unsupported_protocol", f"datagram from {exporter}: no {protocol} decoder available")
            return result
        try:
            return self._encoded(decoder.decode(payload, exporter, arrival_ns))
        except Exception as exc:  # a decoder bug must cost one datagram, not the worker
            result = DecodeResult(protocol=protocol)
            result.error("decoder_error", f"{protocol} from {exporter}: {type(exc).__name__}: {exc}")
            return result

    def _encoded(self, result: DecodeResult) -> DecodeResult:
        """With a bulk format, the documents a decoder left as dicts (its pure-Python path) become bulk lines.

        They follow the lines a C writer made for the same datagram: order within a bulk request is free.
        """
        bulk = self.settings.bulk
        if bulk is not None and result.documents:
            self.reference_encoded += len(result.documents)
            encoded = result.encoded
            for document in result.documents:
                try:
                    encoded.append(encode_document(document, bulk))
                except TypeError as exc:  # a decoder bug: one document lost, counted, never the worker
                    result.error("unserialisable_document", f"{result.protocol}: {exc}")
            result.documents = []
        return result

    def expire(self, now_ns: int) -> DecodeResult:
        """Count data held longer than ``pending_max_seconds`` as expired; forget templates past their expiry."""
        result = DecodeResult()
        for decoder in list(self._decoders.values()):
            expire = getattr(decoder, "expire", None)
            if expire is not None:
                result.merge(expire(now_ns))
        return self._encoded(result)

    def close_stale_sequence_holes(self, max_age_s: float) -> list[tuple[str, str, int, int]]:
        """Count sequence holes open longer than ``max_age_s`` as gaps and lost records (a late export can no
        longer fill them): ``(exporter, protocol, gaps, lost_records)`` per exporter stream that had any."""
        closed = []
        for protocol, decoder in self._decoders.items():
            trackers = getattr(decoder, "sequence_trackers", None)
            for tracker, counts_records in trackers() if trackers is not None else ():
                for stream, outcome in tracker.close_stale(max_age_s):
                    exporter = str(stream[0]) if isinstance(stream, tuple) and stream else str(stream)
                    closed.append(
                        (exporter, protocol, outcome.gaps, outcome.lost_records if counts_records else 0)
                    )
        return closed

    def pending_count(self) -> int:
        """Data sets held waiting for their template (the pipeline keeps their datagrams un-acked meanwhile)."""
        return self.pending.count()

    def template_count(self) -> int:
        """NetFlow v9 / IPFIX templates currently known, all exporters together."""
        return self.templates.count()

    def save_templates(self, path: str | None = None) -> None:
        """Write NetFlow v9 / IPFIX templates and options state to ``path`` atomically (temp + fsync + rename)."""
        target = path or self.settings.template_cache_path
        if not target:
            raise ValueError("no template cache path given")
        self.templates.save(target)

    def load_templates(self, path: str | None = None) -> int:
        """Read templates saved by ``save_templates`` (entries past their expiry skipped); returns how many.

        A missing file loads nothing; a corrupt one raises ValueError (the caller logs it and starts empty).
        """
        target = path or self.settings.template_cache_path
        if not target:
            return 0
        return self.templates.load(target)
