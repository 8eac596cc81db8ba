"""Decoders against their peers, per protocol, in two scopes, on the same datagrams in the same run.

**In-process** (what one core does with a datagram already in memory; CPU time of the process doing it):

- flowsink: decode + ECS document + Elasticsearch bulk lines (action + source) joined as a request body, what
  the pipeline does, with the C extension writing the lines; beside it the pure-Python path
  (``FLOWSINK_NO_EXTENSION=1``, a child process);
- goflow2's own pipeline (v2.2.6: its decoders, its protobuf producer, its formatter) called in-process by
  ``bench/goflow2_decode`` on the same datagrams, each message appended to a buffer: ``bin`` (length-delimited
  protobuf, what goflow2 recommends for volume) and ``json`` (which its README advises only for small volumes);
- the ``netflow`` PyPI package: decode only, no documents.

flowsink and goflow2 runs alternate (run 1 of each, then run 2 ...), and medians are reported, so a burst of load
elsewhere on the machine falls on both.

**Whole process** (UDP over loopback in, one encoded flow per message in a file out): ``flowsink run`` with
``output: file`` (its defaults: durable queue, fsync), goflow2 with ``-format bin -transport.file.sep=`` (the
pipe configuration of its README) and with ``-format json``, and Filebeat 7.17's netflow input with its file
output (ECS JSON). Each is fed open-loop by ``bench/udpsend.c`` (sendmmsg) from one exporter socket at a fixed
rate; its output is counted, and a run that lost a flow is repeated at half the rate, so every figure is of a
run with no loss. The figure is flows per CPU-second of the whole process (all threads; all of the node's
processes for flowsink), sockets and output included.

sFlow is counted per flow sample on both sides (goflow2 writes nothing for a counter sample; flowsink's counter
sample documents are left out of its count). The peers are built from the Go module proxy into ``bench/.work/``
by ``bench/peers.py`` when Go is installed; a peer that is not built leaves its column empty.

    python bench/bench_decode.py            # full run
    python bench/bench_decode.py --quick    # a minute or two
    python bench/bench_decode.py --scope in-process   # or whole-process
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
from flowsink.bulk import BulkFormat
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.native import EXTENSION

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
LOGSTASH = FIXTURES / "logstash-codec-netflow"
WORK = peers.WORK
EXPORTER = "127.0.0.1"
NOT_FLOWS = ("netflow_options", "sflow_counter_sample")  # event.action of documents that are no flows
META_ACTIONS = tuple(f'"action":"{action}"'.encode() for action in NOT_FLOWS)


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


# ---- in-process -----------------------------------------------------------------------------------------


def run_flowsink(templates: list[bytes], datagrams: list[bytes], enricher: Any = None) -> tuple[int, float]:
    """Documents decoded, normalised and serialised as bulk action + source lines; returns (documents, seconds).

    The same call the pipeline makes: a ``BulkFormat`` makes the decoders write the bulk lines themselves (the C
    writers when built; else dicts encoded by ``flowsink.bulk``); the lines are joined as a request body would be.
    ``enricher``: what the pipeline's ``enrich`` section adds (bench/bench_enrich.py), None for nothing.
    """
    decoder = FlowDecoder(DecoderSettings(bulk=BulkFormat("flowsink"), enricher=enricher))
    for template in templates:
        decoder.decode(template, EXPORTER, 0)
    documents = 0
    arrival = time.time_ns()
    started = time.process_time()
    for payload in datagrams:
        encoded = decoder.decode(payload, EXPORTER, arrival).encoded
        b"".join(encoded)
        documents += len(encoded)
    return documents, time.process_time() - started


def document_actions(templates: list[bytes], datagrams: list[bytes]) -> dict[str, int]:
    """``event.action`` -> documents of these datagrams (the dict path: slower; used only to count)."""
    decoder = FlowDecoder()
    for template in templates:
        decoder.decode(template, EXPORTER, 0)
    counts: dict[str, int] = {}
    for payload in datagrams:
        for document in decoder.decode(payload, EXPORTER, time.time_ns()).documents:
            action = document["event"]["action"]
            counts[action] = counts.get(action, 0) + 1
    return counts


def flows_per_datagram(payloads: list[bytes]) -> list[int]:
    """How many flows (flow records, flow samples) each datagram holds, in order (templates hold 0)."""
    decoder = FlowDecoder()
    out = []
    for payload in payloads:
        documents = decoder.decode(payload, EXPORTER, time.time_ns()).documents
        out.append(sum(1 for d in documents if d["event"]["action"] not in NOT_FLOWS))
    return out


def write_payload_file(path: Path, payloads: list[bytes]) -> Path:
    """Datagrams as <u16 length><bytes> records: what bench/udpsend.c and bench/goflow2_decode read."""
    path.write_bytes(b"".join(struct.pack("!H", len(p)) + p for p in payloads))
    return path


def run_goflow2_in_process(
    protocol: str, templates: list[bytes], datagrams: list[bytes], output_format: str, workdir: Path
) -> tuple[int, float] | None:
    """goflow2's pipeline called in-process on the same datagrams: (messages written, CPU seconds)."""
    binary = peers.GOFLOW2_DECODE.binary
    if not binary.exists():
        return None
    payloads = write_payload_file(workdir / f"{protocol}-{len(datagrams)}.bin", datagrams)
    command = [
        str(binary),
        "-protocol",
        "sflow" if protocol == "sflow" else "netflow",
        "-format",
        output_format,
    ]
    if templates:
        command += ["-templates", str(write_payload_file(workdir / f"{protocol}-templates.bin", templates))]
    done = subprocess.run([*command, str(payloads)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        print(f"(goflow2-decode failed: {done.stderr.strip()[-300:]})", file=sys.stderr)
        return None
    result = orjson.loads(done.stdout)
    if result["flows"]:
        written_per_flow[(protocol, output_format)] = result["bytes"] / result["flows"]
    return result["flows"], result["cpu_seconds"]


written_per_flow: dict[tuple[str, str], float] = {}  # (protocol, format) -> bytes goflow2 wrote per flow


def bulk_bytes_per_flow(templates: list[bytes], datagrams: list[bytes], flows: int) -> float:
    """Bytes of bulk lines (action + source) flowsink writes per flow of these datagrams."""
    decoder = FlowDecoder(DecoderSettings(bulk=BulkFormat("flowsink")))
    for template in templates:
        decoder.decode(template, EXPORTER, 0)
    written = sum(len(line) for payload in datagrams for line in decoder.decode(payload, EXPORTER, 0).encoded)
    return written / max(1, flows)


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


# ---- whole process ----------------------------------------------------------------------------------------


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads, and all its live descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    return sum(times.get(member, 0.0) for member in tree)


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


def _wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


class OutputCounter:
    """Flows written so far to the files matching a glob, reading only what was appended since the last call."""

    def __init__(self, folder: Path, pattern: str, kind: str) -> None:
        self.folder, self.pattern, self.kind = folder, pattern, kind
        self.offsets: dict[Path, int] = {}
        self.rests: dict[Path, bytes] = {}
        self.flows = 0

    def count(self) -> int:
        for path in sorted(self.folder.glob(self.pattern)):
            offset = self.offsets.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            self.offsets[path] = offset + len(chunk)
            data = self.rests.get(path, b"") + chunk
            self.rests[path] = self._consume(data)
        return self.flows

    def _consume(self, data: bytes) -> bytes:
        """Count the complete messages in ``data``; return the incomplete tail."""
        if self.kind == "protobuf":  # varint length, then the message (goflow2 -format bin, no separator)
            position = 0
            while position < len(data):
                length, shift, cursor = 0, 0, position
                while cursor < len(data):
                    byte = data[cursor]
                    cursor += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                else:
                    return data[position:]
                if cursor + length > len(data):
                    return data[position:]
                position = cursor + length
                self.flows += 1
            return b""
        end = data.rfind(b"\n") + 1
        lines = data[:end].count(b"\n")
        if self.kind == "flowsink":  # documents of options records and counter samples are no flows
            lines -= sum(data[:end].count(marker) for marker in META_ACTIONS)
        self.flows += lines
        return data[end:]


@dataclass
class WholeProcess:
    """One contender of the whole-process table: how to start it and how to count what it wrote."""

    name: str
    start: Callable[[str, int, Path], subprocess.Popen | None]  # (protocol, udp port, workdir) -> process
    counter: Callable[[Path], OutputCounter]
    first_rate: float  # flows/s offered first; halved after a run that lost flows
    paired: bool = False  # the headline pair: both are measured at the same offered rate
    protocols: tuple[str, ...] = ("netflow_v5", "netflow_v9", "ipfix", "sflow")


def _start_goflow2(output_format: str) -> Callable[[str, int, Path], subprocess.Popen | None]:
    def start(protocol: str, port: int, workdir: Path) -> subprocess.Popen | None:
        if not peers.GOFLOW2.binary.exists():
            return None
        scheme = "sflow" if protocol == "sflow" else "netflow"
        extra = ["-transport.file.sep="] if output_format == "bin" else []
        return subprocess.Popen(
            [str(peers.GOFLOW2.binary), "-listen", f"{scheme}://127.0.0.1:{port}", "-format", output_format,
             "-transport", "file", "-transport.file", str(workdir / "out"), *extra,
             "-addr", f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}", "-loglevel", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    return start


def _start_filebeat(protocol: str, port: int, workdir: Path) -> subprocess.Popen | None:
    if not peers.FILEBEAT.binary.exists() or protocol == "sflow":
        return None
    config = workdir / "filebeat.yml"
    config.write_text(yaml.safe_dump(peers.filebeat_config(port, workdir / "out")))
    config.chmod(0o600)  # Filebeat refuses a configuration others can write
    return subprocess.Popen(
        [str(peers.FILEBEAT.binary), "-c", str(config), "--path.home", str(workdir), "--path.data",
         str(workdir / "data"), "--path.logs", str(workdir / "logs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _start_flowsink(protocol: str, port: int, workdir: Path) -> subprocess.Popen | None:
    http_port = _free_port(socket.SOCK_STREAM)
    config = {
        "output": ["file"],
        "node": {"run_dir": str(workdir / "node")},
        "file": {"path": str(workdir / "out" / "flows.ndjson"), "max_bytes": 0},
        "receive": {"host": "127.0.0.1", "ports": [port]},
        "http": {"host": "127.0.0.1", "port": http_port},
        "api": {"enabled": False},
    }
    (workdir / "out").mkdir(exist_ok=True)
    path = workdir / "flowsink.yml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "flowsink.cli", "run", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "node.log", "wb"),  # noqa: SIM115 - the child holds it
        env={k: v for k, v in os.environ.items() if not k.startswith("FLOWSINK_")},
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                return True
        except OSError:
            return process.poll() is not None

    _wait_for(ready, 120, 0.2)
    return process


WHOLE_PROCESS = [
    WholeProcess(
        "flowsink node (output: file)",
        _start_flowsink,
        lambda workdir: OutputCounter(workdir / "out", "flows.ndjson*", "flowsink"),
        60_000,
        paired=True,
    ),
    WholeProcess(
        "goflow2 -format bin",
        _start_goflow2("bin"),
        lambda workdir: OutputCounter(workdir, "out", "protobuf"),
        60_000,
        paired=True,
    ),
    WholeProcess(
        "goflow2 -format json",
        _start_goflow2("json"),
        lambda workdir: OutputCounter(workdir, "out", "lines"),
        8_000,
    ),
    WholeProcess(
        "Filebeat 7.17 netflow input (output: file)",
        _start_filebeat,
        lambda workdir: OutputCounter(workdir / "out", "flows*", "lines"),
        8_000,
        protocols=("netflow_v5", "netflow_v9", "ipfix"),
    ),
]


def _send_open_loop(port: int, payload_file: Path, rate: float, total: int) -> None:
    """``total`` datagrams of the file, in order and cycling, at ``rate`` per second from one socket."""
    sender = peers.udpsend()
    seconds = (total + 0.5) / rate  # udpsend sends int(rate * seconds) datagrams
    subprocess.run(
        [str(sender), str(payload_file), "127.0.0.1", str(port), f"{rate:.3f}", f"{seconds:.6f}", "1", "4"],
        check=True, capture_output=True, timeout=seconds + 120,
    )  # fmt: skip


def run_whole_process(
    contender: WholeProcess,
    protocol: str,
    payloads: list[bytes],
    flows_each: list[int],
    seconds: float,
    rate: float,
    collect: Callable[[Path], None] | None = None,
) -> tuple[int, float, float] | None:
    """(flows written, CPU seconds, flows/s offered) of the first run without loss, starting at ``rate`` flows/s
    offered, or None (no peer, or every rate lost flows). At least every payload is sent once (``seconds`` 0:
    exactly once); ``collect(workdir)`` may take the output of the run that counts before it is deleted."""
    mean_flows = max(1e-9, statistics.fmean(flows_each))
    for _ in range(4):
        datagrams = max(len(payloads), int(rate * seconds / mean_flows))
        expected = sum(flows_each[n % len(payloads)] for n in range(datagrams))
        with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
            workdir = Path(tmp)
            payload_file = write_payload_file(workdir / "payloads.bin", payloads)
            port = _free_port(socket.SOCK_DGRAM)
            process = contender.start(protocol, port, workdir)
            if process is None:
                return None
            try:
                if not _wait_for(lambda bound=port: _udp_bound(bound), 60):
                    print(f"({contender.name} never bound UDP {port})", file=sys.stderr)
                    return None
                counter = contender.counter(workdir)
                time.sleep(0.5)
                cpu_before = process_tree_cpu(process.pid)
                _send_open_loop(port, payload_file, rate * len(payloads) / max(1, sum(flows_each)), datagrams)
                last, still = -1, time.monotonic()
                while counter.count() < expected:  # wait until it is all written, or nothing moved for 5 s
                    if counter.flows != last:
                        last, still = counter.flows, time.monotonic()
                    elif time.monotonic() - still > 5:
                        break
                    time.sleep(0.1)
                cpu = process_tree_cpu(process.pid) - cpu_before
                written = counter.flows
                if collect is not None and written >= expected:
                    collect(workdir)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        print(
            f"  {contender.name} {protocol}: {written:,} of {expected:,} flows at {rate:,.0f} flows/s offered, "
            f"{cpu:.2f} CPU-s",
            file=sys.stderr,
            flush=True,
        )
        if written >= expected:
            return written, cpu, rate
        rate /= 2
    return None


# ---- report -------------------------------------------------------------------------------------------------


def rate(runs: list[tuple[int, float]]) -> float:
    """Median flows per CPU-second of the runs."""
    return statistics.median(flows / seconds for flows, seconds in runs if seconds > 0)


def _ratio(ours: float | None, peer: float | None) -> str:
    return f"{ours / peer:.2f}x" if ours and peer else "-"


def _rate_text(value: float | None, note: str = "") -> str:
    return f"{value:,.0f}{note}" if value else "-"


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
            "Telegraf sflow_issue_15918 capture, 6 flow samples (+ 1 counter sample, not counted) per datagram",
            sflow_traffic(datagrams),
        ),
    }


def in_process_section(
    traffic: dict[str, tuple[str, tuple[list[bytes], list[bytes]] | None]], repeats: int, quick: bool
) -> list[str]:
    extension = EXTENSION is not None
    python_rates = python_path_rates(quick) if extension else {}
    have_goflow2 = peers.GOFLOW2_DECODE.binary.exists()
    datagram_count = next(len(data[1]) for _, data in traffic.values() if data)
    lines = [
        "## Decoders in-process (bench/bench_decode.py)",
        "",
        f"Flows per CPU-second of one process, {datagram_count} datagrams per run, median of {repeats} runs, "
        "flowsink and goflow2 runs alternating. Scope: a datagram already in memory to encoded documents in memory;"
        " no socket, no file. flowsink: decode + ECS document + Elasticsearch bulk lines (action + source) joined "
        f"as a request body, {'with' if extension else 'WITHOUT (not built)'} the C extension writing the lines; "
        "pure Python: the same without it (FLOWSINK_NO_EXTENSION=1, child process). goflow2 "
        f"{peers.GOFLOW2_VERSION}: its own pipeline (decoder, protobuf producer, formatter) called in-process by "
        "bench/goflow2_decode on the same datagrams; protobuf (`bin`) is the format its README recommends for "
        "volume, JSON the one it advises only for small volumes (a quarter of the datagrams per run: it is slow)."
        " netflow package: decode only, no documents.",
        "",
        "| protocol | traffic | flowsink flows/s | pure Python | goflow2 protobuf | flowsink / goflow2 protobuf "
        "| goflow2 JSON | flowsink / goflow2 JSON | netflow pkg (decode only) | flowsink / netflow pkg "
        "| bytes written per flow: flowsink / goflow2 protobuf |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        workdir = Path(tmp)
        for protocol, (description, data) in traffic.items():
            if data is None:
                lines.append(f"| {protocol} | decoder not available | - | - | - | - | - | - | - | - | - |")
                continue
            templates, payloads = data
            not_flows = sum(
                n for action, n in document_actions(templates, payloads).items() if action in NOT_FLOWS
            )
            ours_runs, bin_runs = [], []
            for _ in range(repeats):  # alternate, so that load elsewhere falls on both
                documents, seconds = run_flowsink(templates, payloads)
                ours_runs.append((documents - not_flows, seconds))
                if have_goflow2:
                    found = run_goflow2_in_process(protocol, templates, payloads, "bin", workdir)
                    if found:
                        bin_runs.append(found)
            json_runs = []
            if have_goflow2:
                for _ in range(max(1, repeats // 2)):
                    part = payloads[: max(1, len(payloads) // 4)]
                    found = run_goflow2_in_process(protocol, templates, part, "json", workdir)
                    if found:
                        json_runs.append(found)
            ours = rate(ours_runs)
            goflow_bin = rate(bin_runs) if bin_runs else None
            goflow_json = rate(json_runs) if json_runs else None
            if bin_runs and bin_runs[0][0] != ours_runs[0][0]:
                print(
                    f"({protocol}: goflow2 wrote {bin_runs[0][0]} messages, flowsink {ours_runs[0][0]} flows)",
                    file=sys.stderr,
                )
            package = None
            if protocol != "sflow":
                package = rate([run_netflow_package(protocol, templates, payloads) for _ in range(repeats)])
            python_rate = python_rates.get(protocol)
            ours_bytes = bulk_bytes_per_flow(templates, payloads, ours_runs[0][0])
            peer_bytes = written_per_flow.get((protocol, "bin"))
            sizes = f"{ours_bytes:,.0f} / {peer_bytes:,.0f}" if peer_bytes else f"{ours_bytes:,.0f} / -"
            lines.append(
                f"| {protocol} | {description} | {ours:,.0f} | {_rate_text(python_rate)} | "
                f"{_rate_text(goflow_bin)} | {_ratio(ours, goflow_bin)} | {_rate_text(goflow_json)} | "
                f"{_ratio(ours, goflow_json)} | {_rate_text(package)} | {_ratio(ours, package)} | {sizes} |"
            )
    if not have_goflow2:
        lines += [
            "",
            "goflow2 columns empty: Go is not installed, or `python bench/peers.py` could not build it.",
        ]
    return lines


def _run_round(
    order: list[WholeProcess], protocol: str, payloads: list[bytes], flows_each: list[int], seconds: float
) -> dict[str, tuple[int, float, float]]:
    """One run of each contender. The paired ones end at the same offered rate: when one of them had to slow
    down, those already measured at a higher rate are measured again at the lower one (CPU per flow depends a
    little on the rate: fixed costs such as timers weigh more at a lower one)."""
    results: dict[str, tuple[int, float, float]] = {}
    shared = max(c.first_rate for c in order if c.paired) if any(c.paired for c in order) else 0.0
    pending = list(order)
    while pending:
        contender = pending.pop(0)
        start = shared if contender.paired else contender.first_rate
        found = run_whole_process(contender, protocol, payloads, flows_each, seconds, start)
        if found is None:
            continue
        results[contender.name] = found
        if contender.paired and found[2] < shared:
            shared = found[2]
            pending += [c for c in order if c.paired and c is not contender and c.name in results]
    return results


def whole_process_section(
    traffic: dict[str, tuple[str, tuple[list[bytes], list[bytes]] | None]], runs: int, seconds: float
) -> list[str]:
    results: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for protocol, (_, data) in traffic.items():
        if data is None:
            continue
        templates, datagrams = data
        # templates first (three times: a copy lost to a busy socket must not cost the run), then the data
        payloads = [*templates, *templates, *templates, *datagrams]
        flows_each = flows_per_datagram(payloads)
        for run in range(runs):
            order = WHOLE_PROCESS[run % len(WHOLE_PROCESS) :] + WHOLE_PROCESS[: run % len(WHOLE_PROCESS)]
            order = [c for c in order if protocol in c.protocols]
            for contender, found in _run_round(order, protocol, payloads, flows_each, seconds).items():
                results.setdefault((contender, protocol), []).append(found)
    headline = WHOLE_PROCESS[0].name
    names = [c.name for c in WHOLE_PROCESS]
    lines = [
        "## Collectors as whole processes (bench/bench_decode.py)",
        "",
        "Flows per CPU-second of the whole process (all threads; for flowsink all of the node's processes): UDP "
        f"over loopback in, one encoded flow per message in a file out; about {seconds:g} s of traffic per run, "
        f"median of {runs} run(s), contenders in rotating order. Fed open-loop by bench/udpsend.c (sendmmsg) from "
        "one exporter socket at a fixed rate; every run counted all the flows sent in the output (a run that "
        "lost one was repeated at half the rate; the rate of the counted runs is in brackets, in flows/s). "
        "flowsink: `flowsink run` with `output: file` and its defaults (every datagram in its durable queue, "
        "fsync of the queue and of the file). goflow2: `-format bin -transport.file.sep=` (length-delimited "
        "protobuf, the pipe configuration of its README) and `-format json`. Filebeat: its netflow input "
        "(`detect_sequence_reset: false`) and file output, ECS JSON, no other processors.",
        "",
        "| protocol | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{headline.split(' (')[0]} / {n.split(' (')[0]}" for n in names[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for protocol, (_, data) in traffic.items():
        if data is None:
            continue
        figures: dict[str, float | None] = {}
        cells = []
        for name in names:
            found = results.get((name, protocol))
            if not found:
                figures[name] = None
                cells.append("-")
                continue
            figures[name] = statistics.median(flows / cpu for flows, cpu, _ in found if cpu > 0)
            offered = statistics.median(rate_ for _, _, rate_ in found)
            cells.append(f"{figures[name]:,.0f} ({offered:,.0f})")
        ratios = [_ratio(figures[headline], figures[name]) for name in names[1:]]
        lines.append(f"| {protocol} | " + " | ".join(cells + ratios) + " |")
    missing = [p.name for p in (peers.GOFLOW2, peers.FILEBEAT) if not p.binary.exists()]
    if missing:
        lines += ["", f"Not built: {', '.join(missing)} (`python bench/peers.py` needs Go)."]
    lines += ["", "Filebeat has no sFlow input."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer datagrams and repeats)")
    parser.add_argument("--scope", choices=("both", "in-process", "whole-process"), default="both")
    parser.add_argument("--no-peers", action="store_true", help="do not build the Go peers")
    parser.add_argument(
        "--flowsink-only",
        action="store_true",
        help="print flowsink's rates as JSON, nothing else (the pure-Python child run)",
    )
    args = parser.parse_args(argv)
    datagrams = 300 if args.quick else 5000
    repeats = 3 if args.quick else 5
    if os.environ.get("FLOWSINK_BENCH_CPU") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ["FLOWSINK_BENCH_CPU"])})
    traffic = traffic_by_protocol(datagrams)
    if args.flowsink_only:
        rates = {}
        for protocol, (_, data) in traffic.items():
            if data is None:
                continue
            not_flows = sum(n for action, n in document_actions(*data).items() if action in NOT_FLOWS)
            rates[protocol] = rate(
                [(d - not_flows, s) for d, s in (run_flowsink(*data) for _ in range(repeats))]
            )
        print(orjson.dumps(rates).decode())
        return 0
    if not args.no_peers:
        peers.build_all()
    lines: list[str] = []
    if args.scope in ("both", "in-process"):
        lines += in_process_section(traffic, repeats, args.quick)
    if args.scope in ("both", "whole-process"):
        lines += ["", *whole_process_section(traffic, 1 if args.quick else 3, 2.0 if args.quick else 4.0)]
    lines += [
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible; other work on the machine makes "
        "figures noisy (the ratios of alternated runs less so).",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
