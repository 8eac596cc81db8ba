"""sFlow v5 datagrams (https://sflow.org/sflow_version_5.txt) -> records, handed to ``normalize.sflow``.

Decodes flow samples and expanded flow samples (raw packet header, Ethernet frame, IPv4/IPv6 data, extended
switch/router/gateway/user/URL/NAT/MPLS records), counter samples and expanded counter samples (generic
interface, Ethernet, Token Ring, VLAN, LAG, processor, port name, and the host structures of
https://sflow.org/sflow_host.txt: host description, adapters, parent, CPU, memory, disk and network I/O, the
MIB-II IP/ICMP/TCP/UDP groups, virtual node and domain CPU, memory, disk and network I/O), and discarded-packet
events (sFlow drop notifications). Records of unknown (enterprise, format) are skipped by their length (counter
records counted by format too). All
structure is XDR: big-endian 32-bit words, opaque and string data padded to a multiple of 4 bytes.

Nothing here raises on bad input: every length is checked against the bytes that remain, and a broken sample
ends the datagram's decoding with a counted reason while keeping the samples decoded before it.
"""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Callable
from typing import Any

from flowsink.decode import packet
from flowsink.decode.result import UNKNOWN_COUNTER_FORMAT, DecodeResult
from flowsink.decode.sequence import SequenceTracker
from flowsink.native import EXTENSION
from flowsink.normalize import sflow as normalize
from flowsink.normalize.records import Datagram, PacketInfo, mac_text

# sample_data formats, enterprise 0
SAMPLE_FLOW = 1
SAMPLE_COUNTERS = 2
SAMPLE_FLOW_EXPANDED = 3
SAMPLE_COUNTERS_EXPANDED = 4
SAMPLE_DISCARDED = 5

_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
_HEADER_V4 = struct.Struct("!II4sIII")  # version, address type, address, sub agent, sequence, uptime
_HEADER_REST = struct.Struct("!IIII")  # sub agent, sequence, uptime, sample count
_FLOW_SAMPLE = struct.Struct("!IIIIIIII")
_FLOW_SAMPLE_EXPANDED = struct.Struct("!IIIIIIIIIII")
_COUNTER_SAMPLE = struct.Struct("!III")
_COUNTER_SAMPLE_EXPANDED = struct.Struct("!IIII")
_DISCARDED = struct.Struct("!IIIIIII")
_RAW_HEADER = struct.Struct("!IIII")
_ETH_HEADER = struct.Struct("!6s6sH")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_ETH_FRAME = struct.Struct("!I6s2x6s2xI")
_IPV4_DATA = struct.Struct("!II4s4sIIII")
_IPV6_DATA = struct.Struct("!II16s16sIIII")
_SWITCH = struct.Struct("!IIII")
_IF_COUNTERS = struct.Struct("!IIQIIQIIIIIIQIIIIII")
_ETH_COUNTERS = struct.Struct("!13I")
_TOKEN_RING_COUNTERS = struct.Struct("!18I")
_VLAN_COUNTERS = struct.Struct("!IQIIII")
_LAG_COUNTERS = struct.Struct("!6s2x6s2xI4s8I")
_PROCESSOR_COUNTERS = struct.Struct("!IIIQQ")

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_ntop = socket.inet_ntop

# bounds that keep one hostile datagram from costing unbounded time or memory
MAX_SAMPLES_PER_DATAGRAM = 4096
MAX_RECORDS_PER_SAMPLE = 256
MAX_AS_PATH_LENGTH = 1024
# sequence state is kept per (exporter, agent, sub-agent[, source id]); beyond this many streams the oldest go
MAX_SEQUENCE_STREAMS = 100_000


