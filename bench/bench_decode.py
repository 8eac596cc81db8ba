"""Decode + normalise + serialise to Elasticsearch bulk bytes, one core, per protocol; peers in the same run.

Peers: the ``netflow`` PyPI package (decode only, no documents) on the same datagrams, and goflow2 (built from
the Go module proxy into bench/.work/, fed the same datagrams over loopback UDP, JSON lines to a file).
goflow2 is fed closed-loop (a burst is sent only when the previous one has been written out), so it is never
made to drop. Every figure is flows per CPU-second of the process doing the work (``time.process_time`` here,
``/proc/<pid>/stat`` for goflow2, all its threads): on a shared, busy machine CPU time is far steadier than
wall-clock time, and it is what "one core" means.

    python bench/bench_decode.py            # full run
    python bench/bench_decode.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from flowsink.bulk import BulkFormat
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.native import EXTENSION

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
LOGSTASH = FIXTURES / "logstash-codec-netflow"
WORK = ROOT / "bench" / ".work"
GOFLOW2 = WORK / "goflow2"
EXPORTER = "127.0.0.1"


# ---- traffic ------------------------------------------------------------------------------------------------


def v5_traffic(count: int) -> tuple[list[bytes], list[bytes]]:
    """Full v5 datagrams (30 records) with varied addresses and ports, like a busy router's export."""
    record = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBB2x")
    datagrams = []
    for n in range(count):
        records = b"".join(
            record.pack(
                struct.pack("!I", 0x0A000000 + n * 30 + i),
                struct.pack("!I", 0xC0A80000 + i),
                b"\x00" * 4,
                1,
                2,
                3 + i,
                1500 + i,
                90_000 + i,
                95_000 + i,
                1024 + i,
                443,
                0x18,
                6,
                0,
                64512,
                15169,
                24,
                16,
            )
            for i in range(30)
        )
        header = struct.pack("!HHIIIIBBH", 5, 30, 100_000, 1_700_000_000 + n, 0, n * 30, 0, 0, 0)
        datagrams.append(header + records)
    return [], datagrams


def fixture_traffic(
    template_file: str, data_file: str, count: int, sequence_at: int
) -> tuple[list[bytes], list[bytes]]:
    """A real exporter's data datagram repeated with increasing sequence numbers (so nothing looks lost)."""
    template = (LOGSTASH / template_file).read_bytes()
    data = (LOGSTASH / data_file).read_bytes()
    datagrams = []
    for n in range(count):
        datagrams.append(data[:sequence_at] + struct.pack("!I", n) + data[sequence_at + 4 :])
    return [template], datagrams


def sflow_traffic(count: int) -> tuple[list[bytes], list[bytes]] | None:
    """A real switch's datagram (6 flow samples and a counter sample) repeated with increasing sequence numbers;
    bench/bench_decode_sflow.py adds synthetic switch exports."""
    try:
        import flowsink.decode.sflow  # noqa: F401
    except ImportError:
        return None
    sample = FIXTURES / "telegraf" / "sflow_issue_15918" / "message.bin"
    if not sample.exists():
        return None
    data = sample.read_bytes()
    return [], [data[:16] + struct.pack("!I", n + 1) + data[20:] for n in range(count)]


# ---- measured work ------------------------------------------------------------------------------------------


def run_flowsink(templates: list[bytes], datagrams: list[bytes], enricher: Any = None) -> tuple[int, float]:
    """Flows decoded, normalised and serialised as bulk action + source lines; returns (flows, seconds).

    The same call the pipeline makes: a ``BulkFormat`` makes the decoders write the bulk lines themselves (the C
    writers when built; else dicts encoded by ``flowsink.bulk``); the lines are joined as a request body would be.
    ``enricher``: what the pipeline's ``enrich`` section adds (bench/bench_enrich.py), None for nothing.
    """
    decoder = FlowDecoder(DecoderSettings(bulk=BulkFormat("flowsink"), enricher=enricher))
    for template in templates:
        decoder.decode(template, EXPORTER, 0)
    flows = 0
    arrival = time.time_ns()
    started = time.process_time()
    for payload in datagrams:
        encoded = decoder.decode(payload, EXPORTER, arrival).encoded
        b"".join(encoded)
        flows += len(encoded)
    return flows, time.process_time() - started


