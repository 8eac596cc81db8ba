"""Real exporters: Debian's softflowd (NetFlow v5, v9, IPFIX) and pmacctd (nfprobe, sfprobe) export a pcap of
known traffic built here; a real UDP socket captures what they send; FlowDecoder decodes it. Per 5-tuple, bytes
and packets must equal the known truth exactly (every exporter here runs unsampled: sfprobe at 1 in 1).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from flowsink.decode import DecoderSettings, FlowDecoder

pytestmark = pytest.mark.integration

SOFTFLOWD = shutil.which("softflowd") or "/usr/sbin/softflowd"
PMACCTD = shutil.which("pmacctd") or "/usr/sbin/pmacctd"
QUIET_S = 1.5  # the exporter is done when nothing arrives for this long
START = 1_700_000_000.0


class KnownTraffic:
    """A pcap of TCP and UDP flows over IPv4 (and IPv6 when asked) and the truth about them."""

    def __init__(self, path: Path, ipv6: bool, sentinels: bool, flows: int = 16) -> None:
        rng = random.Random(2024)
        packets = []
        self.frame_sizes: list[int] = []
        self.ip_bytes: Counter[tuple] = Counter()  # IP header and payload, as NetFlow counts octets
        self.frame_bytes: Counter[tuple] = Counter()  # whole Ethernet frames, as sFlow reports frame_length
        self.packets: Counter[tuple] = Counter()
        stamp = START
        for number in range(flows):
            v6 = ipv6 and number % 4 == 3
            src = f"2001:db8:{number}::1" if v6 else f"10.0.{number % 250}.{number // 250 + 1}"
            dst = f"2001:db8:ff:{number}::2" if v6 else f"10.1.{number % 250}.2"
            sport, dport = 20000 + number, (80, 443, 53, 123)[number % 4]
            transport, proto = (TCP, 6) if number % 2 == 0 else (UDP, 17)
            network = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
            for _ in range(rng.randint(1, 25)):
                frame = (
                    Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
                    / network
                    / transport(sport=sport, dport=dport)
                    / (b"p" * rng.randint(0, 1400))
                )
                frame.time = stamp
                stamp += 0.003
                packets.append(frame)
                key = (src, dst, sport, dport, proto)
                self.ip_bytes[key] += len(frame) - 14
                self.frame_bytes[key] += len(frame)
                self.packets[key] += 1
                self.frame_sizes.append(len(frame))
        if sentinels:
            # pmacctd's nfprobe expires flows by packet time: two packets hours later make it export the rest
            # (and sfprobe drops the samples of its last, unfilled datagram: those must not be ones we count)
            for later in [10_000, 20_000] + [
                20_001
            ] * 62:  # pmacctd's sfprobe loses its last partial datagram
                sentinel = Ether() / IP(src="10.255.255.1", dst="10.255.255.2") / UDP(sport=9, dport=9) / b"s"
                sentinel.time = stamp + later
                packets.append(sentinel)
        wrpcap(str(path), packets)


def capture_export(
    command: list[str], port_placeholder: str = "PORT", config: tuple[Path, str] | None = None
) -> list[bytes]:
    """Run an exporter pointed at a fresh UDP socket; every datagram it sends until it falls quiet."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    receiver.bind(("127.0.0.1", 0))
    port = str(receiver.getsockname()[1])
    if config is not None:
        config[0].write_text(config[1].replace(port_placeholder, port))
    argv = [part.replace(port_placeholder, port) for part in command]
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    datagrams = []
    receiver.settimeout(QUIET_S)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                datagrams.append(receiver.recv(65535))
            except TimeoutError:
                if datagrams or process.poll() is not None:
                    break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log.close()
        receiver.close()
    return datagrams


def decode_all(datagrams: list[bytes]) -> list[dict]:
    decoder = FlowDecoder(DecoderSettings())
    documents = []
    for number, payload in enumerate(datagrams):
        result = decoder.decode(payload, "127.0.0.1", int(START * 1e9) + number)
        assert result.errors == [], result.errors
        documents.extend(result.documents)
    return documents


def per_tuple(documents: list[dict], action: str) -> tuple[Counter[tuple], Counter[tuple]]:
    octets: Counter[tuple] = Counter()
    packets: Counter[tuple] = Counter()
    for doc in documents:
        if doc["event"]["action"] != action or doc["source"]["ip"].startswith("10.255."):
            continue
        key = (
            doc["source"]["ip"],
            doc["destination"]["ip"],
            doc["source"]["port"],
            doc["destination"]["port"],
            int(doc["network"]["iana_number"]),
        )
        octets[key] += doc["network"]["bytes"]
        packets[key] += doc["network"]["packets"]
    return octets, packets


needs_softflowd = pytest.mark.skipif(not Path(SOFTFLOWD).exists(), reason="softflowd is not installed")
needs_pmacctd = pytest.mark.skipif(not Path(PMACCTD).exists(), reason="pmacctd is not installed")