class SflowError(ValueError):
    """A structural problem in one datagram; ``reason`` is the bounded label counted in metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class SflowDecoder:
    """Decodes sFlow v5 datagrams into ECS documents; one instance per pipeline worker (it tracks sequences)."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        self.renormalize = bool(getattr(settings, "renormalize", True))
        # the common flow sample (Ethernet/IPv4 or IPv6/TCP or UDP header, maybe a switch record) in one pass;
        # everything else, and this too when off (tests compare both), takes the general path
        self.fast_path = True
        # the same common case parsed and built in C when the extension is there (tests set this to None)
        self.extension = EXTENSION
        # given a BulkFormat, the C path writes the bulk lines of the flow and counter samples real switches send
        # (the common flow sample, and the less common ones of native/sflow.c's list) into result.encoded, and those
        # of the documents the Python path builds for the other samples; the rare document it cannot write as
        # orjson would stays a dict, for the FlowDecoder facade to encode with flowsink.bulk
        bulk = getattr(settings, "bulk", None)
        self.bulk_format: tuple[bytes, bool] | None = bulk.c_format if bulk is not None else None
        window = int(getattr(settings, "sequence_window", 10_000) or 10_000)
        self._datagram_sequences = SequenceTracker(window=window, max_streams=MAX_SEQUENCE_STREAMS)
        self._sample_sequences = SequenceTracker(window=window, max_streams=MAX_SEQUENCE_STREAMS)
        self._generations: dict[tuple[Any, ...], int] = {}  # (exporter, agent, sub-agent) -> restarts seen
        self._flow_records: dict[int, Callable[[bytes, int, int, dict[str, Any]], Any]] = {
            1: _flow_raw_header,
            2: _flow_ethernet,
            3: _flow_ipv4,
            4: _flow_ipv6,
            1001: _flow_switch,
            1002: _flow_router,
            1003: _flow_gateway,
            1004: _flow_user,
            1005: _flow_url,
            1006: _flow_mpls,
            1007: _flow_nat,
            1036: _flow_egress_queue,
            1037: _flow_acl,
            1038: _flow_function,
        }
        self._counter_records: dict[int, Callable[[bytes, int, int, dict[str, Any]], None]] = {
            1: _counters_interface,
            2: _counters_ethernet,
            3: _counters_token_ring,
            4: _counters_vg,
            5: _counters_vlan,
            7: _counters_lag,
            1001: _counters_processor,
            1005: _counters_port_name,
            2000: _counters_host_description,
            2001: _counters_host_adapters,
            2002: _counters_host_parent,
            2003: _counters_host_cpu,
            2004: _counters_host_memory,
            2005: _counters_host_disk_io,
            2006: _fixed_group("host_net_io", _NET_IO, _HOST_NET_IO_NAMES, "host network I/O"),
            2007: _fixed_group("mib2_ip_group", _MIB2_IP, _MIB2_IP_NAMES, "MIB-II IP"),
            2008: _fixed_group("mib2_icmp_group", _MIB2_ICMP, _MIB2_ICMP_NAMES, "MIB-II ICMP"),
            2009: _fixed_group("mib2_tcp_group", _MIB2_TCP, _MIB2_TCP_NAMES, "MIB-II TCP"),
            2010: _fixed_group("mib2_udp_group", _MIB2_UDP, _MIB2_UDP_NAMES, "MIB-II UDP"),
            2100: _fixed_group("virt_node", _VIRT_NODE, _VIRT_NODE_NAMES, "virtual node"),
            2101: _fixed_group("virt_cpu", _VIRT_CPU, _VIRT_CPU_NAMES, "virtual CPU"),
            2102: _fixed_group("virt_memory", _VIRT_MEMORY, _VIRT_MEMORY_NAMES, "virtual memory"),
            2103: _fixed_group("virt_disk_io", _VIRT_DISK_IO, _VIRT_DISK_IO_NAMES, "virtual disk I/O"),
            2104: _fixed_group("virt_net_io", _NET_IO, _VIRT_NET_IO_NAMES, "virtual network I/O"),
        }

    def decode(self, payload: bytes, exporter: str, arrival_ns: int) -> DecodeResult:
        """Decode one datagram; never raises on bad input (problems land in ``result.errors``)."""
        result = DecodeResult(protocol="sflow")
        try:
            self._decode(bytes(payload), exporter, arrival_ns, result)
        except SflowError as exc:
            result.error(exc.reason, f"sFlow datagram from {exporter}: {exc}")
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            # every read is bounds-checked; this is the safety net for a case those checks missed
            result.error("malformed", f"sFlow datagram from {exporter}: {type(exc).__name__}: {exc}")
        return result

    def settings_enricher(self) -> Any:
        """The enricher now (SIGHUP replaces it in the shared settings), None when nothing is added."""
        return getattr(self.settings, "enricher", None)

    def _decode(self, data: bytes, exporter: str, arrival_ns: int, result: DecodeResult) -> None:
        datagram, offset, count = _datagram_header(data, exporter, arrival_ns)
        normalize.prepare_datagram(datagram, data)
        enricher = self.settings_enricher()
        if enricher is not None:  # keyed by the agent (observer.ip), else the datagram's sender
            datagram.enrichment = enricher.exporter(datagram.agent, exporter)
        stats = result.stats
        stats["datagrams.sflow"] += 1
        outcome = self._datagram_sequences.observe(
            (exporter, datagram.agent, datagram.sub_agent), datagram.sequence, 1, uptime_ms=datagram.uptime
        )
        # lost datagrams are reported apart: their samples are counted lost through the sample sequences
        if outcome.lost:
            stats["sflow_datagram_gaps"] += outcome.gaps
            stats["sflow_lost_datagrams"] += outcome.lost
        agent_key = (exporter, datagram.agent, datagram.sub_agent)
        if outcome.restart:
            stats["sequence_restarts"] += 1
            # the agent's sample sequences start over too: track them as new streams from here on
            if len(self._generations) >= MAX_SEQUENCE_STREAMS:
                self._generations.clear()
            self._generations[agent_key] = self._generations.get(agent_key, 0) + 1
        if outcome.reordered:
            stats["sequence_reordered"] += outcome.reordered
        if count > MAX_SAMPLES_PER_DATAGRAM:
            raise SflowError(
                "too_many_samples", f"{count} samples declared (limit {MAX_SAMPLES_PER_DATAGRAM})"
            )
        # consecutive sample sequence numbers per source, observed once per run at the end (a datagram
        # usually carries a run of samples from each source: one tracker call instead of one per sample)
        runs: dict[tuple[Any, ...], list[int]] = {}
        try:
            self._samples(data, offset, count, datagram, result, runs)
        finally:
            self._track_runs((*agent_key, self._generations.get(agent_key, 0)), runs, stats)

    def _samples(
        self,
        data: bytes,
        offset: int,
        count: int,
        datagram: Datagram,
        result: DecodeResult,
        runs: dict[tuple[Any, ...], list[int]],
    ) -> None:
        end = len(data)
        documents = result.documents
        stats = result.stats
        renormalize = self.renormalize
        fast = self.fast_path
        common_flow_document = normalize.common_flow_document
        c_samples = self.extension.sflow_samples if fast and self.extension is not None else None
        bulk = () if self.bulk_format is None else (result.encoded, *self.bulk_format)
        # the exporter's additions, an optional last argument (not given: nothing added)
        enrichment = () if datagram.enrichment is None else (datagram.enrichment,)
        encode = self.extension.encode_documents if bulk and c_samples is not None else None
        held: list[dict[str, Any]] = []
        flows = 0
        index = 0
        try:
            while index < count:
                if c_samples is not None:
                    if encode is not None and documents:
                        # what Python decoded goes out before C's next lines: a datagram's lines in sample order
                        _encode_documents(encode, documents, held, bulk)
                    # the run of common flow samples from here, in C; it stops at one the code below decodes
                    offset, index, built, counters = c_samples(
                        data,
                        datagram.timestamp,
                        datagram.id_prefix,
                        datagram.tag,
                        datagram.agent,
                        datagram.fields,
                        renormalize,
                        offset,
                        index,
                        count,
                        documents,
                        runs,
                        *bulk,
                        *enrichment,
                    )
                    flows += built
                    if counters:  # the usual counter sample too, written as bulk lines
                        stats["records.sflow_counter_sample"] += counters
                    if index >= count:
                        break
                if offset + 8 > end:
                    raise SflowError("truncated", f"sample {index} of {count} starts past the datagram's end")
                data_format, length = _U32X2.unpack_from(data, offset)
                offset += 8
                sample_end = offset + length
                if sample_end > end:
                    raise SflowError(
                        "truncated", f"sample {index} claims {length} bytes, {end - offset} remain"
                    )
                # what C refused the Python fast path refuses too: straight to the general path then
                python_fast = data_format == SAMPLE_FLOW and fast and c_samples is None
                common = _common_flow_sample(data, offset, sample_end) if python_fast else None
                if common is not None:
                    _extend_run_of(runs, ("flow", common[1] >> 24, common[1] & 0xFFFFFF), common[0])
                    documents.append(common_flow_document(datagram, common, index, renormalize))
                    flows += 1
                elif data_format in (SAMPLE_FLOW, SAMPLE_FLOW_EXPANDED):  # the bulk of any export
                    sample, records_at = _flow_sample_header(data, offset, sample_end, data_format)
                    info = self._flow_records_into(data, records_at, sample_end, sample, result)
                    _extend_run(runs, "flow", sample)
                    documents.append(normalize.flow_document(datagram, sample, info, index, renormalize))
                    flows += 1
                else:
                    self._other_sample(data, offset, sample_end, data_format, datagram, index, result, runs)
                offset = sample_end
                index += 1
        finally:  # the flow samples before a broken one are kept, so they are counted too
            if flows:
                stats["records.sflow_flow_sample"] += flows
            if encode is not None and documents:
                _encode_documents(encode, documents, held, bulk)
            documents[:0] = held
        if offset != end:
            stats["sflow_trailing_bytes"] += end - offset

    def _other_sample(
        self,
        data: bytes,
        start: int,
        end: int,
        data_format: int,
        datagram: Datagram,
        index: int,
        result: DecodeResult,
        runs: dict[tuple[Any, ...], list[int]],
    ) -> None:
        stats = result.stats
        if data_format in (SAMPLE_COUNTERS, SAMPLE_COUNTERS_EXPANDED):
            sample, offset = _counter_sample_header(data, start, end, data_format)
            self._counter_records_into(data, offset, end, sample, result)
            _extend_run(runs, "counter", sample)
            result.documents.append(normalize.counter_document(datagram, sample, index))
            stats["records.sflow_counter_sample"] += 1
        elif data_format == SAMPLE_DISCARDED:
            sample, offset = _discarded_header(data, start, end)
            info = self._flow_records_into(data, offset, end, sample, result)
            _extend_run(runs, "discard", sample)
            result.documents.append(normalize.discard_document(datagram, sample, info, index))
            stats["records.sflow_discarded_packet"] += 1
        else:  # another enterprise's sample, or a format after v5: skipped by its length
            stats["sflow_unknown_samples"] += 1

    def _track_runs(
        self, prefix: tuple[Any, ...], runs: dict[tuple[Any, ...], list[int]], stats: Any
    ) -> None:
        """Observe each source's run of sample sequence numbers; ``prefix``: exporter, agent, sub-agent, and
        how many times that agent restarted (a restart starts new sample streams)."""
        observe = self._sample_sequences.observe
        for source, (first, length) in runs.items():
            outcome = observe(prefix + source[:3], first, length)
            if outcome.lost:
                # a lost sample is a lost record: the counters every protocol reports
                stats["sequence_gaps"] += outcome.gaps
                stats["lost_records"] += outcome.lost

    def sequence_trackers(self) -> list[tuple[SequenceTracker, bool]]:
        """Trackers whose stale holes the facade closes, and whether a hole's units are lost records: a lost
        datagram is a gap only, the samples it carried are counted lost through the sample sequences."""
        return [(self._sample_sequences, True), (self._datagram_sequences, False)]

    def flush_sequences(self) -> DecodeResult:
        """Count the sequence holes still open (late datagrams can no longer fill them) as lost."""
        result = DecodeResult(protocol="sflow")
        samples = self._sample_sequences.flush()
        datagrams = self._datagram_sequences.flush()
        if samples.lost:
            result.stats["sequence_gaps"] += samples.gaps
            result.stats["lost_records"] += samples.lost
        if datagrams.lost:
            result.stats["sflow_datagram_gaps"] += datagrams.gaps
            result.stats["sflow_lost_datagrams"] += datagrams.lost
        return result

    def _flow_records_into(
        self, data: bytes, offset: int, end: int, sample: dict[str, Any], result: DecodeResult
    ) -> PacketInfo | None:
        stats = result.stats
        count = sample.pop("_record_count")
        info = None
        for _ in range(min(count, MAX_RECORDS_PER_SAMPLE)):
            record_format, length, offset = _record_header(data, offset, end)
            record_end = offset + length
            parser = self._flow_records.get(record_format)
            if parser is None:
                stats["sflow_unknown_records"] += 1
            else:
                try:
                    found = parser(data, offset, record_end, sample)
                except SflowError as exc:
                    # the record's own length was sound, so the next record is still found: skip just this one
                    result.error(exc.reason, f"sFlow flow record {record_format}: {exc}")
                    found = None
                if found is not None:
                    info = found
            offset = record_end
        if count > MAX_RECORDS_PER_SAMPLE:
            raise SflowError("too_many_records", f"{count} flow records in one sample")
        return info

    def _counter_records_into(
        self, data: bytes, offset: int, end: int, sample: dict[str, Any], result: DecodeResult
    ) -> None:
        stats = result.stats
        count = sample.pop("_record_count")
        for _ in range(min(count, MAX_RECORDS_PER_SAMPLE)):
            record_format, length, offset = _record_header(data, offset, end)
            parser = self._counter_records.get(record_format)
            if parser is None:
                stats["sflow_unknown_records"] += 1
                # by (enterprise, format): what an operator needs to know which structure is missing; the
                # pipeline logs these keys (one line per interval, whatever the format)
                stats[f"{UNKNOWN_COUNTER_FORMAT}{record_format >> 12}:{record_format & 0xFFF}"] += 1
            else:
                try:
                    parser(data, offset, offset + length, sample)
                except SflowError as exc:
                    result.error(exc.reason, f"sFlow counter record {record_format}: {exc}")
            offset += length
        if count > MAX_RECORDS_PER_SAMPLE:
            raise SflowError("too_many_records", f"{count} counter records in one sample")


