"""Generator speed and pacing accuracy; peers measured in the same run.

1. Encoding: flows per CPU-second to build datagrams, per protocol (model draw excluded: the same flows are
   encoded). Peer: scapy's NetFlow v5 layers building the same v5 datagrams.
2. Pacing: achieved / target rate over real loopback UDP for a few targets, for the token bucket
   (``flowsink.generate.pacing.Pacer``) and for the naive peer that sleeps ``1 / rate`` after each datagram.
3. End to end: the highest flow rate one generator process reaches (a target it cannot meet, 1 exporter).

    python bench/bench_generate.py            # full run
    python bench/bench_generate.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

from flowsink.generate.ipfix import IpfixEncoder
from flowsink.generate.model import TrafficModel, TrafficSettings
from flowsink.generate.netflow_v5 import NetflowV5Encoder
from flowsink.generate.netflow_v9 import NetflowV9Encoder
from flowsink.generate.pacing import Pacer
from flowsink.generate.sender import GeneratorRun, GeneratorSettings
from flowsink.generate.sflow import PacketSampler, SflowEncoder

NOW_MS = 1_790_000_000_000


def encode_rate(encoder_factory, records) -> float:
    """Records per CPU-second to encode ``records`` into datagrams with a fresh encoder."""
    encoder = encoder_factory()
    started = time.process_time()
    for start in range(0, len(records), 1000):  # a backlog of up to 1000, as the sender keeps per exporter
        backlog = records[start : start + 1000]
        while backlog:
            _, taken = encoder.pack(backlog, NOW_MS)
            del backlog[:taken]
    return len(records) / max(time.process_time() - started, 1e-9)


def scapy_v5_rate(flows) -> float:
    from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

    started = time.process_time()
    for i in range(0, len(flows), 30):
        batch = flows[i : i + 30]
        records = [
            NetflowRecordV5(
                src=f.src,
                dst=f.dst,
                input=f.in_if,
                output=f.out_if,
                dpkts=f.packets,
                dOctets=f.bytes,
                first=1,
                last=2,
                srcport=f.src_port,
                dstport=f.dst_port,
                tcpFlags=f.tcp_flags,
                prot=f.protocol,
                tos=f.tos,
            )
            for f in batch
        ]
        packet = NetflowHeader() / NetflowHeaderV5(count=len(batch))
        for record in records:
            packet = packet / record
        bytes(packet)
    return len(flows) / max(time.process_time() - started, 1e-9)


def naive_paced_rate(rate: float, seconds: float, port: int, per_datagram: int) -> float:
    """The peer: send, then sleep one interval."""
    payload = b"\x00" * 1200
    interval = per_datagram / rate
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sock.sendto(payload, ("127.0.0.1", port))
            sent += per_datagram
            time.sleep(interval)
        return sent / (time.perf_counter() - started)


def bucket_paced_rate(rate: float, seconds: float, port: int, per_datagram: int) -> float:
    payload = b"\x00" * 1200
    pacer = Pacer(rate)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        pacer.start()
        while pacer.scheduled_elapsed() < seconds:
            pacer.wait(per_datagram)
            sock.sendto(payload, ("127.0.0.1", port))
            sent += per_datagram
        return sent / pacer.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of about a minute")
    args = parser.parse_args()
    flows_n = 6000 if args.quick else 60000
    repeats = 3 if args.quick else 5
    pace_s = 1.0 if args.quick else 4.0

    model = TrafficModel(TrafficSettings(seed=1, ipv6_share=0.2))
    flows = model.flows(flows_n, NOW_MS)
    v4_flows = [f for f in flows if f.ip_version == 4]
    sampler = PacketSampler(model.rng, 64)
    samples = []
    while len(samples) < flows_n // 2:
        samples += sampler.sample(model, model.draw(20000, NOW_MS))
    cases = {
        "NetFlow v5": (lambda: NetflowV5Encoder(1, NOW_MS - 3_600_000), v4_flows),
        "NetFlow v9": (lambda: NetflowV9Encoder(1, NOW_MS - 3_600_000), flows),
        "IPFIX (variable-length + enterprise fields)": (lambda: IpfixEncoder(1), flows),
        "IPFIX (fixed fields)": (lambda: IpfixEncoder(1, extras=False), flows),
        "sFlow v5 (flow samples)": (lambda: SflowEncoder("127.0.0.1", NOW_MS - 3_600_000), samples),
    }
    print("## Generators: encoding and pacing\n")
    print(
        f"`python bench/bench_generate.py{' --quick' if args.quick else ''}`, median of {repeats} runs, "
        "one core (CPU time of this process).\n"
    )
    print("| encoder | flows per CPU-second | vs scapy v5 |")
    print("|---|---:|---:|")
    scapy = statistics.median(
        scapy_v5_rate(v4_flows[: max(300, len(v4_flows) // 10)]) for _ in range(repeats)
    )
    for name, (factory, records) in cases.items():
        value = statistics.median(encode_rate(factory, records) for _ in range(repeats))
        print(f"| {name} | {value:,.0f} | {value / scapy:.1f}x |")
    print(f"| scapy NetFlow v5 layers (peer) | {scapy:,.0f} | 1.0x |\n")

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    print(f"Pacing over loopback UDP, 20 flows per datagram, {pace_s:g} s per run, achieved / target:\n")
    print("| target flows/s | token bucket | naive sleep (peer) |")
    print("|---:|---:|---:|")
    for target in (1000, 5000, 20000, 50000):
        bucket = statistics.median(
            bucket_paced_rate(target, pace_s, port, 20) / target for _ in range(repeats)
        )
        naive = statistics.median(naive_paced_rate(target, pace_s, port, 20) / target for _ in range(repeats))
        print(f"| {target:,} | {bucket:.3f} | {naive:.3f} |")
    print()

    print("Highest rate of one generator process (target 200 000 flows/s, 1 exporter, wall clock):\n")
    print("| protocol | flows/s | datagrams/s |")
    print("|---|---:|---:|")
    for protocol in ("v5", "v9", "ipfix", "sflow"):
        settings = GeneratorSettings(
            protocol=protocol,
            port=port,
            rate=200_000,
            duration=pace_s,
            progress=False,
            traffic=TrafficSettings(seed=1, ipv6_share=0 if protocol == "v5" else 0.2),
        )
        import logging

        logging.getLogger("flowsink.generate").setLevel(logging.ERROR)  # "could not reach" is the point here
        summary = GeneratorRun(settings).run()
        print(f"| {protocol} | {summary.flow_rate:,.0f} | {summary.datagram_rate:,.0f} |")
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
