"""IPFIX (RFC 7011): 16-byte message header, set 2 = templates, 3 = options templates, 256+ = data.

Beyond NetFlow v9: enterprise-specific fields (PEN bit), variable-length fields, template withdrawal (a template
record with no fields), and a sequence number counting data records rather than messages.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from flowsink.decode.netflow_v9 import DatagramError, NetflowV9Decoder
from flowsink.decode.result import DecodeResult
from flowsink.decode.template_cache import FieldSpec, StateKey, Template
from flowsink.normalize.netflow import ExportContext

IPFIX_HEADER = struct.Struct("!HHIII")
TEMPLATE_HEADER = struct.Struct("!HH")
OPTIONS_TEMPLATE_HEADER = struct.Struct("!HHH")
FIELD_SPEC = struct.Struct("!HH")
ENTERPRISE_BIT = 0x8000


class IpfixDecoder(NetflowV9Decoder):
    """IPFIX messages; templates scoped per (exporter, observation domain)."""

    protocol = "ipfix"
    version = 10
    flow_action = "ipfix_flow"
    netflow_v9 = False
    header_size = IPFIX_HEADER.size
    set_kinds: ClassVar[dict[int, str]] = {2: "template", 3: "options_template"}

    def parse_header(self, payload: bytes, exporter: str, arrival_ns: int) -> tuple[ExportContext, int]:
        if len(payload) < IPFIX_HEADER.size:
            raise DatagramError("truncated", f"{len(payload)} bytes, header needs {IPFIX_HEADER.size}")
        _, length, export_time, sequence, domain = IPFIX_HEADER.unpack_from(payload)
        if length < IPFIX_HEADER.size:
            raise DatagramError("bad_length", f"message length {length} is shorter than its header")
        if length > len(payload):
            raise DatagramError("truncated", f"message length {length}, datagram has {len(payload)} bytes")
        context = ExportContext.create(
            exporter, 10, domain, sequence, export_time * 1000, None, payload[:length], arrival_ns
        )
        return context, length

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
        options = kind == "options_template"
        while end - offset >= TEMPLATE_HEADER.size:
            template_id, count = TEMPLATE_HEADER.unpack_from(payload, offset)
            if count == 0:  # withdrawal (RFC 7011 section 8.1): 4 bytes, no scope count even in set 3
                offset += TEMPLATE_HEADER.size
                if template_id == 0:
                    break  # padding
                self._withdraw(key, template_id, options, result)
                continue
            scope_count = 0
            if options:
                if end - offset < OPTIONS_TEMPLATE_HEADER.size:
                    raise DatagramError("truncated", f"options template {template_id}: header cut short")
                _, _, scope_count = OPTIONS_TEMPLATE_HEADER.unpack_from(payload, offset)
                offset += OPTIONS_TEMPLATE_HEADER.size
                if scope_count == 0 or scope_count > count:
                    raise DatagramError(
                        "bad_template",
                        f"options template {template_id}: scope count {scope_count} of {count} fields",
                    )
            else:
                offset += TEMPLATE_HEADER.size
            fields = []
            for _ in range(count):
                if end - offset < FIELD_SPEC.size:
                    raise DatagramError("truncated", f"template {template_id}: field specifiers cut short")
                element_id, length = FIELD_SPEC.unpack_from(payload, offset)
                offset += FIELD_SPEC.size
                enterprise = 0
                if element_id & ENTERPRISE_BIT:
                    if end - offset < 4:
                        raise DatagramError(
                            "truncated", f"template {template_id}: enterprise number cut short"
                        )
                    enterprise = int.from_bytes(payload[offset : offset + 4], "big")
                    offset += 4
                    element_id &= ~ENTERPRISE_BIT
                fields.append(FieldSpec(element_id, length, enterprise))
            template = self._checked(template_id, fields, scope_count, options, result, key, arrival_ns)
            if template is not None:
                templates.append(template)
        return templates

    def _withdraw(self, key: StateKey, template_id: int, options: bool, result: DecodeResult) -> None:
        if template_id in (2, 3):  # withdraw every (options) template of the domain
            removed = self.store.withdraw(key, None, options=template_id == 3)
        elif template_id >= 256:
            removed = self.store.withdraw(key, template_id)
        else:
            result.error("bad_template", f"ipfix from {key[1]}: withdrawal of template id {template_id}")
            return
        result.stats["templates_withdrawn"] += removed

    def observe_sequence(
        self, context: ExportContext, records: int, complete: bool, result: DecodeResult
    ) -> None:
        stream = (context.exporter, context.domain)
        if not complete:
            # records we could not count (held for a template, or cut off): the next message starts afresh
            self.sequences.forget(stream)
            return
        self.sequences.observe(stream, context.sequence, records).add_to(result.stats)