def _encode_documents(
    encode: Callable[..., int],
    documents: list[dict[str, Any]],
    held: list[dict[str, Any]],
    bulk: tuple[Any, ...],
) -> None:
    """The documents decoded in Python so far as bulk lines, written in C; those it cannot write as orjson would
    (a float) move to ``held``, never tried twice, for the facade's ``flowsink.bulk`` reference."""
    encode(documents, *bulk)
    if documents:
        held += documents
        documents.clear()


def _extend_run(runs: dict[tuple[Any, ...], list[int]], kind: str, sample: dict[str, Any]) -> None:
    _extend_run_of(
        runs, (kind, sample["source_id_type"], sample["source_id_index"]), sample["sample_sequence"]
    )


def _extend_run_of(runs: dict[tuple[Any, ...], list[int]], source: tuple[Any, ...], sequence: int) -> None:
    """Add a sample's sequence number to its source's run; a break starts a new run under a new key."""
    run = runs.get(source)
    if run is None:
        runs[source] = [sequence, 1]
    elif (run[0] + run[1]) & 0xFFFFFFFF == sequence:
        run[1] += 1
    else:  # out of order within the datagram: keep the run, track this one on its own, after it
        runs[(*source, len(runs))] = [sequence, 1]


def _common_flow_sample(data: bytes, start: int, end: int) -> tuple[Any, ...] | None:
    """Parse the common flow sample in one pass, or None for anything else (the general path decodes it).

    Common: known input and output ifIndex, a raw header record of an Ethernet frame with at most one 802.1Q
    tag, an option-less IPv4 first fragment or an IPv6 packet without extension headers, a complete TCP or UDP
    header; and at most an extended switch record besides. Written out flat because it is most of the samples
    any switch sends, and a function call per record and layer costs as much as the parsing.
    """
    if start + 32 > end:
        return None
    seq, source, rate, pool, drops, input_if, output_if, count = _FLOW_SAMPLE.unpack_from(data, start)
    if count > 2 or input_if >= 0x3FFFFFFF or output_if >= 0x3FFFFFFF:
        return None
    position = start + 32
    header_at = -1
    switch = None
    frame_length = stripped = header_length = 0
    for _ in range(count):
        if position + 8 > end:
            return None
        record_format, length = _U32X2.unpack_from(data, position)
        position += 8
        if position + length > end:
            return None
        if record_format == 1 and header_at < 0 and length >= 16:
            header_protocol, frame_length, stripped, header_length = _RAW_HEADER.unpack_from(data, position)
            if header_protocol != 1 or header_length > length - 16:
                return None
            header_at = position + 16
        elif record_format == 1001 and switch is None and length >= 16:
            switch = _SWITCH.unpack_from(data, position)
        else:
            return None
        position += length
    if header_at < 0 or header_length < 14:
        return None
    header_end = header_at + header_length
    dst_mac, src_mac, ethertype = _ETH_HEADER.unpack_from(data, header_at)
    at = header_at + 14
    vlan = None
    if ethertype == 0x8100:
        if at + 4 > header_end:
            return None
        tci, ethertype = _U16X2.unpack_from(data, at)
        vlan = tci & 0x0FFF
        at += 4
    if ethertype == 0x0800:
        if at + 20 > header_end:
            return None
        ver_ihl, tos, total_length, ip_id, flags_fragment, ttl, proto, _, src, dst = _IPV4_HEADER.unpack_from(
            data, at
        )
        if ver_ihl != 0x45 or flags_fragment & 0x1FFF:
            return None
        extra = (ip_id, flags_fragment >> 13)
        at += 20
    elif ethertype == 0x86DD:
        if at + 40 > header_end:
            return None
        first_word, payload_length, proto, ttl, src, dst = _IPV6_HEADER.unpack_from(data, at)
        if first_word >> 28 != 6:
            return None
        tos, total_length, extra = (first_word >> 20) & 0xFF, payload_length + 40, first_word & 0xFFFFF
        at += 40
    else:
        return None
    if proto == 6:
        if at + 14 > header_end:
            return None
        src_port, dst_port = _U16X2.unpack_from(data, at)
        tcp_flags = _U16.unpack_from(data, at + 12)[0] & 0x01FF
    elif proto == 17:
        if at + 8 > header_end:
            return None
        src_port, dst_port = _U16X2.unpack_from(data, at)
        tcp_flags = None
    else:
        return None
    return (
        seq,
        source,
        rate,
        pool,
        drops,
        input_if,
        output_if,
        frame_length,
        stripped,
        header_length,
        switch,
        src_mac,
        dst_mac,
        vlan,
        ethertype,
        tos,
        ttl,
        total_length,
        extra,
        proto,
        src,
        dst,
        src_port,
        dst_port,
        tcp_flags,
    )


