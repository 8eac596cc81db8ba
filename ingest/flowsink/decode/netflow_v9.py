"""NetFlow v9 (RFC 3954), and the template machinery IPFIX shares with it.

``TemplateProtocolDecoder`` walks the sets of a datagram, learns templates, decodes data with them, holds data
that came before its template, applies options data (sampling rates, interface names) and tracks sequences.
``NetflowV9Decoder`` and ``ipfix.IpfixDecoder`` only differ in their header and template-record layouts.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from flowsink.decode.result import DecodeResult
from flowsink.decode.sequence import SequenceTracker
from flowsink.decode.template_cache import FieldSpec, HeldSet, PendingSets, StateKey, Template, TemplateStore
from flowsink.native import EXTENSION
from flowsink.normalize.netflow import (
    RELATIVE_NAMES,
    ExportContext,
    document_id,
    flow_document,
    flow_plan,
    options_document,
    read_names,
    sampler_key,
    sampling_rate_from_options,
)

SET_HEADER = struct.Struct("!HH")
V9_HEADER = struct.Struct("!HHIIII")
FIELD_SPEC = struct.Struct("!HH")
# options state per (exporter, domain) is bounded too: these numbers come from the network
MAX_SAMPLERS = 4096
MAX_INTERFACES = 65536
_SAMPLER_NAMES = frozenset({"sampler_id", "selector_id"})  # sampler_key's: a rate per record


def _default_rate(sampling: dict[int | None, int] | None) -> int:
    """The rate of a flow naming no sampler: the domain-wide one, or the only sampler's when there is just one."""
    if not sampling:
        return 1
    return sampling.get(None) or (next(iter(sampling.values())) if len(sampling) == 1 else 1)


