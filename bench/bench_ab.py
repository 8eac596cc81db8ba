"""The decoders of two checkouts side by side, interleaved in one run: did a change make them slower?

    python bench/bench_ab.py OLD_CHECKOUT [NEW_CHECKOUT] [--rounds 7] [--seconds 2]

Each round runs every protocol's workload once in each checkout (a fresh process with that checkout's
``ingest/`` first on ``sys.path``, its C extension built in place), alternating which goes first, and measures
flows per CPU-second of that process: datagram -> ECS document -> bulk lines, one core, the same datagrams for
both. The figure to read is the median of the per-round new/old ratios: interleaving cancels most of a noisy
machine's drift, which would swamp a difference of a few percent between two separate runs. ``--callgrind``
also counts instructions per flow under valgrind (repeatable whatever else the machine does).

The workloads use only ``FlowDecoder``, ``DecoderSettings`` and ``BulkFormat``, which both sides have.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"

# protocol -> (exporter, fixture files in order: templates first)
WORKLOADS = {
    "netflow_v5": ["logstash-codec-netflow/netflow5.dat"],
    "netflow_v9": [
        "logstash-codec-netflow/netflow9_test_cisco_asa_1_tpl.dat",
        "logstash-codec-netflow/netflow9_test_cisco_asa_1_data.dat",
    ],
    "ipfix": [
        "logstash-codec-netflow/ipfix_test_mikrotik_tpl.dat",
        "logstash-codec-netflow/ipfix_test_mikrotik_data258.dat",
    ],
    "sflow": ["logstash-codec-sflow/sflow_flow_sample.dat"],
}

# Runs inside the measured process: argv = [fixture paths as JSON, seconds].
WORKER = r"""
import json, sys, time
from flowsink.bulk import BulkFormat
from flowsink.decode import DecoderSettings, FlowDecoder
paths, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
payloads = [open(p, "rb").read() for p in paths]
decoder = FlowDecoder(DecoderSettings(bulk=BulkFormat()))
for p in payloads[:-1]:
    decoder.decode(p, "192.0.2.1", 1_700_000_000_000_000_000)
data = payloads[-1]
flows, n = 0, 0
start = time.process_time()
while time.process_time() - start < seconds:
    for _ in range(200):
        n += 1
        flows += len(decoder.decode(data, "192.0.2.1", 1_700_000_000_000_000_000 + n).encoded)
print(json.dumps({"flows": flows, "cpu": time.process_time() - start}))
"""


def measure(checkout: Path, paths: list[str], seconds: float) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout / "ingest"))
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(paths), str(seconds)],
        env=env,
        capture_output=True,
        check=True,
    )
    result = json.loads(done.stdout)
    return result["flows"] / result["cpu"]


def instructions_per_flow(checkout: Path, paths: list[str]) -> float:
    """valgrind's instruction count of a fixed number of decodes, per flow (minus the start-up's count)."""

    def count(seconds: str) -> tuple[int, int]:
        script = WORKER.replace("time.process_time() - start < seconds", "n < int(seconds)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cg.out"
            env = dict(os.environ, PYTHONPATH=str(checkout / "ingest"))
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", script,
                 json.dumps(paths), seconds],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            total = next(
                int(line.split()[-1]) for line in out.read_text().splitlines() if line.startswith("totals:")
            )
            return total, json.loads(done.stdout.splitlines()[-1])["flows"]

    (base, base_flows), (big, big_flows) = count("200"), count("2200")
    return (big - base) / (big_flows - base_flows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "old", type=Path, help="the checkout to compare against (its C extension built in place)"
    )
    parser.add_argument("new", type=Path, nargs="?", default=ROOT, help="default: this checkout")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU-seconds per measurement")
    parser.add_argument(
        "--callgrind", action="store_true", help="also count instructions per flow (valgrind)"
    )
    args = parser.parse_args()
    print(
        f"old: {args.old}\nnew: {args.new}\n{args.rounds} interleaved rounds of {args.seconds:g} CPU-s each\n"
    )
    print("| protocol | old flows/CPU-s (median) | new flows/CPU-s (median) | new/old (median of rounds) |")
    print("|---|---:|---:|---:|")
    for protocol, names in WORKLOADS.items():
        paths = [str(FIXTURES / name) for name in names]
        olds, news, ratios = [], [], []
        for round_ in range(args.rounds):
            order = [(args.old, olds), (args.new, news)]
            if round_ % 2:
                order.reverse()
            for checkout, results in order:
                results.append(measure(checkout, paths, args.seconds))
            ratios.append(news[-1] / olds[-1])
        print(
            f"| {protocol} | {statistics.median(olds):,.0f} | {statistics.median(news):,.0f} | "
            f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}) |"
        )
    if args.callgrind:
        if not shutil.which("valgrind"):
            print("\nvalgrind not installed: no instruction counts")
            return 0
        print(
            "\n| protocol | old instructions/flow | new instructions/flow | new/old |\n|---|---:|---:|---:|"
        )
        for protocol, names in WORKLOADS.items():
            paths = [str(FIXTURES / name) for name in names]
            old, new = instructions_per_flow(args.old, paths), instructions_per_flow(args.new, paths)
            print(f"| {protocol} | {old:,.0f} | {new:,.0f} | {new / old:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