# --- datagram and sample headers ------------------------------------------------------------------------------


def _address(data: bytes, offset: int, end: int) -> tuple[str | None, int]:
    """An sFlow ``address`` (type 1 IPv4, 2 IPv6, 0 unknown) -> (text or None, offset after it)."""
    if offset + 4 > end:
        raise SflowError("truncated", "address type runs past the end")
    (kind,) = _U32.unpack_from(data, offset)
    offset += 4
    if kind == 1:
        if offset + 4 > end:
            raise SflowError("truncated", "IPv4 address runs past the end")
        return _inet_ntop(_AF_INET, data[offset : offset + 4]), offset + 4
    if kind == 2:
        if offset + 16 > end:
            raise SflowError("truncated", "IPv6 address runs past the end")
        return _inet_ntop(_AF_INET6, data[offset : offset + 16]), offset + 16
    if kind == 0:
        return None, offset
    raise SflowError("bad_address_type", f"address type {kind}")


def _datagram_header(data: bytes, exporter: str, arrival_ns: int) -> tuple[Datagram, int, int]:
    if len(data) < 8:
        raise SflowError("truncated", f"{len(data)} bytes, shorter than an sFlow header")
    version, address_type = _U32X2.unpack_from(data, 0)
    if version != 5:
        raise SflowError("unknown_version", f"sFlow version {version}, only 5 is decoded")
    if address_type == 1 and len(data) >= 28:  # the common case in one unpack
        _, _, raw_agent, sub_agent, sequence, uptime = _HEADER_V4.unpack_from(data, 0)
        (count,) = _U32.unpack_from(data, 24)
        agent: str | None = _inet_ntop(_AF_INET, raw_agent)
        offset = 28
    else:
        agent, offset = _address(data, 4, len(data))
        if offset + 16 > len(data):
            raise SflowError("truncated", "datagram header runs past the end")
        sub_agent, sequence, uptime, count = _HEADER_REST.unpack_from(data, offset)
        offset += 16
    datagram = Datagram(exporter, agent or exporter, sub_agent, sequence, uptime, arrival_ns)
    return datagram, offset, count


