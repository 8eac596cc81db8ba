"""Receive benchmark: datagrams/s a flowsink receiver takes into its durable queue with 0 kernel drops.

A small C sender (``bench/udpsend.c``, compiled here with gcc into ``bench/.work/``) sends 25-flow IPFIX
datagrams over loopback with sendmmsg at a fixed rate, stepping the rate up until the kernel drops datagrams on
the receiving sockets (``/proc/net/udp`` drops column, read with ``flowsink.receive.socket_drop_stats``).
Receivers measured in the same run, each with the same SO_RCVBUF:

- flowsink with 1 and with 2 receiver processes (SO_REUSEPORT), default durability policy;
- a bare Python ``recvfrom_into`` loop that only keeps the bytes (the ceiling of any Python receiver);
- nfcapd (nfdump, C), writing its flow files.

    python bench/bench_receive.py            # 60 s per rate step
    python bench/bench_receive.py --quick    # 10 s per step, fewer steps

Prints a markdown section; exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
NFCAPD = shutil.which("nfcapd") or "/usr/bin/nfcapd"
FLOWS_PER_DATAGRAM = 25
# net.core.rmem_max here: what every receiver can get without privileges (nfcapd's -B cannot exceed it)
RCVBUF = int(os.environ.get("FLOWSINK_BENCH_RCVBUF", 4 << 20))


# ---------------------------------------------------------------- load: IPFIX payloads and the C sender

# template 256: sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort,
# protocolIdentifier, octetDeltaCount, packetDeltaCount, flowStartMilliseconds, flowEndMilliseconds,
# ingressInterface, egressInterface
TEMPLATE_FIELDS = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (10, 4),
    (14, 4),
]
RECORD = struct.Struct("!4s4sHHBQQQQII")


def ipfix_payloads(count: int) -> list[bytes]:
    """One template datagram, then ``count`` data datagrams of 25 flows each (RFC 7011)."""
    export_time = int(time.time())
    template = struct.pack("!HH", 256, len(TEMPLATE_FIELDS)) + b"".join(
        struct.pack("!HH", ie, length) for ie, length in TEMPLATE_FIELDS
    )
    payloads = [_ipfix_message(export_time, 0, 2, template)]
    for index in range(count):
        records = b"".join(
            RECORD.pack(
                bytes([10, 0, index % 256, flow]),
                bytes([192, 0, 2, (index + flow) % 256]),
                1024 + flow,
                443,
                6,
                1500 * (flow + 1),
                flow + 1,
                export_time * 1000 - 60_000,
                export_time * 1000 - 1_000,
                1,
                2,
            )
            for flow in range(FLOWS_PER_DATAGRAM)
        )
        payloads.append(_ipfix_message(export_time, index * FLOWS_PER_DATAGRAM, 256, records))
    return payloads


def _ipfix_message(export_time: int, sequence: int, set_id: int, body: bytes) -> bytes:
    flow_set = struct.pack("!HH", set_id, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(flow_set), export_time, sequence, 1) + flow_set


def write_payload_file(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("!H", len(p)) + p for p in payloads))


def build_sender() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    binary = WORK / "udpsend"
    source = BENCH / "udpsend.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


# ---------------------------------------------------------------- receivers under test (child processes)


class _Stop(Exception):
    pass


def _raise_stop(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the report
    raise _Stop


def serve_bare(port: int) -> None:
    """The bare Python peer: blocking recvfrom_into, keep the bytes (bounded, like a ring buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _force_rcvbuf(sock)
    sock.bind(("127.0.0.1", port))
    buffer = bytearray(65536)
    kept: deque[bytes] = deque(maxlen=100_000)
    received = 0
    signal.signal(signal.SIGTERM, _raise_stop)
    print("ready", flush=True)
    try:
        while True:
            size, _ = sock.recvfrom_into(buffer)
            kept.append(bytes(buffer[:size]))
            received += 1
    except _Stop:
        pass
    print(json.dumps({"received": received}), flush=True)


def _force_rcvbuf(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


class _PrintReady:
    def set(self) -> None:
        print("ready", flush=True)


def serve_flowsink(port: int, directory: str) -> None:
    """One flowsink receiver process: real sockets, the real queue, default durability policy."""
    from flowsink.queue import PersistentQueue
    from flowsink.receive import ReceiveSettings, TotalCounts, run_receiver

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = ReceiveSettings(ports=(port,), host="127.0.0.1", rcvbuf_bytes=RCVBUF)
    counts = TotalCounts()
    with PersistentQueue(directory, max_bytes=1 << 40, segment_bytes=64 << 20) as queue:
        run_receiver(settings, queue, stop, counts, _PrintReady())
    print(json.dumps({"received": counts.queued_datagrams, "dropped": counts.dropped}), flush=True)


# ---------------------------------------------------------------- one measurement


@dataclass
class Target:
    name: str
    processes: int  # sockets expected on the port once it is ready
    kind: str  # "flowsink" | "bare" | "nfcapd"


@dataclass
class Step:
    target: str
    rate: int
    sent: int
    sender_rate: float
    received: int | None
    drops: int
    cpu: float  # receiver CPU seconds per wall second (1.0 = one core)
    cpu_seconds: float  # receiver CPU seconds in total

    @property
    def stored_check(self) -> str:
        """How many the receiver kept, and whether that is every datagram the kernel did not drop."""
        if self.received is None:
            return "n/a"
        return f"{self.received} ({'yes' if self.received == self.sent - self.drops else 'NO'})"

    @property
    def cpu_us_per_datagram(self) -> float:
        taken = self.sent - self.drops
        return 1e6 * self.cpu_seconds / taken if taken > 0 else 0.0

    @property
    def drop_pct(self) -> float:
        return 100.0 * self.drops / self.sent if self.sent else 0.0


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextlib.contextmanager
def running(target: Target, port: int, work: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Start the receiver(s) of ``target`` on ``port``; stop them (SIGTERM) on exit."""
    children: list[subprocess.Popen[str]] = []
    try:
        for index in range(target.processes):
            if target.kind == "nfcapd":
                command = [
                    NFCAPD,
                    "-w",
                    str(work / "nfcapd"),
                    "-p",
                    str(port),
                    "-b",
                    "127.0.0.1",
                    "-B",
                    str(RCVBUF),
                ]
                (work / "nfcapd").mkdir(exist_ok=True)
                children.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
                )
                continue
            extra = [str(work / f"rx-{index}")] if target.kind == "flowsink" else []
            command = [sys.executable, str(Path(__file__)), "--serve", target.kind, str(port), *extra]
            child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            children.append(child)
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{target.name}: receiver did not start")
        _wait_for_sockets(port, target.processes)
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_for_sockets(port: int, count: int) -> None:
    from flowsink.receive import socket_drop_stats

    deadline = time.monotonic() + 10
    while socket_drop_stats([port])[port]["sockets"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no receiver bound UDP port {port}")
        time.sleep(0.05)


def measure(target: Target, rate: int, seconds: float, sender: Path, payload_file: Path) -> Step:
    from flowsink.receive import socket_drop_stats

    port = _free_port()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, running(target, port, Path(tmp)) as children:
        pids = [child.pid for child in children]
        cpu_before, wall_before = _cpu_seconds(pids), time.monotonic()
        done = subprocess.run(
            [str(sender), str(payload_file), "127.0.0.1", str(port), str(rate), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        time.sleep(1.0)  # let the receivers empty their socket buffers
        cpu_seconds = _cpu_seconds(pids) - cpu_before
        cpu = cpu_seconds / (time.monotonic() - wall_before)
        drops = socket_drop_stats([port])[port]["drops"]
        for child in children:
            child.send_signal(signal.SIGTERM)
        received = 0 if target.kind != "nfcapd" else None
        for child in children:
            if target.kind != "nfcapd":
                report = json.loads(child.stdout.readline() or "{}")
                received += report.get("received", 0)
    fields = done.stdout.split()
    return Step(target.name, rate, int(fields[1]), float(fields[7]), received, drops, cpu, cpu_seconds)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- the run


def find_limit(
    target: Target, rates: list[int], seconds: float, sender: Path, payload_file: Path
) -> list[Step]:
    """Step the rate up until the first step with kernel drops (inclusive)."""
    steps = []
    for rate in rates:
        step = measure(target, rate, seconds, sender, payload_file)
        steps.append(step)
        print(
            f"  {target.name:<28} {rate:>7}/s: sent {step.sender_rate:>9.0f}/s, drops {step.drops} "
            f"({step.drop_pct:.2f}%), cpu {step.cpu:.2f}, {step.cpu_us_per_datagram:.1f} µs/datagram",
            file=sys.stderr,
        )
        if step.drops:
            break
    return steps


def report(all_steps: dict[str, list[Step]], seconds: float, payload_bytes: int) -> str:
    lines = [
        "## Receive: UDP datagrams into the durable queue (`bench/bench_receive.py`)",
        "",
        f"25-flow IPFIX datagrams of {payload_bytes} bytes over loopback from `bench/udpsend.c` (sendmmsg, "
        f"8 source sockets), {seconds:g} s per rate step, SO_RCVBUF {RCVBUF / 2**20:g} MiB asked for every receiver; "
        "drops are the kernel's (`/proc/net/udp`). flowsink uses its default durability policy "
        "(one write() per batch, fdatasync every 200 ms or 4 MiB). Sender and receivers share "
        f"{os.cpu_count()} cores; load average (1 min) at the end {os.getloadavg()[0]:.1f}. One run per step: "
        "a drop-free step is a pass/fail observation. The CPU cost per datagram taken (receiver CPU time / "
        "datagrams not dropped) is the figure the shared machine's load distorts least: 1e6 / that cost is the "
        "rate one free core could take.",
        "",
        "| receiver | rate asked (/s) | sent (/s) | kernel drops | drop % | stored (sent - drops?) "
        "| receiver CPU (cores) | CPU µs per datagram taken |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for steps in all_steps.values():
        for step in steps:
            lines.append(
                f"| {step.target} | {step.rate} | {step.sender_rate:.0f} | {step.drops} | {step.drop_pct:.2f} "
                f"| {step.stored_check} | {step.cpu:.2f} | {step.cpu_us_per_datagram:.1f} |"
            )
    lines += ["", "Highest rate with 0 kernel drops (ratio to nfcapd measured in this run):", ""]
    best = {name: max([s.rate for s in steps if not s.drops], default=0) for name, steps in all_steps.items()}
    reference = best.get("nfcapd (C, nfdump)") or 0
    for name, rate in best.items():
        ratio = f"{rate / reference:.2f}" if reference else "n/a"
        limit = "" if any(s.drops for s in all_steps[name]) else " (no drops at the highest step tried)"
        lines.append(f"- {name}: {rate}/s, ratio {ratio}{limit}")
    lines += ["", "CPU cost per datagram taken, median over the steps (ratio to the bare Python loop):", ""]
    costs = {
        name: statistics.median([s.cpu_us_per_datagram for s in steps])
        for name, steps in all_steps.items()
        if steps
    }
    bare = costs.get("bare Python recvfrom_into") or 0
    for name, cost in costs.items():
        ratio = f"{cost / bare:.2f}" if bare else "n/a"
        lines.append(
            f"- {name}: {cost:.1f} µs, ratio {ratio}, one core ≈ {1e6 / cost:,.0f} datagrams/s"
            if cost
            else f"- {name}: n/a"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    global RCVBUF
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s per step and fewer steps")
    parser.add_argument("--seconds", type=float, help="seconds per rate step (default 60, quick 10)")
    parser.add_argument("--rates", help="comma-separated datagram rates to step through")
    parser.add_argument("--rcvbuf", type=int, default=RCVBUF, help="SO_RCVBUF bytes for every receiver")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    RCVBUF = args.rcvbuf
    os.environ["FLOWSINK_BENCH_RCVBUF"] = str(args.rcvbuf)  # the receiver children read it
    if args.serve:
        kind, port, *rest = args.serve
        if kind == "bare":
            serve_bare(int(port))
        else:
            serve_flowsink(int(port), rest[0])
        return 0

    seconds = args.seconds or (10.0 if args.quick else 60.0)
    default_rates = (
        "25000,50000,100000,150000" if args.quick else "25000,50000,75000,100000,125000,150000,200000"
    )
    rates = [int(r) for r in (args.rates or default_rates).split(",")]
    sender = build_sender()
    payloads = ipfix_payloads(999)
    payload_file = WORK / "ipfix-25flows.bin"
    write_payload_file(payload_file, payloads)
    targets = [
        Target("nfcapd (C, nfdump)", 1, "nfcapd"),
        Target("bare Python recvfrom_into", 1, "bare"),
        Target("flowsink, 1 receiver", 1, "flowsink"),
        Target("flowsink, 2 receivers", 2, "flowsink"),
    ]
    if not Path(NFCAPD).exists():
        print("nfcapd not installed: skipping that peer", file=sys.stderr)
        targets = targets[1:]
    all_steps = {t.name: find_limit(t, rates, seconds, sender, payload_file) for t in targets}
    print(report(all_steps, seconds, len(payloads[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
