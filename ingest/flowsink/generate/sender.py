"""The generator run: simulated exporters, pacing, malformed datagrams, manifest and progress display."""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowsink.errors import UserError
from flowsink.generate.ipfix import IpfixEncoder
from flowsink.generate.manifest import ExporterTruth, Manifest
from flowsink.generate.model import TrafficModel, TrafficSettings
from flowsink.generate.netflow_v5 import NetflowV5Encoder
from flowsink.generate.netflow_v9 import NetflowV9Encoder
from flowsink.generate.pacing import Pacer
from flowsink.generate.sflow import PacketSampler, Sample, SflowEncoder

log = logging.getLogger("flowsink.generate")

PROTOCOLS = ("v5", "v9", "ipfix", "sflow")
DEFAULT_PORTS = {"v5": 2055, "v9": 2055, "ipfix": 4739, "sflow": 6343}
UPTIME_AT_START_MS = 3_600_000  # exporters look as if they booted an hour before the run


@dataclass
class GeneratorSettings:
    """Everything a run needs; the CLI fills it from its options."""

    protocol: str
    host: str = "127.0.0.1"
    port: int | None = None
    rate: float = 1000.0  # flows (sFlow: flow samples) per second
    datagram_rate: float | None = None  # if set, pace datagrams instead of flows
    duration: float | None = 10.0
    count: int | None = None
    exporters: int = 1
    source_base: str | None = None  # first exporter's source address; None: 127.0.0.11 on loopback
    domain_base: int = 100  # observation domain / source id / engine id of the first exporter
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    template_refresh_s: float = 10.0
    options: bool = True
    sampling_interval: int = 1
    ipfix_extras: bool = True
    sflow_sampling_rate: int = 512
    counter_interval_s: float = 5.0
    malformed_share: float = 0.0
    max_datagram_bytes: int = 1400
    records_per_datagram: int | None = None
    manifest: Path | None = None
    progress: bool = True

    def target_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.protocol]


@dataclass
class RunSummary:
    """What a run achieved, for the summary line and the tests."""

    flows: int
    datagrams: int
    malformed: int
    elapsed_s: float
    flow_rate: float
    datagram_rate: float
    target_rate: float
    target_unit: str
    reached: bool
    manifest: dict[str, Any]


@dataclass
class SimulatedExporter:
    """One exporter: its socket (bound to its own address), encoder, backlog of records and its truth."""

    address: str
    sock: socket.socket
    encoder: Any
    truth: ExporterTruth
    backlog: list[Any] = field(default_factory=list)
    sampler: PacketSampler | None = None


