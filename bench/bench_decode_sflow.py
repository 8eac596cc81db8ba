"""sFlow v5: decode + normalise + serialise to Elasticsearch bulk bytes on one core, against goflow2 in the same run.

Traffic like a switch's export: datagrams of 6 flow samples (under a 1400-byte MTU), each with a 128-byte sampled
header (Ethernet, sometimes 802.1Q, IPv4 or IPv6, TCP or UDP) and an extended switch record, every sample a
different 5-tuple so no per-flow cache can help; plus, for flowsink only, a real capture (Telegraf's
sflow_issue_15918: 6 flow samples and a counter sample per datagram).

flowsink figures are documents per CPU-second of this process (``time.process_time``), median of the runs, of
the path the pipeline takes: ``FlowDecoder`` given a ``BulkFormat`` returns each document's bulk action and source
lines, joined into a request body (bench_decode.run_flowsink). With its C extension (flowsink.native,
the default when built) the decoder writes those lines itself, never building a document dict, so there is no
separate serialisation step left to time apart; without it (the pure-Python path FLOWSINK_NO_EXTENSION=1
gives, switched in this process, so both paths run in the same process and run) it builds dicts that
flowsink.bulk encodes with orjson. goflow2 (v2.2.6, built by bench/peers.py from the Go module proxy): its own
pipeline called in-process on the same datagrams (bench/goflow2_decode: decoder, protobuf producer, formatter;
bench_decode's runner), in its recommended protobuf format and in JSON, its runs alternating with flowsink's;
the same scope as flowsink's figures (datagram in memory to encoded messages in memory), one message per flow
sample. bench/bench_decode.py compares the collectors as whole processes too.

    python bench/bench_decode_sflow.py            # full run
    python bench/bench_decode_sflow.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
from bench_decode import FIXTURES, document_actions, rate, run_flowsink, run_goflow2_in_process
from flowsink.decode import sflow as sflow_module
from flowsink.normalize import common

EXTENSION = sflow_module.EXTENSION

SAMPLES_PER_DATAGRAM = 6
SAMPLING_RATE = 1024


def _sampled_frame(rng: random.Random, number: int) -> tuple[bytes, int]:
    """A 128-byte sampled header of a frame of some length, and that frame length."""
    tcp = number % 3 != 0
    ipv6 = number % 5 == 0
    payload_length = rng.randint(40, 1400)
    if ipv6:
        src, dst = rng.randbytes(16), rng.randbytes(16)
        l3 = struct.pack("!IHBB16s16s", 0x60000000, payload_length, 6 if tcp else 17, 64, src, dst)
        ethertype = 0x86DD
    else:
        src, dst = rng.randbytes(4), rng.randbytes(4)
        l3 = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + payload_length,
            number & 0xFFFF,
            0x4000,
            64,
            6 if tcp else 17,
            0,
            src,
            dst,
        )
        ethertype = 0x0800
    ports = struct.pack("!HH", rng.randint(1024, 65535), rng.choice((80, 443, 53, 123, 8080)))
    l4 = ports + (
        struct.pack("!IIBBHHH", number, 0, 0x50, 0x18, 512, 0, 0) if tcp else struct.pack("!HH", 0, 0)
    )
    l2 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
    if number % 4 == 0:
        l2 += struct.pack("!HH", 0x8100, 100 + number % 50)
    l2 += struct.pack("!H", ethertype)
    frame = l2 + l3 + l4
    frame_length = len(frame) + payload_length + 4
    return (frame + b"\x00" * 128)[:128], frame_length


def switch_traffic(count: int, seed: int = 3) -> list[bytes]:
    """``count`` datagrams of 7 flow samples each, every sample its own 5-tuple."""
    rng = random.Random(seed)
    datagrams = []
    sample_sequence = 0
    for datagram_sequence in range(count):
        samples = []
        for _ in range(SAMPLES_PER_DATAGRAM):
            sample_sequence += 1
            header, frame_length = _sampled_frame(rng, sample_sequence)
            raw = struct.pack(
                "!IIII", 1, frame_length, 4, len(header)
            )  # Ethernet, frame length, stripped FCS
            raw_record = struct.pack("!II", 1, len(raw) + len(header)) + raw + header
            switch = struct.pack("!IIIIII", 1001, 16, 100, 0, 200, 0)
            body = (
                struct.pack(
                    "!IIIIIIII",
                    sample_sequence,
                    7,
                    SAMPLING_RATE,
                    sample_sequence * SAMPLING_RATE,
                    0,
                    7,
                    9,
                    2,
                )
                + raw_record
                + switch
            )
            samples.append(struct.pack("!II", 1, len(body)) + body)
        header = struct.pack(
            "!II4sIIII",
            5,
            1,
            bytes([10, 0, 0, 1]),
            0,
            datagram_sequence + 1,
            3_600_000 + datagram_sequence,
            len(samples),
        )
        datagrams.append(header + b"".join(samples))
    return datagrams


def capture_traffic(count: int) -> list[bytes] | None:
    path = FIXTURES / "telegraf" / "sflow_issue_15918" / "message.bin"
    if not path.exists():
        return None
    data = path.read_bytes()
    return [data[:16] + struct.pack("!I", n + 1) + data[20:] for n in range(count)]  # datagram sequence


@contextmanager
def pure_python() -> Iterator[None]:
    """Decoders made inside decode as without the C extension: no C sFlow writer, and the Community ID's SHA-1 in
    Python (what FLOWSINK_NO_EXTENSION=1 gives; switched here so both paths run interleaved in one process)."""
    saved = sflow_module.EXTENSION, common.EXTENSION
    sflow_module.EXTENSION = common.EXTENSION = None
    try:
        yield
    finally:
        sflow_module.EXTENSION, common.EXTENSION = saved


def flowsink_rates(
    datagrams: list[bytes], repeats: int, goflow2: bool, workdir: Path, not_flows: int = 0
) -> dict[str, float]:
    """Flows/s of decode to bulk lines, C and pure Python, and of goflow2's in-process protobuf path, medians of
    ``repeats`` runs each; the paths alternate run by run so a burst of load elsewhere falls on all of them.
    Keys: c, python, goflow2 (absent when not measured). ``not_flows``: documents of counter samples among
    flowsink's, left out of its count (goflow2 writes nothing for them)."""
    runs: dict[str, list[tuple[int, float]]] = {"c": [], "python": [], "goflow2": []}
    for _ in range(repeats):
        if EXTENSION is not None:
            documents, seconds = run_flowsink([], datagrams)
            runs["c"].append((documents - not_flows, seconds))
        with pure_python():
            documents, seconds = run_flowsink([], datagrams)
            runs["python"].append((documents - not_flows, seconds))
        if goflow2:
            found = run_goflow2_in_process("sflow", [], datagrams, "bin", workdir)
            if found:
                runs["goflow2"].append(found)
    return {path: rate(found) for path, found in runs.items() if found}


