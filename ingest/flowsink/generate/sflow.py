"""sFlow version 5 datagrams (sflow.org/sflow_version_5.txt): flow samples carrying raw Ethernet/IPv4/IPv6/TCP/UDP/
ICMP headers, and generic interface counter samples; plus the packet sampler that turns modelled flows into samples."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import numpy as np

from flowsink.generate.model import TCP, UDP, Flow, TrafficModel
from flowsink.generate.pcap import internet_checksum

DATAGRAM_HEADER = struct.Struct("!II4sIIII")
FLOW_SAMPLE_HEAD = struct.Struct("!IIIIIIIII")  # format, length, seq, source id, rate, pool, drops, in, out
RAW_HEADER_HEAD = struct.Struct("!IIIIII")  # format, length, header protocol, frame length, stripped, size
COUNTER_SAMPLE_HEAD = struct.Struct("!IIIII")  # format, length, seq, source id, record count
GENERIC_COUNTERS = struct.Struct("!IIQIIQIIIIIIQIIIIII")  # 88 bytes, counters_sample format 1
ETHERNET_OVERHEAD = 18  # 14-byte header + 4-byte FCS: frame_length counts both, as the spec asks
FCS_BYTES = 4
MIN_FRAME = 64
MAX_HEADER_BYTES = 128  # the usual agent default for sampled header size
SAMPLE_RECORD_BYTES = FLOW_SAMPLE_HEAD.size + 4 + RAW_HEADER_HEAD.size + MAX_HEADER_BYTES
COUNTER_RECORD_BYTES = COUNTER_SAMPLE_HEAD.size + 8 + 88


@dataclass(slots=True)
class Sample:
    """One sampled packet of ``flow``: its frame length and the sampling source's pool at that moment."""

    flow: Flow
    frame_length: int
    ip_length: int
    sample_pool: int
    # what all traffic up to and including this sample's flow stands for, cumulative over the agent's life:
    # (flows, packets, bytes, packets variance, bytes variance); the manifest takes it from the last sample sent
    represented: tuple[int, int, int, float, float] = (0, 0, 0, 0.0, 0.0)


class PacketSampler:
    """1-in-N random packet sampling of modelled flows, as an sFlow agent does on its interfaces.

    Every packet of a flow is sampled with probability 1/N, so the count per flow is Binomial(packets, 1/N).
    Works on the model's arrays so that the many flows that yield no sample never become objects, and keeps what
    the sampled traffic stands for (the population) together with the variance of its estimator, for the manifest.
    """

    def __init__(self, rng: np.random.Generator, rate: int):
        self.rng = rng
        self.rate = rate
        self.pool: dict[int, int] = {}  # data source (ifIndex) -> packets seen, the sample_pool counter
        self.drawn = (0, 0, 0, 0.0, 0.0)  # population drawn so far, in Sample.represented's layout

    def sample(self, model: TrafficModel, draw: dict[str, np.ndarray]) -> list[Sample]:
        packets = draw["packets"]
        frames = frame_lengths(model, draw)
        counts = self.rng.binomial(packets, 1.0 / self.rate)
        # Horvitz-Thompson with inclusion probability p = 1/N: Var = sum over packets of x^2 (1 - p) / p
        inflation = (1.0 - 1.0 / self.rate) * self.rate
        base = self.drawn
        cum_packets = np.cumsum(packets)
        cum_bytes = np.cumsum(packets * frames)
        cum_bytes_var = np.cumsum(packets * frames.astype(np.float64) ** 2) * inflation
        chosen = np.flatnonzero(counts)
        sampled = (
            model.complete(draw, chosen)
            if "client" not in draw
            else {k: (v[chosen] if v.ndim else v) for k, v in draw.items()}
        )
        samples: list[Sample] = []
        for i, flow in zip(chosen, model.materialise(sampled, range(len(chosen))), strict=True):
            frame = int(frames[i])
            count = int(counts[i])
            before = (
                int(cum_packets[i] - packets[i]),
                int(cum_bytes[i] - packets[i] * frames[i]),
                float(cum_bytes_var[i]) - float(packets[i]) * frame * frame * inflation,
            )
            pool = self.pool.get(flow.in_if, 0)
            for k in range(count):
                # a run can stop between two samples of one long flow: the k-th of a flow's c samples stands
                # for the first (k+1)/c of its packets, so the population never runs ahead of the samples sent
                share = (k + 1) / count
                seen_packets = before[0] + round(share * int(packets[i]))
                represented = (
                    base[0] + int(i) + 1,
                    base[1] + seen_packets,
                    base[2] + before[1] + round(share * int(packets[i]) * frame),
                    base[3] + seen_packets * inflation,
                    base[4] + before[2] + share * float(packets[i]) * frame * frame * inflation,
                )
                samples.append(
                    Sample(flow, frame, frame - ETHERNET_OVERHEAD, pool + (k + 1) * self.rate, represented)
                )
            self.pool[flow.in_if] = pool + flow.packets
        if len(packets):
            self.drawn = (
                base[0] + len(packets),
                base[1] + int(cum_packets[-1]),
                base[2] + int(cum_bytes[-1]),
                base[3] + float(cum_packets[-1]) * inflation,
                base[4] + float(cum_bytes_var[-1]),
            )
        return samples