def _source_addresses(settings: GeneratorSettings) -> list[str]:
    base = settings.source_base
    if base is None:
        loopback = ipaddress.ip_address(socket.gethostbyname(settings.host)).is_loopback
        base = "127.0.0.11" if loopback else ""
    if base == "":
        if settings.exporters > 1:
            # a collector (and the check) tells exporters apart by address; several behind one would merge
            raise UserError(
                "several exporters need their own source addresses: give --source-base with "
                "addresses this host owns, or --exporters 1"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((settings.host, settings.target_port()))
            return [probe.getsockname()[0]]
    first = ipaddress.IPv4Address(base)
    return [str(first + i) for i in range(settings.exporters)]


def _encoder(settings: GeneratorSettings, index: int, address: str, boot_ms: int) -> Any:
    domain = settings.domain_base + index
    refresh_ms = int(settings.template_refresh_s * 1000)
    limit = settings.records_per_datagram or 1000
    if settings.protocol == "v5":
        return NetflowV5Encoder(domain, boot_ms, settings.sampling_interval, max_records=limit)
    if settings.protocol == "v9":
        return NetflowV9Encoder(
            domain,
            boot_ms,
            template_refresh_ms=refresh_ms,
            options=settings.options,
            sampling_interval=settings.sampling_interval,
            max_datagram_bytes=settings.max_datagram_bytes,
            max_records=limit,
        )
    if settings.protocol == "ipfix":
        return IpfixEncoder(
            domain,
            template_refresh_ms=refresh_ms,
            options=settings.options,
            extras=settings.ipfix_extras,
            sampling_interval=settings.sampling_interval,
            max_datagram_bytes=settings.max_datagram_bytes,
            max_records=limit,
        )
    return SflowEncoder(
        address,
        boot_ms,
        sampling_rate=settings.sflow_sampling_rate,
        counter_interval_ms=int(settings.counter_interval_s * 1000),
        max_datagram_bytes=settings.max_datagram_bytes,
        max_records=limit,
    )


def malformed_datagram(protocol: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """A datagram no collector can take as flows, and its kind.

    Every kind is rejected before a sequence number could be read, so deliberate garbage never looks like loss.
    """
    kind = str(rng.choice(["empty", "unknown_version", "truncated_header"]))
    if kind == "empty":
        return b"", kind
    if kind == "unknown_version":
        junk = rng.integers(0, 256, size=int(rng.integers(20, 120)), dtype=np.uint8).tobytes()
        return struct.pack("!H", int(rng.choice([11, 12, 0x1234, 0xBEEF]))) + junk, kind
    version = {"v5": b"\x00\x05", "v9": b"\x00\x09", "ipfix": b"\x00\x0a", "sflow": b"\x00\x00\x00\x05"}[
        protocol
    ]
    return version + bytes(int(rng.integers(2, 8))), kind


class GeneratorRun:
    """Drives the exporters round-robin, paced, until the duration or count is reached."""

    def __init__(self, settings: GeneratorSettings):
        self.settings = settings
        self.rng = np.random.default_rng(settings.traffic.seed)
        self.model = TrafficModel(settings.traffic, self.rng)
        self.target = (settings.host, settings.target_port())
        self.start_ms = int(time.time() * 1000)
        self.exporters = [self._exporter(i, a) for i, a in enumerate(_source_addresses(settings))]
        meta = {
            "protocol": settings.protocol,
            "target": f"{settings.host}:{settings.target_port()}",
            "seed": settings.traffic.seed,
            "settings": _settings_record(settings),
        }
        self.manifest = Manifest(settings.manifest, meta, [e.truth for e in self.exporters])

    def _exporter(self, index: int, address: str) -> SimulatedExporter:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            sock.bind((address, 0))
        except OSError as exc:
            sock.close()
            raise UserError(f"cannot bind exporter source address {address}: {exc}") from exc
        encoder = _encoder(self.settings, index, address, self.start_ms - UPTIME_AT_START_MS)
        truth = ExporterTruth(address=address, domain=self.settings.domain_base + index)
        sampler = None
        if self.settings.protocol == "sflow":
            sampler = PacketSampler(self.rng, self.settings.sflow_sampling_rate)
            truth.sampled = {"samples": 0, "frame_bytes": 0}
            truth.represented = _represented((0, 0, 0, 0.0, 0.0))
        return SimulatedExporter(address, sock, encoder, truth, sampler=sampler)

    def _refill(self, exporter: SimulatedExporter, wanted: int, now_ms: int) -> None:
        while len(exporter.backlog) < wanted:
            if exporter.sampler is None:
                flows = self.model.flows(max(wanted, 32), now_ms)
                exporter.backlog.extend(f for f in flows if exporter.encoder.accepts(f))
            else:
                # about rate / mean packets per flow population flows per sample: draw enough for the backlog
                draw = self.model.draw(
                    max(wanted, 32) * max(self.settings.sflow_sampling_rate // 4, 1), now_ms, complete=False
                )
                exporter.backlog.extend(exporter.sampler.sample(self.model, draw))

    def _account(self, exporter: SimulatedExporter, records: list[Any]) -> None:
        truth = exporter.truth
        for record in records:
            if isinstance(record, Sample):
                flow, rate = record.flow, self.settings.sflow_sampling_rate
                bytes_, packets = record.frame_length * rate, rate
                assert truth.sampled is not None
                truth.sampled["samples"] += 1
                truth.sampled["frame_bytes"] += record.frame_length
                truth.represented = _represented(record.represented)
            else:
                flow, interval = record, max(self.settings.sampling_interval, 1)
                bytes_, packets = flow.bytes * interval, flow.packets * interval
            truth.add_record(flow.key, bytes_, packets)

    def _send(self, exporter: SimulatedExporter, payload: bytes) -> bool:
        try:
            exporter.sock.sendto(payload, self.target)
            return True
        except OSError as exc:
            exporter.truth.send_errors += 1
            log.warning("send from %s failed: %s", exporter.address, exc)
            return False

    def run(self) -> RunSummary:
        s = self.settings
        per_datagram = s.records_per_datagram or 1000
        if s.datagram_rate:
            pacer, unit, target = Pacer(s.datagram_rate), "datagrams/s", s.datagram_rate
        else:
            pacer, unit, target = Pacer(s.rate), "flows/s", s.rate
        display = _Progress(s, unit)
        sent_flows = sent_datagrams = malformed = 0
        next_manifest = time.monotonic() + 1.0
        for exporter in self.exporters:  # the first refill is the slowest: keep it out of the paced time
            self._refill(exporter, per_datagram, int(time.time() * 1000))
        pacer.start()
        index = 0
        try:
            while True:
                if s.count is not None and sent_flows >= s.count:
                    break
                if s.duration is not None and pacer.scheduled_elapsed() >= s.duration:
                    break
                exporter = self.exporters[index % len(self.exporters)]
                index += 1
                now_ms = int(time.time() * 1000)
                self._refill(exporter, per_datagram, now_ms)
                offer = exporter.backlog
                if s.count is not None:
                    offer = offer[: s.count - sent_flows]
                payload, taken = exporter.encoder.pack(offer, now_ms)
                pacer.wait(1 if s.datagram_rate else taken)
                if self._send(exporter, payload):
                    self._account(exporter, exporter.backlog[:taken])
                    exporter.truth.datagrams += 1
                    sent_flows += taken
                    sent_datagrams += 1
                del exporter.backlog[:taken]
                exporter.truth.options_records = exporter.encoder.options_records
                exporter.truth.counter_samples = getattr(exporter.encoder, "counter_samples", 0)
                if s.malformed_share and self.rng.random() < s.malformed_share:
                    junk, kind = malformed_datagram(s.protocol, self.rng)
                    if self._send(exporter, junk):
                        exporter.truth.malformed_datagrams += 1
                        exporter.truth.malformed_kinds[kind] = exporter.truth.malformed_kinds.get(kind, 0) + 1
                        malformed += 1
                if time.monotonic() >= next_manifest:
                    next_manifest += 1.0
                    self.manifest.write()
                    display.update(sent_flows, sent_datagrams, pacer)
            elapsed = pacer.finish()
        finally:
            display.close()
            for exporter in self.exporters:
                exporter.sock.close()
        self.manifest.write(final=True)
        achieved = (sent_datagrams if s.datagram_rate else sent_flows) / elapsed if elapsed > 0 else 0.0
        reached = achieved >= 0.98 * target or (s.count is not None and sent_flows < per_datagram)
        if not reached:
            log.warning(
                "could not reach %.0f %s: achieved %.0f (%.1f s behind schedule); the sender is CPU-bound",
                target,
                unit,
                achieved,
                pacer.behind_s,
            )
        return RunSummary(
            flows=sent_flows,
            datagrams=sent_datagrams,
            malformed=malformed,
            elapsed_s=elapsed,
            flow_rate=sent_flows / elapsed if elapsed > 0 else 0.0,
            datagram_rate=sent_datagrams / elapsed if elapsed > 0 else 0.0,
            target_rate=target,
            target_unit=unit,
            reached=reached,
            manifest=self.manifest.document(final=True),
        )


def _represented(cumulative: tuple[int, int, int, float, float]) -> dict[str, float]:
    flows, packets, bytes_, packets_variance, bytes_variance = cumulative
    return {
        "flows": flows,
        "packets": packets,
        "bytes": bytes_,
        "packets_variance": packets_variance,
        "bytes_variance": bytes_variance,
    }


def _settings_record(s: GeneratorSettings) -> dict[str, Any]:
    return {
        "rate": s.rate,
        "datagram_rate": s.datagram_rate,
        "duration": s.duration,
        "count": s.count,
        "exporters": s.exporters,
        "ipv6_share": s.traffic.ipv6_share,
        "protocol_mix": s.traffic.protocol_mix,
        "template_refresh_s": s.template_refresh_s,
        "options": s.options,
        "sampling_interval": s.sampling_interval,
        "ipfix_extras": s.ipfix_extras,
        "sflow_sampling_rate": s.sflow_sampling_rate,
        "counter_interval_s": s.counter_interval_s,
        "malformed_share": s.malformed_share,
        "max_datagram_bytes": s.max_datagram_bytes,
        "records_per_datagram": s.records_per_datagram,
    }


class _Progress:
    """A rich progress bar with the achieved rate, refreshed about once a second (never per datagram)."""

    def __init__(self, settings: GeneratorSettings, unit: str):
        self.bar = None
        if not settings.progress:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.unit = unit
        self.by_count = settings.count is not None
        total = settings.count if self.by_count else settings.duration
        self.bar = Progress(
            TextColumn(f"[bold]{settings.protocol}[/] {{task.description}}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.bar.add_task(
            "sending", total=total if total and math.isfinite(total) else None, status=""
        )
        self.bar.start()

    def update(self, flows: int, datagrams: int, pacer: Pacer) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - (pacer.started or time.perf_counter()), 1e-9)
        status = f"{flows:,} flows, {datagrams:,} datagrams, {flows / elapsed:,.0f} flows/s"
        self.bar.update(self.task, completed=flows if self.by_count else elapsed, status=status)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