@needs_softflowd
@pytest.mark.parametrize(
    ("version", "action", "ipv6"),
    [("5", "netflow_flow", False), ("9", "netflow_flow", True), ("10", "ipfix_flow", True)],
)
def test_softflowd_export_matches_the_known_traffic(tmp_path: Path, version: str, action: str, ipv6: bool):
    pcap = tmp_path / "known.pcap"
    truth = KnownTraffic(pcap, ipv6=ipv6, sentinels=False)
    datagrams = capture_export([SOFTFLOWD, "-r", str(pcap), "-n", "127.0.0.1:PORT", "-v", version, "-d"])
    assert datagrams, "softflowd sent nothing"
    octets, packets = per_tuple(decode_all(datagrams), action)
    assert octets == truth.ip_bytes
    assert packets == truth.packets


@needs_pmacctd
@pytest.mark.parametrize(("version", "action"), [("10", "ipfix_flow")])  # softflowd covers v9 already
def test_pmacctd_nfprobe_export_matches_the_known_traffic(tmp_path: Path, version: str, action: str):
    pcap = tmp_path / "known.pcap"
    truth = KnownTraffic(pcap, ipv6=True, sentinels=True)
    config = (
        f"daemonize: false\npcap_savefile: {pcap}\nplugins: nfprobe[nf]\n"
        f"nfprobe_receiver[nf]: 127.0.0.1:PORT\nnfprobe_version[nf]: {version}\n"
    )
    config_path = tmp_path / "pmacctd.conf"
    datagrams = capture_export([PMACCTD, "-f", str(config_path)], config=(config_path, config))
    assert datagrams, "pmacctd nfprobe sent nothing"
    octets, packets = per_tuple(decode_all(datagrams), action)
    assert octets == truth.ip_bytes
    assert packets == truth.packets


@needs_pmacctd
def test_pmacctd_sfprobe_export_matches_the_known_traffic(tmp_path: Path):
    """sfprobe samples 1 in 1 here, so every frame is a sample: per 5-tuple the renormalised bytes equal the frame
    bytes exactly. At a rate N > 1 the estimate is unbiased with a standard error of about sqrt(N * sum(x^2))."""
    pcap = tmp_path / "known.pcap"
    truth = KnownTraffic(pcap, ipv6=True, sentinels=True)  # its last samples are lost at EOF
    config = (
        f"daemonize: false\npcap_savefile: {pcap}\nplugins: sfprobe[sf]\n"
        f"sfprobe_receiver[sf]: 127.0.0.1:PORT\nsfprobe_agentip[sf]: 192.0.2.44\nsampling_rate: 1\n"
    )
    config_path = tmp_path / "pmacctd.conf"
    datagrams = capture_export([PMACCTD, "-f", str(config_path)], config=(config_path, config))
    assert datagrams, "pmacctd sfprobe sent nothing"
    documents = decode_all(datagrams)
    octets, packets = per_tuple(documents, "sflow_flow_sample")
    assert packets == truth.packets
    # sfprobe reports frame_length with the 4-byte FCS the sFlow spec asks for (pcap frames carry none)
    assert octets == {key: truth.frame_bytes[key] + 4 * truth.packets[key] for key in truth.frame_bytes}
    flows = [d for d in documents if d["event"]["action"] == "sflow_flow_sample"]
    assert {d["observer"]["ip"] for d in flows} == {"192.0.2.44"}
    assert {d["flow"]["sampling_rate"] for d in flows} == {1}


@needs_pmacctd
def test_pmacctd_sfprobe_sampled_estimate_within_its_bound(tmp_path: Path):
    """At 1 in N, pmacctd samples each packet with probability 1/N; the renormalised total estimates the truth
    without bias with a standard deviation of sqrt(N - 1) * sqrt(sum(x^2)) (Horvitz-Thompson). The estimate
    must fall within 5 of those deviations (a false alarm about once in 1.7 million runs)."""
    rate = 8
    pcap = tmp_path / "known.pcap"
    truth = KnownTraffic(pcap, ipv6=False, sentinels=True, flows=60)
    config = (
        f"daemonize: false\npcap_savefile: {pcap}\nplugins: sfprobe[sf]\n"
        f"sfprobe_receiver[sf]: 127.0.0.1:PORT\nsampling_rate: {rate}\n"
    )
    config_path = tmp_path / "pmacctd.conf"
    documents = decode_all(capture_export([PMACCTD, "-f", str(config_path)], config=(config_path, config)))
    flows = [
        d
        for d in documents
        if d["event"]["action"] == "sflow_flow_sample" and not d["source"]["ip"].startswith("10.255.")
    ]
    assert flows and {d["flow"]["sampling_rate"] for d in flows} == {rate}
    frames = [size + 4 for size in truth.frame_sizes]  # sfprobe counts the FCS
    for estimate, truth_total, squares in (
        (sum(d["network"]["packets"] for d in flows), len(frames), len(frames)),
        (sum(d["network"]["bytes"] for d in flows), sum(frames), sum(x * x for x in frames)),
    ):
        bound = 5 * ((rate - 1) * squares) ** 0.5
        assert abs(estimate - truth_total) <= bound, (estimate, truth_total, bound)
