"""NetFlow v5: 24-byte header + up to 30 fixed 48-byte records, every field kept under its IPFIX name."""

from __future__ import annotations

import socket
import struct
from typing import Any

from flowsink.decode.result import DecodeResult
from flowsink.decode.sequence import SequenceTracker
from flowsink.native import EXTENSION
from flowsink.normalize.netflow import (
    EVENT_CATEGORY,
    EVENT_TYPE_CONNECTION,
    ExportContext,
    flow_document,
    flow_plan,
)

HEADER = struct.Struct("!HHIIIIBBH")
RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBB2x")
MAX_RECORDS = 30  # Cisco's limit for v5; more is a corrupt count

_ntoa = socket.inet_ntoa
V5_PLAN = flow_plan(
    (
        "source_ipv4_address",
        "destination_ipv4_address",
        "source_transport_port",
        "destination_transport_port",
        "octet_delta_count",
        "packet_delta_count",
        "flow_start_sys_up_time",
        "flow_end_sys_up_time",
    ),
    False,
)


class NetflowV5Decoder:
    """Decodes NetFlow v5 datagrams; tracks flow_sequence per (exporter, engine type, engine id)."""

    protocol = "netflow_v5"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.sequences = SequenceTracker(window=settings.sequence_window)
        # (action_head, keep_ids) for the C bulk writer; None: documents as dicts
        self._bulk = settings.bulk.c_format if settings.bulk is not None and EXTENSION is not None else None

    def sequence_trackers(self) -> list[tuple[SequenceTracker, bool]]:
        """Trackers whose stale holes the facade closes, and whether a hole's units are lost records."""
        return [(self.sequences, True)]

    def decode(self, payload: bytes, exporter: str, arrival_ns: int) -> DecodeResult:
        result = DecodeResult(protocol=self.protocol)
        if len(payload) < HEADER.size:
            result.error("truncated", f"NetFlow v5 from {exporter}: {len(payload)} bytes, header needs 24")
            return result
        (_, count, uptime, secs, nsecs, sequence, engine_type, engine_id, sampling) = HEADER.unpack_from(
            payload
        )
        available = (len(payload) - HEADER.size) // RECORD.size
        if count == 0 or count > MAX_RECORDS:
            result.error("bad_count", f"NetFlow v5 from {exporter}: record count {count} (1..{MAX_RECORDS})")
            return result
        if count > available:
            result.error(
                "truncated", f"NetFlow v5 from {exporter}: count {count} but room for {available} records"
            )
            return result

        outcome = self.sequences.observe(
            (exporter, engine_type, engine_id), sequence, count, uptime_ms=uptime
        )
        stats = result.stats
        outcome.add_to(stats)

        # Sampling (v5 header): 2 bits mode, 14 bits interval; an interval is applied whatever the mode says,
        # as nfdump and pmacct do, because exporters set the interval with mode 0 as often as not.
        sampling_mode = sampling >> 14
        sampling_interval = sampling & 0x3FFF
        rate = sampling_interval if sampling_interval > 1 else 1
        export_ms = secs * 1000 + nsecs // 1_000_000
        context = ExportContext.create(
            exporter, 5, (engine_type << 8) | engine_id, sequence, export_ms, uptime, payload, arrival_ns
        )
        enricher = self.settings.enricher
        if enricher is not None:
            context.enrichment = enricher.exporter(exporter)
        renormalize = self.settings.renormalize
        id_prefix = context.id_prefix + "0."
        if EXTENSION is not None:
            # the C extension builds the very documents the loop below builds (tests/test_decode_fast.py), or
            # writes their bulk lines straight away (tests/test_decode_bulk.py)
            args = (
                payload,
                count,
                exporter,
                context.timestamp,
                context.exporter_fields,
                context.exporter_tag,
                id_prefix,
                EVENT_CATEGORY,
                EVENT_TYPE_CONNECTION,
                export_ms,
                uptime,
                rate,
                rate if renormalize else 1,
                engine_type,
                engine_id,
                sampling_interval,
                sampling_mode,
                sequence,
                context.enrichment,
            )
            if self._bulk is None:
                result.documents = EXTENSION.v5_documents(*args)
            else:
                for item in EXTENSION.v5_bulk(*args, *self._bulk):
                    # a dict is a document the C writer left to flowsink.bulk (FlowDecoder encodes it)
                    (result.encoded if item.__class__ is bytes else result.documents).append(item)
            stats["records.flow"] += count
            return result
        documents = result.documents
        end = HEADER.size + count * RECORD.size
        for index, values in enumerate(RECORD.iter_unpack(memoryview(payload)[HEADER.size : end])):
            (
                src,
                dst,
                nexthop,
                input_if,
                output_if,
                packets,
                octets,
                first,
                last,
                src_port,
                dst_port,
                tcp_flags,
                protocol,
                tos,
                src_as,
                dst_as,
                src_mask,
                dst_mask,
            ) = values
            record = {
                "source_ipv4_address": _ntoa(src),
                "destination_ipv4_address": _ntoa(dst),
                "ip_next_hop_ipv4_address": _ntoa(nexthop),
                "ingress_interface": input_if,
                "egress_interface": output_if,
                "packet_delta_count": packets,
                "octet_delta_count": octets,
                "flow_start_sys_up_time": first,
                "flow_end_sys_up_time": last,
                "source_transport_port": src_port,
                "destination_transport_port": dst_port,
                "tcp_control_bits": tcp_flags,
                "protocol_identifier": protocol,
                "ip_class_of_service": tos,
                "bgp_source_as_number": src_as,
                "bgp_destination_as_number": dst_as,
                "source_ipv4_prefix_length": src_mask,
                "destination_ipv4_prefix_length": dst_mask,
                "engine_type": engine_type,
                "engine_id": engine_id,
                "sampling_interval": sampling_interval,
                "sampling_algorithm": sampling_mode,
                "flow_sequence": sequence,
            }
            documents.append(
                flow_document(
                    record, context, f"{id_prefix}{index}", "netflow_flow", rate, renormalize, V5_PLAN
                )
            )
        stats["records.flow"] += count
        return result