class DatagramError(Exception):
    """The datagram (or the rest of it) cannot be decoded: reason is a bounded label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class TemplateProtocolDecoder:
    """Set walking, templates, held data, options and sequences for NetFlow v9 and IPFIX."""

    protocol = ""
    version = 0
    flow_action = ""
    netflow_v9 = False

    def __init__(
        self, settings: Any, store: TemplateStore | None = None, pending: PendingSets | None = None
    ) -> None:
        self.settings = settings
        self.store = store or TemplateStore(
            settings.max_templates_per_exporter, settings.max_exporters, settings.template_expiry_seconds
        )
        self.pending = pending or PendingSets(settings.pending_max_bytes, settings.pending_max_seconds)
        self.sequences = SequenceTracker(window=settings.sequence_window)
        # (action_head, keep_ids) for the C bulk writer; None: documents as dicts
        self._bulk = settings.bulk.c_format if settings.bulk is not None and EXTENSION is not None else None

    def sequence_trackers(self) -> list[tuple[SequenceTracker, bool]]:
        """Trackers whose stale holes the facade closes, and whether a hole's units are lost records."""
        return [(self.sequences, True)]

    # -- protocol specifics -------------------------------------------------------------------------------------
    def parse_header(self, payload: bytes, exporter: str, arrival_ns: int) -> tuple[ExportContext, int]:
        """Returns the datagram's context and where its sets end."""
        raise NotImplementedError

    set_kinds: ClassVar[dict[int, str]] = {}  # set ids below 256 that carry templates; the rest are reserved

    def set_kind(self, set_id: int) -> str:
        """``template``, ``options_template``, ``data`` or ``reserved``."""
        if set_id >= 256:
            return "data"
        return self.set_kinds.get(set_id, "reserved")

    def parse_templates(
        self,
        kind: str,
        payload: bytes,
        start: int,
        end: int,
        result: DecodeResult,
        key: StateKey,
        arrival_ns: int,
    ) -> list[Template]:
        raise NotImplementedError

    def observe_sequence(
        self, context: ExportContext, records: int, complete: bool, result: DecodeResult
    ) -> None:
        raise NotImplementedError

    header_size = 0

    # -- shared ---------------------------------------------------------------------------------------------------
    def decode(self, payload: bytes, exporter: str, arrival_ns: int) -> DecodeResult:
        result = DecodeResult(protocol=self.protocol)
        try:
            context, end = self.parse_header(payload, exporter, arrival_ns)
        except DatagramError as exc:
            result.error(exc.reason, f"{self.protocol} from {exporter}: {exc.detail}")
            return result
        enricher = self.settings.enricher
        if enricher is not None:  # read by the writers from the context, held data included
            context.enrichment = enricher.exporter(exporter)
        key: StateKey = (self.protocol, exporter, context.domain)
        records = 0
        complete = True
        offset = self.header_size
        set_index = 0
        try:
            while offset < end:
                if end - offset < SET_HEADER.size:
                    if any(payload[offset:end]):
                        raise DatagramError("truncated", f"{end - offset} bytes left, a set header needs 4")
                    break
                set_id, length = SET_HEADER.unpack_from(payload, offset)
                if length < SET_HEADER.size:
                    if not any(payload[offset:end]):  # zero fill after the last set (Palo Alto does this)
                        break
                    raise DatagramError(
                        "bad_set_length", f"set {set_id} at offset {offset} has length {length}"
                    )
                cut_short = offset + length > end
                if cut_short and offset + length <= len(payload):
                    # the header's message length is short but the set fits the datagram (an exporter
                    # miscounting its length; Telegraf and tshark read the set too): keep it whole
                    end = offset + length
                    cut_short = False
                if cut_short:
                    # keep the whole records that did arrive; the datagram ends with this set
                    result.error(
                        "truncated",
                        f"{self.protocol} from {exporter}: set {set_id} at offset {offset} "
                        f"claims {length} bytes, {end - offset} left",
                    )
                    length = end - offset
                    complete = False
                body_start, body_end = offset + SET_HEADER.size, offset + length
                kind = self.set_kind(set_id)
                if kind == "data":
                    decoded = self._data_set(
                        key, set_id, payload, body_start, body_end, context, set_index, arrival_ns, result
                    )
                    if decoded is None:
                        complete = False
                    else:
                        records += decoded
                elif kind == "reserved":
                    result.error(
                        "reserved_set_id", f"{self.protocol} from {exporter}: set id {set_id} skipped"
                    )
                else:
                    for template in self.parse_templates(
                        kind, payload, body_start, body_end, result, key, arrival_ns
                    ):
                        self._learn(key, template, result)
                offset = body_end
                set_index += 1
        except DatagramError as exc:
            result.error(exc.reason, f"{self.protocol} from {exporter}: {exc.detail}")
            complete = False
        self.observe_sequence(context, records, complete, result)
        return result

    def _learn(self, key: StateKey, template: Template, result: DecodeResult) -> None:
        known = self.store.get(key, template.template_id)
        if (
            known is not None
            and known.fields == template.fields
            and known.scope_count == template.scope_count
        ):
            known.last_seen_ns = template.last_seen_ns  # a refresh: keep the compiled decoder
            return
        result.stats["templates"] += 1
        evicted = self.store.add(key, template)
        if evicted:
            result.stats["template_evictions"] += evicted
        self._release(key, template, result)

    def _release(self, key: StateKey, template: Template, result: DecodeResult) -> None:
        """Decode the data held for ``template``, oldest first."""
        for held in self.pending.take(key, template.template_id):
            result.stats["pending_decoded"] += 1
            self._records(
                key, template, held.payload, 0, len(held.payload), held.context, held.set_index, result
            )

    def _held_set(self, key: StateKey, held: HeldSet) -> str:
        domain = "source id" if self.netflow_v9 else "observation domain"
        return (
            f"{self.protocol} from {key[1]} ({domain} {key[2]}): data set for template {held.template_id} "
            f"({len(held.payload)} bytes)"
        )

    def _adopt(self, key: StateKey, template_id: int, result: DecodeResult) -> Template | None:
        """A template another partition of the node learned (``TemplateStore.adopt``), with the data held for it
        decoded; None when the node knows none."""
        template = self.store.adopt(key, template_id)
        if template is not None:
            result.stats["templates_adopted"] += 1
            self._release(key, template, result)
        return template

    def _data_set(
        self,
        key: StateKey,
        set_id: int,
        payload: bytes,
        start: int,
        end: int,
        context: ExportContext,
        set_index: int,
        arrival_ns: int,
        result: DecodeResult,
    ) -> int | None:
        """Decode one data set; returns its record count, or None when it was held for its template."""
        template = self.store.get(key, set_id) or self._adopt(key, set_id, result)
        if template is None:
            held = HeldSet(set_id, bytes(payload[start:end]), context, set_index, arrival_ns)
            result.stats["pending"] += 1
            for dropped_key, dropped in self.pending.hold(key, held):
                result.stats["expired"] += 1
                result.error(
                    "pending_overflow",
                    f"{self._held_set(dropped_key, dropped)} dropped: over "
                    f"{self.pending.max_bytes} bytes of data held waiting for templates",
                )
            return None
        return self._records(key, template, payload, start, end, context, set_index, result)

    def _records(
        self,
        key: StateKey,
        template: Template,
        payload: bytes,
        start: int,
        end: int,
        context: ExportContext,
        set_index: int,
        result: DecodeResult,
    ) -> int:
        if self._bulk is not None and template.record_length and not template.is_options:
            count = self._fixed_bulk(key, template, payload, start, end, context, set_index, result)
            if count is not None:
                return count
        records, error = template.decode_records(payload, start, end)
        if error is not None:
            result.error(
                error,
                f"{self.protocol} from {key[1]}: template {template.template_id}: "
                f"record overruns its set after {len(records)} record(s)",
            )
        elif not records:
            self._no_record(key, template, start, end, result)
        documents = result.documents
        encoded = result.encoded
        if template.is_options:
            state = self.store.options_for(key)
            state.last_seen_ns = max(state.last_seen_ns, template.last_seen_ns)
            for record in records:
                self._apply_options(record, state)
            lines: list[bytes | None] = [None] * len(records)
            if self._bulk is not None:
                # bulk lines written in C; a record it leaves (None) is still the Python path's to write
                lines = EXTENSION.options_bulk(
                    records, context, f"{context.id_prefix}{set_index}.", template.time_fields, *self._bulk
                )
            for index, record in enumerate(records):
                line = lines[index]
                if line is not None:
                    encoded.append(line)
                else:
                    documents.append(
                        options_document(
                            record, context, document_id(context, set_index, index), template.time_fields
                        )
                    )
            result.stats["records.options"] += len(records)
            return len(records)
        state = self.store.options.get(key)
        sampling = state.sampling if state is not None else None
        interfaces = state.interfaces if state is not None else None
        system_init_ms = state.system_init_ms if state is not None else None
        renormalize = self.settings.renormalize
        action = self.flow_action
        time_fields = template.time_fields
        plan = flow_plan(template.names, bool(time_fields))
        id_prefix = f"{context.id_prefix}{set_index}."
        in_record = template.has_sampling_fields
        default_rate = _default_rate(sampling)
        rates: int | list[int] = 1
        if in_record or sampling:
            rates = []
            for record in records:
                rate = sampling_rate_from_options(record) if in_record else None
                if rate is None:
                    rate = (sampling.get(sampler_key(record)) or default_rate) if sampling else 1
                rates.append(rate)
        if EXTENSION is None:
            built: list[Any] = [None] * len(records)
        elif self._bulk is None:
            # one C call for the set; records it declines (None) take the Python path untouched
            built = EXTENSION.flow_documents(
                records,
                context,
                id_prefix,
                action,
                rates,
                renormalize,
                plan,
                time_fields,
                interfaces,
                system_init_ms,
            )
        else:
            # the same, written as bulk lines (bytes); a dict is a document left to flowsink.bulk
            built = EXTENSION.flow_bulk(
                records,
                context,
                id_prefix,
                action,
                rates,
                renormalize,
                plan,
                time_fields,
                interfaces,
                system_init_ms,
                *self._bulk,
            )
        self._place(
            result, built, records, context, id_prefix, rates, plan, time_fields, interfaces, system_init_ms
        )
        result.stats["records.flow"] += len(records)
        return len(records)

    def _no_record(
        self, key: StateKey, template: Template, start: int, end: int, result: DecodeResult
    ) -> None:
        if end - start >= 4:
            # more than padding, less than one record: the exporter's template and data disagree
            result.error(
                "short_data_set",
                f"{self.protocol} from {key[1]}: {end - start}-byte set for template "
                f"{template.template_id} holds no whole {template.min_record_length}"
                "-byte record",
            )

    def _place(
        self,
        result: DecodeResult,
        built: list[Any],
        records: list[Any],
        context: ExportContext,
        id_prefix: str,
        rates: int | list[int],
        plan: Any,
        time_fields: tuple[tuple[str, str], ...],
        interfaces: Any,
        system_init_ms: int | None,
    ) -> None:
        """The C writers' output in the result: bulk lines, documents, and for None the record's Python document."""
        encoded = result.encoded
        documents = result.documents
        for index, document in enumerate(built):
            if document.__class__ is bytes:
                encoded.append(document)
                continue
            if document is None:
                document = flow_document(
                    records[index],
                    context,
                    f"{id_prefix}{index}",
                    self.flow_action,
                    rates if rates.__class__ is int else rates[index],
                    self.settings.renormalize,
                    plan,
                    time_fields,
                    interfaces,
                    system_init_ms,
                )
            documents.append(document)

    def _fixed_bulk(
        self,
        key: StateKey,
        template: Template,
        payload: bytes,
        start: int,
        end: int,
        context: ExportContext,
        set_index: int,
        result: DecodeResult,
    ) -> int | None:
        """Flow records of a fixed-length template straight to bulk lines (no record dicts); None when the set
        needs its records as dicts (a sampling rate read from each record)."""
        state = self.store.options.get(key)
        sampling = state.sampling if state is not None else None
        if template.has_sampling_fields or (sampling and not _SAMPLER_NAMES.isdisjoint(template.names)):
            return None
        count = (end - start) // template.record_length
        if not count:
            self._no_record(key, template, start, end, result)
        time_fields = template.time_fields
        plan = flow_plan(template.names, bool(time_fields))
        layout = template.bulk_layout or template.compile_bulk_layout(
            read_names(plan, time_fields), RELATIVE_NAMES
        )
        rate = _default_rate(sampling)  # no record names a sampler
        interfaces = state.interfaces if state is not None else None
        system_init_ms = state.system_init_ms if state is not None else None
        id_prefix = f"{context.id_prefix}{set_index}."
        built, declined, others = EXTENSION.fixed_bulk(
            payload,
            start,
            count,
            template.record_length,
            layout,
            context,
            id_prefix,
            self.flow_action,
            rate,
            self.settings.renormalize,
            plan,
            time_fields,
            interfaces,
            system_init_ms,
            *self._bulk,
        )
        if not others:  # all bulk lines: the usual case
            result.encoded.extend(built)
        else:
            pending = iter(declined)  # the records the Python path writes, at the places built holds None
            records = [next(pending) if item is None else None for item in built]
            self._place(
                result,
                built,
                records,
                context,
                id_prefix,
                rate,
                plan,
                time_fields,
                interfaces,
                system_init_ms,
            )
        result.stats["records.flow"] += count
        return count

    @staticmethod
    def _apply_options(record: dict[str, Any], state: Any) -> None:
        rate = sampling_rate_from_options(record)
        if rate is not None:
            key = sampler_key(record)
            if key in state.sampling or len(state.sampling) < MAX_SAMPLERS:
                state.sampling[key] = rate
        index = record.get("ingress_interface")
        if not isinstance(index, int):
            index = record.get("scope_interface")
        if not isinstance(index, int):
            index = record.get("egress_interface")
        name = record.get("interface_name") or record.get("interface_description")
        known = index in state.interfaces or len(state.interfaces) < MAX_INTERFACES
        if isinstance(index, int) and isinstance(name, str) and name and known:
            state.interfaces[index] = name[:256]
        init = record.get("system_init_time_milliseconds")
        if isinstance(init, int):
            state.system_init_ms = init

    def expire(self, now_ns: int) -> DecodeResult:
        """Count held data older than ``pending_max_seconds`` as expired; forget templates past their expiry."""
        result = DecodeResult(protocol=self.protocol)
        # data held before another partition had saved the template it waits for: decoded now if it has
        for key, template_id in [slot for slot in self.pending.held if slot[0][0] == self.protocol]:
            self._adopt(key, template_id, result)
        # one error per data set: a summary then counts the data lost, and each line names what it waited for
        for key, held in self.pending.expire(now_ns, self.protocol):
            result.stats["expired"] += 1
            result.error("template_missing", f"{self._held_set(key, held)} expired: its template never came")
        dropped = self.store.expire(now_ns, self.protocol)
        if dropped:
            result.stats["templates_expired"] += dropped
        return result