def frame_lengths(model: TrafficModel, draw: dict[str, np.ndarray]) -> np.ndarray:
    """The layer-2 length of every packet of each drawn flow (Ethernet header and FCS included, 64 at least)."""
    names = np.array(model.protocol_names)[draw["kind"]]
    l4 = np.where(names == "tcp", 20, 8)
    minimum = np.where(draw["version"] == 4, 20, 40) + l4
    return np.maximum(np.maximum(draw["size"], minimum) + ETHERNET_OVERHEAD, MIN_FRAME)


def _mac(raw_ip: bytes) -> bytes:
    return b"\x02\x00" + raw_ip[-4:]  # locally administered, derived from the address


def packet_header(sample: Sample, sequence: int) -> bytes:
    """The first bytes of the sampled frame: Ethernet, IP, transport header, then zero payload."""
    flow = sample.flow
    if flow.protocol == TCP:
        l4 = struct.pack(
            "!HHIIBBHHH",
            flow.src_port,
            flow.dst_port,
            sequence,
            0,
            5 << 4,
            flow.tcp_flags & 0xFF,
            65535,
            0,
            0,
        )
    elif flow.protocol == UDP:
        ip_header = 20 if flow.ip_version == 4 else 40
        l4 = struct.pack("!HHHH", flow.src_port, flow.dst_port, sample.ip_length - ip_header, 0)
    else:
        icmp_type, icmp_code = flow.dst_port >> 8, flow.dst_port & 0xFF
        l4 = struct.pack("!BBHI", icmp_type, icmp_code, 0, sequence & 0xFFFFFFFF)
    if flow.ip_version == 4:
        ethertype = 0x0800
        head = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            flow.tos,
            sample.ip_length,
            sequence & 0xFFFF,
            0x4000,
            64,
            flow.protocol,
            0,
            flow.src_raw,
            flow.dst_raw,
        )
        head = head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:]
    else:
        ethertype = 0x86DD
        head = struct.pack(
            "!IHBB16s16s",
            6 << 28 | flow.tos << 20,
            sample.ip_length - 40,
            flow.protocol,
            64,
            flow.src_raw,
            flow.dst_raw,
        )
    frame = _mac(flow.dst_raw) + _mac(flow.src_raw) + struct.pack("!H", ethertype) + head + l4
    captured = min(sample.frame_length - FCS_BYTES, MAX_HEADER_BYTES)
    return (frame + b"\x00" * captured)[:captured]