def _flow_sample_header(data: bytes, start: int, end: int, fmt: int) -> tuple[dict[str, Any], int]:
    if fmt == SAMPLE_FLOW:
        if start + 32 > end:
            raise SflowError("truncated", "flow sample header runs past the sample's end")
        seq, source, rate, pool, drops, input_if, output_if, count = _FLOW_SAMPLE.unpack_from(data, start)
        source_type, source_index = source >> 24, source & 0xFFFFFF
        input_format, input_value = input_if >> 30, input_if & 0x3FFFFFFF
        output_format, output_value = output_if >> 30, output_if & 0x3FFFFFFF
        offset = start + 32
    else:
        if start + 44 > end:
            raise SflowError("truncated", "expanded flow sample header runs past the sample's end")
        (
            seq,
            source_type,
            source_index,
            rate,
            pool,
            drops,
            input_format,
            input_value,
            output_format,
            output_value,
            count,
        ) = _FLOW_SAMPLE_EXPANDED.unpack_from(data, start)
        offset = start + 44
    sample: dict[str, Any] = {
        "sample_sequence": seq,
        "source_id_type": source_type,
        "source_id_index": source_index,
        "sampling_rate": rate,
        "sample_pool": pool,
        "drops": drops,
        "_record_count": count,
    }
    _interface(sample, "input", input_format, input_value)
    _interface(sample, "output", output_format, output_value)
    if fmt == SAMPLE_FLOW_EXPANDED:
        sample["expanded"] = True
    return sample, offset


def _interface(sample: dict[str, Any], which: str, fmt: int, value: int) -> None:
    """Input/output interface: format 0 is an ifIndex (0x3FFFFFFF unknown), 1 a discard reason, 2 a count."""
    if fmt == 0:
        if value != 0x3FFFFFFF:
            sample[f"{which}_interface"] = value
    elif fmt == 1:
        sample[f"{which}_discard_reason"] = value
    elif fmt == 2:
        sample[f"{which}_interface_count"] = value
    else:
        sample[f"{which}_interface_format"] = fmt
        sample[f"{which}_interface_value"] = value


def _counter_sample_header(data: bytes, start: int, end: int, fmt: int) -> tuple[dict[str, Any], int]:
    if fmt == SAMPLE_COUNTERS:
        if start + 12 > end:
            raise SflowError("truncated", "counter sample header runs past the sample's end")
        seq, source, count = _COUNTER_SAMPLE.unpack_from(data, start)
        source_type, source_index = source >> 24, source & 0xFFFFFF
        offset = start + 12
    else:
        if start + 16 > end:
            raise SflowError("truncated", "expanded counter sample header runs past the sample's end")
        seq, source_type, source_index, count = _COUNTER_SAMPLE_EXPANDED.unpack_from(data, start)
        offset = start + 16
    sample = {
        "sample_sequence": seq,
        "source_id_type": source_type,
        "source_id_index": source_index,
        "_record_count": count,
    }
    if fmt == SAMPLE_COUNTERS_EXPANDED:
        sample["expanded"] = True
    return sample, offset


def _discarded_header(data: bytes, start: int, end: int) -> tuple[dict[str, Any], int]:
    """sFlow drop notification (sflow_drops.txt): format 5, an expanded source id and a drop reason."""
    if start + 32 > end:
        raise SflowError("truncated", "discarded packet header runs past the sample's end")
    seq, source_type, source_index, drops, input_if, output_if, reason = _DISCARDED.unpack_from(data, start)
    (count,) = _U32.unpack_from(data, start + 28)
    sample: dict[str, Any] = {
        "sample_sequence": seq,
        "source_id_type": source_type,
        "source_id_index": source_index,
        "drops": drops,
        "drop_reason": reason,
        "_record_count": count,
    }
    # interfaces are plain ifIndex values here, 0 meaning unknown
    if input_if:
        sample["input_interface"] = input_if
    if output_if:
        sample["output_interface"] = output_if
    return sample, start + 32