class NetflowV9Decoder(TemplateProtocolDecoder):
    """NetFlow v9: 20-byte header, flowset 0 = templates, 1 = options templates, 256+ = data."""

    protocol = "netflow_v9"
    version = 9
    flow_action = "netflow_flow"
    netflow_v9 = True
    header_size = V9_HEADER.size
    set_kinds: ClassVar[dict[int, str]] = {0: "template", 1: "options_template"}

    def parse_header(self, payload: bytes, exporter: str, arrival_ns: int) -> tuple[ExportContext, int]:
        if len(payload) < V9_HEADER.size:
            raise DatagramError("truncated", f"{len(payload)} bytes, header needs {V9_HEADER.size}")
        _, _, uptime, secs, sequence, source_id = V9_HEADER.unpack_from(payload)
        context = ExportContext.create(
            exporter, 9, source_id, sequence, secs * 1000, uptime, payload, arrival_ns
        )
        return context, len(payload)

    def parse_templates(
        self,
        kind: str,
        payload: bytes,
        start: int,
        end: int,
        result: DecodeResult,
        key: StateKey,
        arrival_ns: int,
    ) -> list[Template]:
        templates = []
        offset = start
        while end - offset >= 4:
            if kind == "template":
                template_id, count = FIELD_SPEC.unpack_from(payload, offset)
                offset += 4
                scope_count = 0
                field_bytes = count * 4
            else:
                if end - offset < 6:
                    break
                template_id, scope_length, option_length = struct.unpack_from("!HHH", payload, offset)
                offset += 6
                if scope_length % 4 or option_length % 4:
                    raise DatagramError(
                        "bad_template",
                        f"options template {template_id}: scope/option "
                        f"lengths {scope_length}/{option_length} not multiples of 4",
                    )
                scope_count = scope_length // 4
                field_bytes = scope_length + option_length
            if template_id == 0 and field_bytes == 0:
                break  # padding
            if offset + field_bytes > end:
                raise DatagramError(
                    "truncated",
                    f"template {template_id} needs {field_bytes} bytes of fields, "
                    f"{end - offset} left in its set",
                )
            fields = [
                FieldSpec(*FIELD_SPEC.unpack_from(payload, offset + 4 * i)) for i in range(field_bytes // 4)
            ]
            offset += field_bytes
            template = self._checked(
                template_id, fields, scope_count, kind == "options_template", result, key, arrival_ns
            )
            if template is not None:
                templates.append(template)
        return templates

    def _checked(
        self,
        template_id: int,
        fields: list[FieldSpec],
        scope_count: int,
        is_options: bool,
        result: DecodeResult,
        key: StateKey,
        arrival_ns: int,
    ) -> Template | None:
        if template_id < 256:
            result.error("bad_template", f"{self.protocol} from {key[1]}: template id {template_id} < 256")
            return None
        if not fields:
            result.error(
                "bad_template", f"{self.protocol} from {key[1]}: template {template_id} has no fields"
            )
            return None
        template = Template(template_id, fields, scope_count, is_options, self.netflow_v9, arrival_ns)
        if template.record_length == 0:
            # records of 0 bytes would make every data set an endless run of empty records
            result.error(
                "zero_length_template",
                f"{self.protocol} from {key[1]}: template {template_id} describes 0-byte records; ignored",
            )
            return None
        return template

    def observe_sequence(
        self, context: ExportContext, records: int, complete: bool, result: DecodeResult
    ) -> None:
        # v9 counts packets, so a datagram with held data still counts as one
        outcome = self.sequences.observe(
            (context.exporter, context.domain),
            context.sequence,
            1,
            uptime_ms=context.uptime_ms,
            records=records,
        )
        outcome.add_to(result.stats)