def _ratio(ours: float | None, peer: float | None) -> str:
    return f"{ours / peer:.2f}x" if ours and peer else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer datagrams and repeats)")
    parser.add_argument("--no-goflow2", action="store_true", help="skip the goflow2 peer")
    args = parser.parse_args(argv)
    count = 1000 if args.quick else 5000
    repeats = 3 if args.quick else 5
    traffic = {
        f"synthetic switch export, {SAMPLES_PER_DATAGRAM} flow samples per datagram": switch_traffic(count),
        "Telegraf sflow_issue_15918 capture (6 flow + 1 counter sample)": capture_traffic(count),
    }
    goflow2 = not args.no_goflow2 and peers.goflow2_decode() is not None
    lines = [
        "## sFlow decoder (bench/bench_decode_sflow.py)",
        "",
        f"Flows (flow samples) per CPU-second, {count} datagrams per run, median of {repeats} runs, the paths "
        "alternating. Scope: a datagram in memory to encoded documents in memory, one core. flowsink: datagram -> "
        "Elasticsearch bulk action + source lines of the ECS documents, joined as a request body (the pipeline's "
        'path); "C" with the flowsink.native extension (it writes the lines, no document dicts), '
        '"Python" without any C extension (as FLOWSINK_NO_EXTENSION=1: dicts, then orjson), in the same '
        f"process; counter samples are documents too but not counted. goflow2 {peers.GOFLOW2_VERSION}: its own "
        "pipeline called in-process (bench/goflow2_decode), protobuf output (`bin`, what it recommends for "
        "volume), one message per flow sample.",
        "",
        "| traffic | C | Python | C / Python | goflow2 protobuf | C / goflow2 | Python / goflow2 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-sflow-") as tmp:
        for description, datagrams in traffic.items():
            if datagrams is None:
                continue
            not_flows = document_actions([], datagrams).get("sflow_counter_sample", 0)
            found = flowsink_rates(datagrams, repeats, goflow2, Path(tmp), not_flows)
            c_full, py_full, go_rate = found.get("c"), found.get("python"), found.get("goflow2")
            cells = [
                f"{c_full:,.0f}" if c_full else "-",
                f"{py_full:,.0f}" if py_full else "-",
                _ratio(c_full, py_full),
                f"{go_rate:,.0f}" if go_rate else "-",
                _ratio(c_full, go_rate),
                _ratio(py_full, go_rate),
            ]
            lines.append(f"| {description} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Target: 150,000 flows/s on one core. Python {sys.version.split()[0]}, {os.cpu_count()} CPUs "
        f"visible; C extension {'built' if EXTENSION is not None else 'absent'}; goflow2 "
        f"{'present' if goflow2 else 'absent'}; a shared machine makes figures noisy.",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