def _record_header(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(format with enterprise, length, offset of the record's data); the record must fit the sample."""
    if offset + 8 > end:
        raise SflowError("truncated", "record header runs past the sample's end")
    record_format, length = _U32X2.unpack_from(data, offset)
    offset += 8
    if offset + length > end:
        raise SflowError("truncated", f"record {record_format} claims {length} bytes, {end - offset} remain")
    return record_format, length, offset


def _need(start: int, end: int, size: int, what: str) -> None:
    if end - start < size:
        raise SflowError("bad_record_length", f"{what} record has {end - start} bytes, needs {size}")


def _opaque(data: bytes, offset: int, end: int, what: str) -> tuple[bytes, int]:
    """XDR ``opaque<>``/``string<>``: a length word, the bytes, padding to 4; -> (bytes, offset after)."""
    _need(offset, end, 4, what)
    (length,) = _U32.unpack_from(data, offset)
    offset += 4
    if length > end - offset:
        raise SflowError("bad_record_length", f"{what}: {length} bytes declared, {end - offset} remain")
    return data[offset : offset + length], offset + ((length + 3) & ~3)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# --- flow records: each fills the sample dict, the raw header record also returns what it parsed -------------


def _flow_raw_header(data: bytes, start: int, end: int, sample: dict[str, Any]) -> PacketInfo | None:
    _need(start, end, 16, "raw packet header")
    header_protocol, frame_length, stripped, header_length = _RAW_HEADER.unpack_from(data, start)
    header_start = start + 16
    if header_length > end - header_start:
        raise SflowError("bad_record_length", f"sampled header of {header_length} bytes in a shorter record")
    sample["header_protocol"] = header_protocol
    sample["frame_length"] = frame_length
    sample["stripped"] = stripped
    sample["header_length"] = header_length
    return packet.parse_header(header_protocol, data[header_start : header_start + header_length])


def _flow_ethernet(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 24, "ethernet frame data")
    length, src_mac, dst_mac, ethertype = _ETH_FRAME.unpack_from(data, start)
    sample.setdefault("frame_length", length)
    sample["src_mac"] = src_mac
    sample["dst_mac"] = dst_mac
    sample["ethertype"] = ethertype


def _flow_ipv4(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 32, "IPv4 data")
    length, proto, src, dst, src_port, dst_port, tcp_flags, tos = _IPV4_DATA.unpack_from(data, start)
    sample["ip_data"] = (length, proto, src, dst, src_port, dst_port, tcp_flags, tos)


def _flow_ipv6(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 56, "IPv6 data")
    length, proto, src, dst, src_port, dst_port, tcp_flags, priority = _IPV6_DATA.unpack_from(data, start)
    sample["ip_data"] = (length, proto, src, dst, src_port, dst_port, tcp_flags, priority)


def _flow_switch(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 16, "extended switch")
    src_vlan, src_priority, dst_vlan, dst_priority = _SWITCH.unpack_from(data, start)
    sample["src_vlan"] = src_vlan
    sample["src_priority"] = src_priority
    sample["dst_vlan"] = dst_vlan
    sample["dst_priority"] = dst_priority


def _flow_router(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    next_hop, offset = _address(data, start, end)
    _need(offset, end, 8, "extended router")
    src_mask, dst_mask = _U32X2.unpack_from(data, offset)
    if next_hop is not None:
        sample["next_hop_address"] = next_hop
    sample["src_mask_len"] = src_mask
    sample["dst_mask_len"] = dst_mask


def _flow_gateway(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    next_hop, offset = _address(data, start, end)
    _need(offset, end, 16, "extended gateway")
    asn, src_as, src_peer_as, segments = struct.unpack_from("!IIII", data, offset)
    offset += 16
    path: list[int] = []
    for _ in range(segments):
        _need(offset, end, 8, "extended gateway AS path")
        _segment_type, length = _U32X2.unpack_from(data, offset)
        offset += 8
        if length > (end - offset) // 4 or len(path) + length > MAX_AS_PATH_LENGTH:
            raise SflowError("bad_record_length", f"AS path segment of {length} ASNs does not fit")
        path.extend(struct.unpack_from(f"!{length}I", data, offset))
        offset += 4 * length
    _need(offset, end, 4, "extended gateway communities")
    (communities_count,) = _U32.unpack_from(data, offset)
    offset += 4
    if communities_count > (end - offset) // 4:
        raise SflowError("bad_record_length", f"{communities_count} communities do not fit")
    communities = list(struct.unpack_from(f"!{communities_count}I", data, offset))
    offset += 4 * communities_count
    _need(offset, end, 4, "extended gateway local preference")
    (local_pref,) = _U32.unpack_from(data, offset)
    if next_hop is not None:
        sample["bgp_next_hop_address"] = next_hop
    sample["as"] = asn
    sample["src_as"] = src_as
    sample["src_peer_as"] = src_peer_as
    sample["dst_as_path"] = path
    sample["dst_as"] = path[-1] if path else asn
    sample["communities"] = communities
    sample["local_pref"] = local_pref


def _flow_user(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 4, "extended user")
    src_user, offset = _opaque(data, start + 4, end, "extended user")
    _need(offset, end, 4, "extended user")
    dst_user, _ = _opaque(data, offset + 4, end, "extended user")
    sample["src_user"] = _text(src_user)
    sample["dst_user"] = _text(dst_user)


def _flow_url(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 4, "extended URL")
    (direction,) = _U32.unpack_from(data, start)
    url, offset = _opaque(data, start + 4, end, "extended URL")
    host, _ = _opaque(data, offset, end, "extended URL")
    sample["url_direction"] = direction
    sample["url"] = _text(url)
    sample["host"] = _text(host)


def _label_stack(data: bytes, offset: int, end: int) -> tuple[list[int], int]:
    _need(offset, end, 4, "extended MPLS")
    (count,) = _U32.unpack_from(data, offset)
    offset += 4
    if count > (end - offset) // 4:
        raise SflowError("bad_record_length", f"MPLS label stack of {count} does not fit")
    return list(struct.unpack_from(f"!{count}I", data, offset)), offset + 4 * count


def _flow_mpls(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    next_hop, offset = _address(data, start, end)
    in_stack, offset = _label_stack(data, offset, end)
    out_stack, _ = _label_stack(data, offset, end)
    if next_hop is not None:
        sample["mpls_next_hop_address"] = next_hop
    sample["mpls_in_labels"] = in_stack
    sample["mpls_out_labels"] = out_stack


def _flow_nat(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    src, offset = _address(data, start, end)
    dst, _ = _address(data, offset, end)
    if src is not None:
        sample["nat_src_ip"] = src
    if dst is not None:
        sample["nat_dst_ip"] = dst


def _flow_egress_queue(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 4, "extended egress queue")
    (sample["egress_queue"],) = _U32.unpack_from(data, start)


def _flow_acl(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 4, "extended ACL")
    (number,) = _U32.unpack_from(data, start)
    name, offset = _opaque(data, start + 4, end, "extended ACL")
    _need(offset, end, 4, "extended ACL")
    (direction,) = _U32.unpack_from(data, offset)
    sample["acl_number"] = number
    sample["acl_name"] = _text(name)
    sample["acl_direction"] = direction


def _flow_function(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    symbol, _ = _opaque(data, start, end, "extended function")
    sample["function"] = _text(symbol)


# --- counter records: each fills one group of the sample dict ---------------------------------------------------

_IF_COUNTER_NAMES = (
    "if_index",
    "if_type",
    "if_speed",
    "if_direction",
    "if_status",
    "if_in_octets",
    "if_in_ucast_pkts",
    "if_in_multicast_pkts",
    "if_in_broadcast_pkts",
    "if_in_discards",
    "if_in_errors",
    "if_in_unknown_protos",
    "if_out_octets",
    "if_out_ucast_pkts",
    "if_out_multicast_pkts",
    "if_out_broadcast_pkts",
    "if_out_discards",
    "if_out_errors",
    "if_promiscuous_mode",
)
_ETH_COUNTER_NAMES = (
    "alignment_errors",
    "fcs_errors",
    "single_collision_frames",
    "multiple_collision_frames",
    "sqe_test_errors",
    "deferred_transmissions",
    "late_collisions",
    "excessive_collisions",
    "internal_mac_transmit_errors",
    "carrier_sense_errors",
    "frame_too_longs",
    "internal_mac_receive_errors",
    "symbol_errors",
)
_TOKEN_RING_COUNTER_NAMES = (
    "line_errors",
    "burst_errors",
    "ac_errors",
    "abort_trans_errors",
    "internal_errors",
    "lost_frame_errors",
    "receive_congestions",
    "frame_copied_errors",
    "token_errors",
    "soft_errors",
    "hard_errors",
    "signal_loss",
    "transmit_beacons",
    "recoverys",
    "lobe_wires",
    "removes",
    "singles",
    "freq_errors",
)
_VG_COUNTER_NAMES = (
    "in_high_priority_frames",
    "in_high_priority_octets",
    "in_norm_priority_frames",
    "in_norm_priority_octets",
    "in_ipm_errors",
    "in_oversize_frame_errors",
    "in_data_errors",
    "in_null_addressed_frames",
    "out_high_priority_frames",
    "out_high_priority_octets",
    "transition_into_trainings",
    "hc_in_high_priority_octets",
    "hc_in_norm_priority_octets",
    "hc_out_high_priority_octets",
)
_VG = struct.Struct("!IQIQIIIIIQIQQQ")
_VLAN_COUNTER_NAMES = ("vlan_id", "octets", "ucast_pkts", "multicast_pkts", "broadcast_pkts", "discards")
_LAG_COUNTER_NAMES = (
    "lacpdus_rx",
    "marker_pdus_rx",
    "marker_response_pdus_rx",
    "unknown_rx",
    "illegal_rx",
    "lacpdus_tx",
    "marker_pdus_tx",
    "marker_response_pdus_tx",
)
_PROCESSOR_NAMES = ("cpu_5s_percent", "cpu_1m_percent", "cpu_5m_percent", "total_memory", "free_memory")
_HOST_CPU_NAMES = (
    "load_one",
    "load_five",
    "load_fifteen",
    "proc_run",
    "proc_total",
    "cpu_num",
    "cpu_speed",
    "uptime",
    "cpu_user",
    "cpu_nice",
    "cpu_system",
    "cpu_idle",
    "cpu_wio",
    "cpu_intr",
    "cpu_sintr",
    "interrupts",
    "contexts",
    "cpu_steal",
    "cpu_guest",
    "cpu_guest_nice",
)
_HOST_MEMORY_NAMES = (
    "mem_total",
    "mem_free",
    "mem_shared",
    "mem_buffers",
    "mem_cached",
    "swap_total",
    "swap_free",
    "page_in",
    "page_out",
    "swap_in",
    "swap_out",
)
_HOST_MEMORY = struct.Struct("!QQQQQQQIIII")
_HOST_CPU = struct.Struct("!3f17I")
# the last three CPU fields came later in the spec's life; older agents send 68 bytes
_HOST_CPU_SHORT = struct.Struct("!3f14I")


def _fixed_counters(
    data: bytes, start: int, end: int, layout: struct.Struct, names: tuple[str, ...], what: str
) -> dict[str, Any]:
    _need(start, end, layout.size, what)
    return dict(zip(names, layout.unpack_from(data, start), strict=True))


def _counters_interface(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    counters = _fixed_counters(data, start, end, _IF_COUNTERS, _IF_COUNTER_NAMES, "generic interface")
    status = counters["if_status"]
    counters["if_admin_status"] = "up" if status & 1 else "down"
    counters["if_oper_status"] = "up" if status & 2 else "down"
    sample["interface"] = counters


def _counters_ethernet(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["ethernet"] = _fixed_counters(data, start, end, _ETH_COUNTERS, _ETH_COUNTER_NAMES, "ethernet")


def _counters_token_ring(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["token_ring"] = _fixed_counters(
        data, start, end, _TOKEN_RING_COUNTERS, _TOKEN_RING_COUNTER_NAMES, "token ring"
    )


def _counters_vg(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["vg"] = _fixed_counters(data, start, end, _VG, _VG_COUNTER_NAMES, "100BaseVG")


def _counters_vlan(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["vlan"] = _fixed_counters(data, start, end, _VLAN_COUNTERS, _VLAN_COUNTER_NAMES, "VLAN")


def _counters_lag(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, _LAG_COUNTERS.size, "LAG port")
    actor, partner, aggregator, state, *counts = _LAG_COUNTERS.unpack_from(data, start)
    lag: dict[str, Any] = {
        "actor_system_id": mac_text(actor),
        "partner_oper_system_id": mac_text(partner),
        "attached_agg_id": aggregator,
        "actor_admin_state": state[0],
        "actor_oper_state": state[1],
        "partner_admin_state": state[2],
        "partner_oper_state": state[3],
    }
    lag.update(zip(_LAG_COUNTER_NAMES, counts, strict=True))
    sample["lag"] = lag


def _counters_processor(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["processor"] = _fixed_counters(
        data, start, end, _PROCESSOR_COUNTERS, _PROCESSOR_NAMES, "processor"
    )


def _counters_port_name(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    name, _ = _opaque(data, start, end, "port name")
    sample["port_name"] = _text(name)


def _counters_host_description(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    hostname, offset = _opaque(data, start, end, "host description")
    _need(offset, end, 16 + 8, "host description")
    uuid = data[offset : offset + 16]
    machine_type, os_name = _U32X2.unpack_from(data, offset + 16)
    os_release, _ = _opaque(data, offset + 24, end, "host description")
    sample["host"] = {
        "hostname": _text(hostname),
        "uuid": uuid.hex(),
        "machine_type": machine_type,
        "os_name": os_name,
        "os_release": _text(os_release),
    }


def _counters_host_cpu(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    if end - start >= _HOST_CPU.size:
        cpu = _fixed_counters(data, start, end, _HOST_CPU, _HOST_CPU_NAMES, "host CPU")
    else:
        cpu = _fixed_counters(data, start, end, _HOST_CPU_SHORT, _HOST_CPU_NAMES[:17], "host CPU")
    for name in ("load_one", "load_five", "load_fifteen"):
        # NaN and infinity are no JSON: Elasticsearch rejects the whole document for them
        if not math.isfinite(cpu[name]):
            cpu[name] = None
    sample["host_cpu"] = cpu


def _counters_host_memory(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    sample["host_memory"] = _fixed_counters(data, start, end, _HOST_MEMORY, _HOST_MEMORY_NAMES, "host memory")


# the rest of sflow_host.txt (enterprise 0, formats 2001-2010 and 2100-2104): names are the spec's, in snake_case

_HOST_DISK_IO = struct.Struct("!QQiIQIIQI")
_HOST_DISK_IO_NAMES = (
    "disk_total",
    "disk_free",
    "part_max_used",  # hundredths of a percent of the fullest partition; -1 unknown (then left out)
    "reads",
    "bytes_read",
    "read_time",
    "writes",
    "bytes_written",
    "write_time",
)
_NET_IO = struct.Struct("!QIIIQIII")
_HOST_NET_IO_NAMES = (
    "bytes_in",
    "pkts_in",
    "errs_in",
    "drops_in",
    "bytes_out",
    "pkts_out",
    "errs_out",
    "drops_out",
)
_VIRT_NET_IO_NAMES = (
    "bytes_in",
    "packets_in",
    "errs_in",
    "drops_in",
    "bytes_out",
    "packets_out",
    "errs_out",
    "drops_out",
)
_MIB2_IP_NAMES = (
    "ip_forwarding",
    "ip_default_ttl",
    "ip_in_receives",
    "ip_in_hdr_errors",
    "ip_in_addr_errors",
    "ip_forw_datagrams",
    "ip_in_unknown_protos",
    "ip_in_discards",
    "ip_in_delivers",
    "ip_out_requests",
    "ip_out_discards",
    "ip_out_no_routes",
    "ip_reasm_timeout",
    "ip_reasm_reqds",
    "ip_reasm_oks",
    "ip_reasm_fails",
    "ip_frag_oks",
    "ip_frag_fails",
    "ip_frag_creates",
)
_MIB2_IP = struct.Struct("!19I")
_MIB2_ICMP_NAMES = (
    "icmp_in_msgs",
    "icmp_in_errors",
    "icmp_in_dest_unreachs",
    "icmp_in_time_excds",
    "icmp_in_param_probs",
    "icmp_in_src_quenchs",
    "icmp_in_redirects",
    "icmp_in_echos",
    "icmp_in_echo_reps",
    "icmp_in_timestamps",
    "icmp_in_addr_masks",
    "icmp_in_addr_mask_reps",
    "icmp_out_msgs",
    "icmp_out_errors",
    "icmp_out_dest_unreachs",
    "icmp_out_time_excds",
    "icmp_out_param_probs",
    "icmp_out_src_quenchs",
    "icmp_out_redirects",
    "icmp_out_echos",
    "icmp_out_echo_reps",
    "icmp_out_timestamps",
    "icmp_out_timestamp_reps",
    "icmp_out_addr_masks",
    "icmp_out_addr_mask_reps",
)
_MIB2_ICMP = struct.Struct("!25I")
_MIB2_TCP_NAMES = (
    "tcp_rto_algorithm",
    "tcp_rto_min",
    "tcp_rto_max",
    "tcp_max_conn",  # signed: MIB-II's -1 for a dynamic limit
    "tcp_active_opens",
    "tcp_passive_opens",
    "tcp_attempt_fails",
    "tcp_estab_resets",
    "tcp_curr_estab",
    "tcp_in_segs",
    "tcp_out_segs",
    "tcp_retrans_segs",
    "tcp_in_errs",
    "tcp_out_rsts",
    "tcp_in_csum_errors",
)
_MIB2_TCP = struct.Struct("!IIIi11I")
_MIB2_UDP_NAMES = (
    "udp_in_datagrams",
    "udp_no_ports",
    "udp_in_errors",
    "udp_out_datagrams",
    "udp_rcvbuf_errors",
    "udp_sndbuf_errors",
    "udp_in_csum_errors",
)
_MIB2_UDP = struct.Struct("!7I")
_VIRT_NODE = struct.Struct("!IIQQI")
_VIRT_NODE_NAMES = ("mhz", "cpus", "memory", "memory_free", "num_domains")
_VIRT_CPU = struct.Struct("!III")
_VIRT_CPU_NAMES = ("state", "cpu_time", "nr_virt_cpu")
_VIRT_MEMORY = struct.Struct("!QQ")
_VIRT_MEMORY_NAMES = ("memory", "max_memory")
_VIRT_DISK_IO = struct.Struct("!QQQIQIQI")
_VIRT_DISK_IO_NAMES = (
    "capacity",
    "allocation",
    "available",
    "rd_req",
    "rd_bytes",
    "wr_req",
    "wr_bytes",
    "errs",
)
MAX_ADAPTERS = 1024  # adapters per record, MAC addresses per adapter: bounds on one record's work


def _fixed_group(
    group: str, layout: struct.Struct, names: tuple[str, ...], what: str
) -> Callable[[bytes, int, int, dict[str, Any]], None]:
    """The parser of a counter record that is a fixed run of numbers: all of it becomes ``sample[group]``."""

    def parse(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
        sample[group] = _fixed_counters(data, start, end, layout, names, what)

    return parse


def _counters_host_adapters(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 4, "host adapters")
    (count,) = _U32.unpack_from(data, start)
    if count > MAX_ADAPTERS:
        raise SflowError("bad_record_length", f"host adapters: {count} adapters declared")
    offset = start + 4
    adapters = []
    for _ in range(count):
        _need(offset, end, 8, "host adapters")
        if_index, macs = _U32X2.unpack_from(data, offset)
        offset += 8
        # XDR opaque mac[6]: six bytes padded to eight
        if macs > MAX_ADAPTERS or macs * 8 > end - offset:
            raise SflowError("bad_record_length", f"host adapter {if_index}: {macs} MAC addresses do not fit")
        addresses = [mac_text(data[offset + 8 * i : offset + 8 * i + 6]) for i in range(macs)]
        offset += 8 * macs
        adapters.append({"if_index": if_index, "mac_addresses": addresses})
    sample["host_adapters"] = adapters


def _counters_host_parent(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    _need(start, end, 8, "host parent")
    container_type, container_index = _U32X2.unpack_from(data, start)
    sample["host_parent"] = {"container_type": container_type, "container_index": container_index}


def _counters_host_disk_io(data: bytes, start: int, end: int, sample: dict[str, Any]) -> None:
    disk = _fixed_counters(data, start, end, _HOST_DISK_IO, _HOST_DISK_IO_NAMES, "host disk I/O")
    if disk["part_max_used"] < 0:
        del disk["part_max_used"]
    sample["host_disk_io"] = disk