class SflowEncoder:
    """One sFlow agent: agent address, datagram and per-source sample sequences, interface counters."""

    protocol = "sflow"
    header_size = DATAGRAM_HEADER.size

    def __init__(
        self,
        agent_address: str,
        boot_ms: int,
        *,
        sampling_rate: int = 512,
        counter_interval_ms: int = 5000,
        max_datagram_bytes: int = 1400,
        max_records: int = 1000,
        sub_agent_id: int = 0,
    ):
        self.agent = socket.inet_aton(agent_address)
        self.boot_ms = boot_ms
        self.sampling_rate = sampling_rate
        self.counter_interval_ms = counter_interval_ms
        self.max_datagram_bytes = max_datagram_bytes
        self.max_records = max_records
        self.sub_agent_id = sub_agent_id
        self.datagram_sequence = 0
        self.flow_sequences: dict[int, int] = {}  # source id -> flow samples sent
        self.counter_sequences: dict[int, int] = {}
        self.counters_sent_ms: int | None = None
        self.counter_samples = 0
        self.options_records = 0
        self.octets: dict[int, int] = {}  # ifIndex -> octets in, for the counters

    def _flow_sample(self, sample: Sample) -> bytes:
        flow = sample.flow
        seq = self.flow_sequences.get(flow.in_if, 0) + 1
        self.flow_sequences[flow.in_if] = seq
        self.octets[flow.in_if] = self.octets.get(flow.in_if, 0) + sample.frame_length * self.sampling_rate
        header = packet_header(sample, seq)
        padded = header + b"\x00" * (-len(header) % 4)
        record = (
            RAW_HEADER_HEAD.pack(1, 16 + len(padded), 1, sample.frame_length, FCS_BYTES, len(header)) + padded
        )
        body = (
            struct.pack(
                "!IIIIIIII",
                seq,
                flow.in_if,
                self.sampling_rate,
                sample.sample_pool & 0xFFFFFFFF,
                0,
                flow.in_if,
                flow.out_if,
                1,
            )
            + record
        )
        return struct.pack("!II", 1, len(body)) + body

    def _counter_sample(self, if_index: int, now_ms: int) -> bytes:
        seq = self.counter_sequences.get(if_index, 0) + 1
        self.counter_sequences[if_index] = seq
        octets = self.octets.get(if_index, 0)
        counters = GENERIC_COUNTERS.pack(
            if_index,
            6,
            10_000_000_000,
            1,
            3,
            octets,
            octets // 700,
            0,
            0,
            0,
            0,
            0,
            octets // 2,
            octets // 1400,
            0,
            0,
            0,
            0,
            0,
        )
        record = struct.pack("!II", 1, len(counters)) + counters
        body = struct.pack("!III", seq, if_index, 1) + record
        return struct.pack("!II", 2, len(body)) + body

    def _counters_due(self, now_ms: int) -> bool:
        if self.counter_interval_ms <= 0:
            return False
        return self.counters_sent_ms is None or now_ms - self.counters_sent_ms >= self.counter_interval_ms

    def pack(self, samples: list[Sample], now_ms: int) -> tuple[bytes, int]:
        """One datagram: interface counters when due, then as many leading flow samples as fit."""
        parts: list[bytes] = []
        if self._counters_due(now_ms):
            # two interfaces per datagram keep counter datagrams small; they rotate over all 16
            first = (self.counter_samples % 16) + 1
            for if_index in (first, first % 16 + 1):
                parts.append(self._counter_sample(if_index, now_ms))
            self.counter_samples += 2
            self.counters_sent_ms = now_ms
        budget = self.max_datagram_bytes - DATAGRAM_HEADER.size - sum(len(p) for p in parts)
        taken = max(1, min(len(samples), self.max_records, budget // SAMPLE_RECORD_BYTES)) if samples else 0
        parts.extend(self._flow_sample(s) for s in samples[:taken])
        self.datagram_sequence += 1
        header = DATAGRAM_HEADER.pack(
            5,
            1,
            self.agent,
            self.sub_agent_id,
            self.datagram_sequence,
            (now_ms - self.boot_ms) & 0xFFFFFFFF,
            len(parts),
        )
        return header + b"".join(parts), taken

    def accepts(self, flow: Flow) -> bool:
        return True
