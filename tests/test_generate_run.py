"""Generator runs over real UDP sockets: pacing accuracy, and manifests that agree with what a receiver got."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections import defaultdict

import pytest
from netflow.v9 import V9ExportPacket

from flowsink.generate.manifest import canonical_key, load_manifest, tuple_digest
from flowsink.generate.model import TrafficSettings
from flowsink.generate.pacing import Pacer
from flowsink.generate.sender import GeneratorRun, GeneratorSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + 0.0003  # sleeps overshoot, as real ones do


def test_pacer_keeps_the_long_run_rate_despite_sleep_overshoot():
    clock = FakeClock()
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep)
    pacer.start()
    for _ in range(2000):
        pacer.wait(5)  # 5 flows per datagram
        clock.now += 0.0001  # time spent sending
    elapsed = pacer.finish()
    assert 10_000 / elapsed == pytest.approx(1000, rel=0.001)
    assert pacer.behind_s == 0


def test_pacer_forgives_debt_it_cannot_repay_and_counts_it():
    clock = FakeClock()
    pacer = Pacer(100, burst_s=0.5, clock=clock, sleep=clock.sleep)
    pacer.start()
    pacer.wait(1)
    clock.now += 3.0  # a stall: no catch-up burst afterwards
    pacer.wait(1)
    assert pacer.behind_s == pytest.approx(2.99, abs=0.01)
    assert pacer.next_at == pytest.approx(clock.now + 0.01)


class Receiver:
    """A UDP socket drained by a thread; keeps (source address, payload) of every datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[tuple[str, bytes]] = []
        self.running = True
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while self.running:
            try:
                payload, (address, _) = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.datagrams.append((address, payload))

    def stop(self) -> None:
        time.sleep(0.3)
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    if r.running:
        r.stop()


@pytest.mark.integration
@pytest.mark.parametrize("pace_datagrams", [False, True])
def test_achieved_rate_within_two_percent(receiver, pace_datagrams):
    settings = GeneratorSettings(
        protocol="ipfix",
        port=receiver.port,
        rate=3000,
        duration=3.0,
        exporters=2,
        progress=False,
        datagram_rate=150 if pace_datagrams else None,
    )
    started = time.perf_counter()
    summary = GeneratorRun(settings).run()
    wall = time.perf_counter() - started
    receiver.stop()
    achieved = summary.datagram_rate if pace_datagrams else summary.flow_rate
    target = 150 if pace_datagrams else 3000
    assert summary.reached
    assert achieved == pytest.approx(target, rel=0.02)
    # measured by the receiver too, not only by the sender's own clock
    assert len(receiver.datagrams) == summary.datagrams
    assert wall < 3.0 * 1.1 + 1.0


@pytest.mark.integration
def test_a_rate_the_machine_cannot_reach_is_reported(receiver, caplog):
    settings = GeneratorSettings(
        protocol="v5",
        port=receiver.port,
        rate=5_000_000,
        duration=1.0,
        progress=False,
        traffic=TrafficSettings(ipv6_share=0),
    )
    with caplog.at_level("WARNING", logger="flowsink.generate"):
        summary = GeneratorRun(settings).run()
    receiver.stop()
    assert not summary.reached and summary.flow_rate < 5_000_000 * 0.98
    assert "could not reach 5000000 flows/s" in caplog.text
    assert len(receiver.datagrams) == summary.datagrams  # what was sent is still exactly accounted


@pytest.mark.integration
def test_v9_manifest_agrees_with_what_the_receiver_decoded(receiver, tmp_path):
    manifest_path = tmp_path / "m.json"
    settings = GeneratorSettings(
        protocol="v9",
        port=receiver.port,
        rate=20000,
        duration=None,
        count=6000,
        exporters=3,
        malformed_share=0.05,
        manifest=manifest_path,
        progress=False,
        traffic=TrafficSettings(seed=11, ipv6_share=0.25),
        template_refresh_s=0.1,
    )
    summary = GeneratorRun(settings).run()
    receiver.stop()
    manifest = load_manifest(manifest_path)
    assert manifest["complete"] and summary.flows == 6000 == manifest["totals"]["flows"]
    assert set(manifest["exporters"]) == {"127.0.0.11", "127.0.0.12", "127.0.0.13"}

    templates: dict[str, dict] = defaultdict(dict)
    tables: dict[str, dict] = defaultdict(dict)
    datagrams: dict[str, int] = defaultdict(int)
    malformed: dict[str, int] = defaultdict(int)
    for address, payload in receiver.datagrams:
        if len(payload) < 20 or payload[:2] != b"\x00\x09":
            malformed[address] += 1
            continue
        datagrams[address] += 1
        packet = V9ExportPacket(payload, templates[address])
        for record in packet.flows:
            d = record.data
            src = d.get("IPV4_SRC_ADDR") or d.get("IPV6_SRC_ADDR")
            dst = d.get("IPV4_DST_ADDR") or d.get("IPV6_DST_ADDR")
            key = canonical_key(
                str(ipaddress.ip_address(src)),
                str(ipaddress.ip_address(dst)),
                d["L4_SRC_PORT"],
                d["L4_DST_PORT"],
                d["PROTOCOL"],
            )
            totals = tables[address].setdefault(key, [0, 0, 0])
            totals[0] += 1
            totals[1] += d["IN_BYTES"]
            totals[2] += d["IN_PKTS"]
    for address, exporter in manifest["exporters"].items():
        table = tables[address]
        assert exporter["flows"] == sum(v[0] for v in table.values())
        assert exporter["bytes"] == sum(v[1] for v in table.values())
        assert exporter["packets"] == sum(v[2] for v in table.values())
        assert exporter["datagrams"] == datagrams[address]
        assert exporter["malformed_datagrams"] == malformed[address] > 0
        assert exporter["digest"] == tuple_digest((k, tuple(v)) for k, v in table.items())
        assert exporter["table"] == {k: tuple(v) for k, v in table.items()}
        assert exporter["options_records"] > 0


@pytest.mark.integration
def test_sflow_manifest_sampled_and_represented_counts(receiver, tmp_path):
    from flowsink.generate.sflow import DATAGRAM_HEADER

    manifest_path = tmp_path / "s.json"
    settings = GeneratorSettings(
        protocol="sflow",
        port=receiver.port,
        rate=5000,
        count=2000,
        duration=None,
        exporters=2,
        manifest=manifest_path,
        progress=False,
        sflow_sampling_rate=256,
        counter_interval_s=0.2,
    )
    GeneratorRun(settings).run()
    receiver.stop()
    manifest = json.loads(manifest_path.read_text())
    samples: dict[str, int] = defaultdict(int)
    for address, payload in receiver.datagrams:
        agent = socket.inet_ntoa(payload[8:12])
        assert agent == address  # the agent address is the exporter's source address
        samples[address] += DATAGRAM_HEADER.unpack_from(payload)[6]
    for address, exporter in manifest["exporters"].items():
        assert samples[address] == exporter["sampled"]["samples"] + exporter["counter_samples"]
        assert exporter["flows"] == exporter["sampled"]["samples"]
        assert exporter["packets"] == 256 * exporter["flows"]
        assert exporter["bytes"] == 256 * exporter["sampled"]["frame_bytes"]
        represented = exporter["represented"]
        # the estimate lies within a few standard deviations of what the samples stand for
        assert (
            abs(exporter["packets"] - represented["packets"])
            < 5 * represented["packets_variance"] ** 0.5 + 256 * 64
        )
        assert represented["flows"] > exporter["flows"]
