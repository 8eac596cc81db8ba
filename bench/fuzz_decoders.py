"""Fuzz every decoder through ``FlowDecoder``: a million or more mutated datagrams, outside the test suite.

Coverage-guided with atheris (libFuzzer) when it is installed (``pip install -e '.[fuzz]'``), seeded with every
shared fixture and synthetic sFlow datagrams; without atheris, a seeded random mutator (truncation, bit flips,
length fields set to 0 and to the maximum, splices) does the same job blindly. Either way each input goes
through one long-lived ``FlowDecoder`` (templates and sequence state accumulate, as in a real worker) and:

- an exception escaping ``decode``, or the facade's ``decoder_error`` (a protocol decoder raised), is a finding;
- every 10,000 inputs, known-good datagrams from an exporter the fuzz inputs never use must still decode to the
  same number of documents (a bad datagram never breaks later good ones);
- memory is bounded (libFuzzer's ``-rss_limit_mb``, and our own RSS check in random mode); a hang is caught by
  libFuzzer's ``-timeout``.

    python bench/fuzz_decoders.py --runs 1000000          # the full run (make fuzz)
    python bench/fuzz_decoders.py --quick                 # 20,000 inputs
Prints a markdown section with the outcome; exits 0 when nothing was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flowsink.bulk import BulkFormat

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
FINDINGS_DIR = REPO / "bench" / ".work" / "fuzz-findings"  # the full input of each distinct finding
CHECK_EVERY = 10_000
RSS_LIMIT_MB = 2048
MAX_INPUT = 9000
FUZZ_EXPORTERS = ("203.0.113.1", "203.0.113.2", "2001:db8::99")
CHECK_EXPORTER = "198.51.100.200"

try:
    import atheris
except ImportError:  # the blind mutator below still runs
    atheris = None
if "--blind" in sys.argv:
    atheris = None  # no instrumentation either: it would only slow the blind run

if atheris is not None:
    # the facade imports protocol decoders lazily: import them here so that they get instrumented too
    with atheris.instrument_imports(include=["flowsink.decode", "flowsink.normalize"]):
        import flowsink.decode.ipfix
        import flowsink.decode.netflow_v5
        import flowsink.decode.netflow_v9
        import flowsink.decode.packet
        import flowsink.decode.sflow  # noqa: F401
        from flowsink.decode import DecoderSettings, FlowDecoder
else:
    from flowsink.decode import DecoderSettings, FlowDecoder


def seed_payloads() -> list[bytes]:
    """Every fixture datagram (templates before data, as their names sort) plus synthetic sFlow."""
    paths = sorted(FIXTURES.glob("logstash-codec-netflow/*.dat"), key=lambda p: ("tpl" not in p.name, p.name))
    paths += sorted(FIXTURES.glob("logstash-codec-sflow/*.dat")) + sorted(FIXTURES.glob("telegraf/*/*.bin"))
    return [path.read_bytes() for path in paths]


def check_datagrams() -> list[bytes]:
    """Good datagrams whose document counts must never change while fuzzing."""
    names = [
        "logstash-codec-netflow/netflow5.dat",
        "logstash-codec-netflow/ipfix_test_mikrotik_tpl.dat",
        "logstash-codec-netflow/ipfix_test_mikrotik_data258.dat",
        "telegraf/sflow_issue_15918/message.bin",
        "logstash-codec-netflow/netflow9_test_cisco_asa_1_tpl.dat",
        "logstash-codec-netflow/netflow9_test_cisco_asa_1_data.dat",
    ]
    return [(FIXTURES / name).read_bytes() for name in names]


def _documents(result: Any) -> int:
    return len(result.documents) + len(result.encoded)


class Harness:
    """One decoder, the counters, and the checks run between inputs."""

    def __init__(self, runs: int, bulk: bool = True) -> None:
        # bulk lines are what the node asks for (the C writers); --dicts covers the dict path
        self.decoder = FlowDecoder(
            DecoderSettings(
                max_templates_per_exporter=256, max_exporters=64, bulk=BulkFormat() if bulk else None
            )
        )
        self.runs = runs
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.protocols: Counter[str] = Counter()
        self.documents = 0
        self.findings: list[str] = []
        self.finding_counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.checks = check_datagrams()
        self.expected_docs = self._check_counts()

    def _check_counts(self) -> list[int]:
        return [_documents(self.decoder.decode(p, CHECK_EXPORTER, 1)) for p in self.checks]

    def one(self, data: bytes) -> None:
        exporter = FUZZ_EXPORTERS[self.count % len(FUZZ_EXPORTERS)]
        self.count += 1
        try:
            result = self.decoder.decode(data, exporter, 1_700_000_000_000_000_000 + self.count)
        except Exception as exc:  # the finding this harness exists for
            self.finding(f"exception escaped FlowDecoder.decode: {type(exc).__name__}: {exc}", data)
            return
        self.protocols[result.protocol or "none"] += 1
        self.documents += _documents(result)
        for reason, detail in result.errors:
            self.reasons[reason] += 1
            if reason == "decoder_error":
                # the facade caught a protocol decoder's exception: the node survives, but it is a bug
                self.finding(detail.replace(exporter, "<exporter>"), data)
        if self.count % CHECK_EVERY == 0:
            self._between_inputs()
        if self.count == self.runs:
            self.report()

    def finding(self, what: str, data: bytes) -> None:
        """Record a distinct finding (keep going: one bug must not hide the others) with its first input."""
        self.finding_counts[what] += 1
        if self.finding_counts[what] == 1:
            self.findings.append(f"{what} (first input: {data[:48].hex()}...)")
            FINDINGS_DIR.mkdir(parents=True, exist_ok=True)
            (FINDINGS_DIR / f"finding-{len(self.findings):03d}.bin").write_bytes(data)

    def _between_inputs(self) -> None:
        self.decoder.expire(1_700_000_000_000_000_000 + self.count + 120 * 10**9)
        counts = self._check_counts()
        if counts != self.expected_docs:
            self.finding(f"good datagrams decoded to {counts}, expected {self.expected_docs}", b"")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if rss_mb > RSS_LIMIT_MB:
            self.finding(f"peak RSS {rss_mb:.0f} MB over {RSS_LIMIT_MB} MB", b"")
        if self.count % 100_000 == 0:
            rate = self.count / (time.perf_counter() - self.started)
            print(
                f"fuzz: {self.count} inputs, {rate:.0f}/s, peak RSS {rss_mb:.0f} MB",
                file=sys.stderr,
                flush=True,
            )

    def report(self) -> None:
        elapsed = time.perf_counter() - self.started
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        engine = "atheris (libFuzzer, coverage-guided)" if atheris is not None else "seeded random mutator"
        lines = [
            "## Decoder fuzzing",
            "",
            f"- engine: {engine}",
            f"- inputs: {self.count:,} in {elapsed:.0f} s ({self.count / elapsed:,.0f}/s), peak RSS {rss_mb:.0f} MB",
            f"- distinct findings (exceptions, decoder_error, good data broken, memory): {len(self.findings)}, "
            f"on {sum(self.finding_counts.values()):,} inputs",
            f"- datagrams by detected protocol: {dict(self.protocols.most_common())}",
            f"- documents produced: {self.documents:,}",
            f"- rejected, by reason: {dict(self.reasons.most_common(12))}",
        ]
        lines += [
            f"  - {finding} x{count}"
            for finding, count in zip(self.findings, self.finding_counts.values(), strict=True)
        ][:20]
        print("\n".join(lines), flush=True)


# --- blind mode -------------------------------------------------------------------------------------------------


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        choice = rng.random()
        if not data:
            data = bytearray(rng.randbytes(rng.randrange(1, 64)))
        position = rng.randrange(len(data))
        if choice < 0.25:
            del data[rng.randrange(len(data) + 1) :]  # truncation
        elif choice < 0.5:
            data[position] ^= 1 << rng.randrange(8)  # bit flip
        elif choice < 0.7:  # a 16- or 32-bit field (lengths, counts, ids) set to 0 or its maximum
            width = rng.choice((2, 4))
            start = position - position % width
            data[start : start + width] = rng.choice((b"\0", b"\xff")) * width
        elif choice < 0.8:
            data[position] = rng.randrange(256)
        elif choice < 0.9:  # duplicate a chunk (repeated sets, records)
            end = min(len(data), position + rng.randrange(1, 128))
            data[position:position] = data[position:end]
        else:
            data[position:position] = rng.randbytes(rng.randrange(1, 16))
    return bytes(data[:MAX_INPUT])


def run_blind(harness: Harness, seeds: list[bytes], runs: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(runs):
        harness.one(mutate(rng, rng.choice(seeds)))


def run_atheris(harness: Harness, seeds: list[bytes], runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="flowsink-fuzz-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for number, payload in enumerate(seeds):
        (corpus / f"seed{number:04d}").write_bytes(payload)

    args = [
        sys.argv[0],
        f"-runs={runs}",
        f"-max_len={MAX_INPUT}",
        f"-rss_limit_mb={RSS_LIMIT_MB + 1024}",
        "-timeout=10",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(args, harness.one)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 inputs")
    parser.add_argument(
        "--blind", action="store_true", help="use the random mutator even if atheris is there"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dicts",
        action="store_true",
        help="decode to dict documents instead of the bulk lines the node uses",
    )
    args = parser.parse_args()
    runs = 20_000 if args.quick else args.runs
    seeds = seed_payloads()
    harness = Harness(runs, bulk=not args.dicts)
    if atheris is not None and not args.blind:
        # libFuzzer replays the seed corpus first and counts those inputs too
        run_atheris(harness, seeds, runs)
    else:
        run_blind(harness, seeds, runs, args.seed)
    return 1 if harness.findings else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