def run_netflow_package(protocol: str, templates: list[bytes], datagrams: list[bytes]) -> tuple[int, float]:
    """The netflow package's decode only (no documents, no serialisation)."""
    from netflow.ipfix import IPFIXExportPacket
    from netflow.v5 import V5ExportPacket
    from netflow.v9 import V9ExportPacket

    cache: dict = {}
    if protocol == "netflow_v5":

        def parse(payload: bytes) -> int:
            return len(V5ExportPacket(payload).flows)
    elif protocol == "netflow_v9":

        def parse(payload: bytes) -> int:
            return len(V9ExportPacket(payload, cache).flows)
    else:

        def parse(payload: bytes) -> int:
            return len(IPFIXExportPacket(payload, cache).flows)

    for template in templates:
        parse(template)
    flows = 0
    started = time.process_time()
    for payload in datagrams:
        flows += parse(payload)
    return flows, time.process_time() - started


def run_goflow2(
    protocol: str, templates: list[bytes], datagrams: list[bytes], expected: int
) -> tuple[int, float] | None:
    """goflow2 fed over loopback in bursts, each sent once the previous one is written: (flows, seconds)."""
    if not GOFLOW2.exists():
        return None
    scheme = "sflow" if protocol == "sflow" else "netflow"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flows.json"
        port = _free_port(socket.SOCK_DGRAM)
        http_port = _free_port(socket.SOCK_STREAM)
        process = subprocess.Popen(
            [
                str(GOFLOW2),
                "-listen",
                f"{scheme}://127.0.0.1:{port}",
                "-format",
                "json",
                "-transport",
                "file",
                "-transport.file",
                str(out),
                "-addr",
                f"127.0.0.1:{http_port}",
                "-loglevel",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if not _wait_for(lambda: _udp_bound(port), 10):
                return None
            for template in templates:
                sender.sendto(template, ("127.0.0.1", port))
            time.sleep(0.3)
            base = _line_count(out)
            burst = 64
            per_datagram = max(1, expected // max(1, len(datagrams)))
            cpu_before = _cpu_seconds(process.pid)
            sent_flows = 0
            for index in range(0, len(datagrams), burst):
                for payload in datagrams[index : index + burst]:
                    sender.sendto(payload, ("127.0.0.1", port))
                sent_flows += len(datagrams[index : index + burst]) * per_datagram
                if not _wait_for(lambda target=sent_flows: _line_count(out) - base >= target, 10):
                    break
            written = _line_count(out) - base
            return written, _cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()
            process.wait(timeout=10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (what one core would have to do)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _udp_bound(port: int) -> bool:
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as rows:
            if any(line.split()[1].endswith(suffix) for line in rows.readlines()[1:]):
                return True
    return False


_counts: dict[Path, tuple[int, int]] = {}


def _line_count(path: Path) -> int:
    """Lines in a growing file, reading only what was appended since the last call."""
    if not path.exists():
        return 0
    offset, lines = _counts.get(path, (0, 0))
    with open(path, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    lines += chunk.count(b"\n")
    _counts[path] = (offset + len(chunk), lines)
    return lines


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.0005)
    return False


# ---- report -------------------------------------------------------------------------------------------------


def median_rate(runs: list[tuple[int, float]]) -> tuple[float, int]:
    return statistics.median(flows / seconds for flows, seconds in runs), runs[0][0]


def python_path_rates(quick: bool) -> dict[str, float]:
    """flowsink's rates with the C extension switched off (FLOWSINK_NO_EXTENSION=1), from a child process."""
    env = {**os.environ, "FLOWSINK_NO_EXTENSION": "1"}
    command = [sys.executable, __file__, "--flowsink-only"] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        print(f"(pure-Python run failed: {done.stderr.strip()[-300:]})", file=sys.stderr)
        return {}
    return orjson.loads(done.stdout)


def traffic_by_protocol(datagrams: int) -> dict[str, tuple[str, tuple[list[bytes], list[bytes]] | None]]:
    return {
        "netflow_v5": ("synthetic, 30 records per datagram", v5_traffic(datagrams)),
        "netflow_v9": (
            "Cisco ASA capture (netflow9_test_cisco_asa_1), 14 records per datagram",
            fixture_traffic(
                "netflow9_test_cisco_asa_1_tpl.dat", "netflow9_test_cisco_asa_1_data.dat", datagrams, 12
            ),
        ),
        "ipfix": (
            "Mikrotik capture (ipfix_test_mikrotik_data258), 28 records per datagram",
            fixture_traffic("ipfix_test_mikrotik_tpl.dat", "ipfix_test_mikrotik_data258.dat", datagrams, 8),
        ),
        "sflow": (
            "Telegraf sflow_issue_15918 capture, 6 flow samples + 1 counter sample per datagram",
            sflow_traffic(datagrams),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer datagrams and repeats)")
    parser.add_argument("--no-goflow2", action="store_true", help="skip the goflow2 peer")
    parser.add_argument(
        "--flowsink-only",
        action="store_true",
        help="print flowsink's rates as JSON, nothing else (the pure-Python child run)",
    )
    args = parser.parse_args(argv)
    datagrams = 300 if args.quick else 2000
    repeats = 3 if args.quick else 5
    if os.environ.get("FLOWSINK_BENCH_CPU") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ["FLOWSINK_BENCH_CPU"])})
    traffic = traffic_by_protocol(datagrams)
    if args.flowsink_only:
        rates = {
            protocol: median_rate([run_flowsink(*data) for _ in range(repeats)])[0]
            for protocol, (_, data) in traffic.items()
            if data is not None
        }
        print(orjson.dumps(rates).decode())
        return 0
    extension = EXTENSION is not None
    python_rates = python_path_rates(args.quick) if extension else {}
    goflow2 = None if args.no_goflow2 else GOFLOW2.exists()
    lines = [
        "## Decoders (bench/bench_decode.py)",
        "",
        f"Flows per CPU-second, {datagrams} datagrams per run, median of {repeats} runs. flowsink: decode + ECS "
        "document + Elasticsearch bulk lines (action + source, what the pipeline sends), "
        f"{'with' if extension else 'WITHOUT (not built)'} the C extension flowsink.native writing the "
        "lines, and beside it the pure-Python path (dicts + orjson; FLOWSINK_NO_EXTENSION=1, child process); "
        "peer ratios use the first column. netflow package: decode only; goflow2: UDP loopback -> JSON lines "
        "file (its own CPU time, all threads).",
        "",
        "| protocol | traffic | flowsink flows/s | pure Python flows/s | C ext / Python | netflow pkg flows/s "
        "| ratio | goflow2 flows/s | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for protocol, (description, data) in traffic.items():
        if data is None:
            lines.append(f"| {protocol} | decoder not available | - | - | - | - | - | - | - |")
            continue
        templates, payloads = data
        ours, flows = median_rate([run_flowsink(templates, payloads) for _ in range(repeats)])
        peer_text = ratio_text = "-"
        if protocol != "sflow":
            peer, _ = median_rate(
                [run_netflow_package(protocol, templates, payloads) for _ in range(repeats)]
            )
            peer_text, ratio_text = f"{peer:,.0f}", f"{ours / peer:.2f}x"
        go_text = go_ratio = "-"
        if goflow2:
            go_runs = [run_goflow2(protocol, templates, payloads, flows) for _ in range(max(1, repeats // 2))]
            go_runs = [run for run in go_runs if run and run[0]]
            if go_runs:
                go_rate, _ = median_rate(go_runs)
                complete = all(run[0] >= flows for run in go_runs)
                go_text = f"{go_rate:,.0f}" + ("" if complete else " (incomplete)")
                go_ratio = f"{ours / go_rate:.2f}x"
        python_rate = python_rates.get(protocol)
        python_text, speedup = (
            ("-", "-") if python_rate is None else (f"{python_rate:,.0f}", f"{ours / python_rate:.2f}x")
        )
        lines.append(
            f"| {protocol} | {description} | {ours:,.0f} | {python_text} | {speedup} | {peer_text} | "
            f"{ratio_text} | {go_text} | {go_ratio} |"
        )
    if goflow2 is False:
        lines += [
            "",
            "goflow2 not built: `GOBIN=$PWD/bench/.work go install "
            "github.com/netsampler/goflow2/v2/cmd/goflow2@latest`",
        ]
    lines += [
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible; "
        f"goflow2 {'present' if goflow2 else 'absent'}; other work on the machine makes figures noisy.",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if shutil.which("go") is None and not GOFLOW2.exists():
        print("(go not installed: goflow2 column left empty)", file=sys.stderr)
    sys.exit(main())
