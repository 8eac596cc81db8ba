"""The sFlow C path (flowsink.native, sflow.c) against the pure-Python paths: identical documents (to the
serialised byte), identical errors and counters, no crash on mutated input; and the fallback without it."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from flowsink.decode import DecoderSettings
from flowsink.decode import sflow as sflow_module
from flowsink.decode.sflow import SflowDecoder
from support.enrichment import enricher

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
EXPORTER = "192.0.2.7"
ARRIVAL_NS = 1_700_000_000_123_456_789

needs_extension = pytest.mark.skipif(sflow_module.EXTENSION is None, reason="the C extension is not built")


def _fixture_payloads() -> list[bytes]:
    paths = sorted(FIXTURES.glob("telegraf/sflow_*/*.bin")) + sorted(
        FIXTURES.glob("logstash-codec-sflow/*.dat")
    )
    return [path.read_bytes() for path in paths]


def _record(fmt: int, body: bytes) -> bytes:
    return struct.pack("!II", fmt, len(body)) + body


def _frame(rng: random.Random, common: bool) -> bytes:
    """An Ethernet frame's first bytes: the common case, or (not ``common``) anything near it."""
    variant = rng.choice((0, 1, 2, 5, 6, 7)) if common else rng.randrange(12)
    proto = rng.choice((6, 17)) if common else rng.choice((6, 6, 17, 17, 1, 58, 132))
    l4 = struct.pack("!HH", rng.randrange(65536), rng.randrange(65536))
    l4 += (
        struct.pack("!IIBBHHH", rng.getrandbits(32), 0, 0x50, rng.randrange(256), 512, 0, 0)
        if proto == 6
        else (struct.pack("!HH", rng.randrange(2000), 0))
    )
    if variant < 5:
        ethertype = 0x0800
        ihl = 0x46 if variant == 4 else 0x45
        fragment = rng.choice((0, 0x4000)) if common else rng.choice((0, 0, 0, 0x2000, 0x0010))
        l3 = struct.pack(
            "!BBHHHBBH4s4s",
            ihl,
            rng.randrange(256),
            rng.randrange(65536),
            rng.randrange(65536),
            fragment,
            rng.randrange(256),
            proto,
            0,
            rng.randbytes(4),
            rng.randbytes(4),
        )
        if ihl == 0x46:
            l3 += b"\x01\x01\x01\x00"
    elif variant < 10:
        ethertype = 0x86DD
        next_header = 0 if variant == 9 else proto
        # addresses with long zero runs and IPv4-mapped ones test the text form
        src = rng.choice(
            (rng.randbytes(16), bytes(10) + b"\xff\xff" + rng.randbytes(4), b"\x20\x01" + bytes(14))
        )
        l3 = struct.pack(
            "!IHBB16s16s",
            (6 << 28) | rng.getrandbits(28),
            rng.randrange(65536),
            next_header,
            rng.randrange(256),
            src,
            rng.randbytes(16),
        )
        if next_header == 0:
            l3 += struct.pack("!BB6x", proto, 0)
    else:
        ethertype = rng.choice((0x0806, 0x8847))
        l3 = rng.randbytes(24)
    tags = b""
    for _ in range(rng.choice((0, 1)) if common else rng.choice((0, 0, 1, 1, 2))):
        tags += struct.pack(
            "!HH", 0x8100 if common else rng.choice((0x8100, 0x8100, 0x88A8)), rng.randrange(65536)
        )
    # each tag is its TPID then its TCI; the ethertype after the last tag is the payload's
    frame = rng.randbytes(12) + tags + struct.pack("!H", ethertype)
    return frame + l3 + l4 + rng.randbytes(rng.randrange(40))


def _flow_sample(rng: random.Random, sequence: int) -> bytes:
    common = rng.random() < 0.7
    frame = _frame(rng, common)
    header = frame[: rng.choice((len(frame), 128) if common else (len(frame), 128, 30, 14, 10))]
    padded = header + b"\0" * (-len(header) % 4)
    header_protocol = 1 if common else rng.choice((1, 1, 1, 11))
    raw = _record(1, struct.pack("!IIII", header_protocol, rng.randrange(64, 9000), 4, len(header)) + padded)
    switch = _record(1001, struct.pack("!IIII", *(rng.randrange(4096) for _ in range(4))))
    router = _record(1002, struct.pack("!II4sII", 1, 1, rng.randbytes(4), 24, 16))
    gateway = _record(
        1003,
        struct.pack("!IIIIIIIII", 0, 65001, 65002, 65003, 1, 2, 2, 65010, 65020)
        + struct.pack("!III", 1, 7, 100),
    )
    records = rng.choice(
        ([raw], [raw, switch], [switch, raw])
        if common
        else (
            [raw],
            [raw, switch],
            [switch],
            [raw, raw],
            [raw, switch, _record(1002, struct.pack("!I", 0) + bytes(8))],
            [raw, _record(9999, b"abcd")],
            [raw, switch, router, gateway],
            [gateway, raw],
        )
    )
    source = rng.choice((3, 7, (1 << 24) | 9))
    interfaces = rng.choice(
        ((3, 4), (7, 3), (0, 0))
        if common
        else ((0x3FFFFFFF, 2), (5, 0x40000001), (3, 4), (3, 0x80000003), (0xC0000001, 0x3FFFFFFF))
    )
    rate = rng.choice((0, 1, 512, 4096, 0xFFFFFFFF))
    if (
        not common and rng.randrange(4) == 0
    ):  # the expanded form: source and interface formats in words of their own
        body = struct.pack(
            "!IIIIIIIIIII",
            sequence,
            source >> 24,
            source & 0xFFFFFF,
            rate,
            rng.getrandbits(32),
            rng.randrange(5),
            interfaces[0] >> 30,
            interfaces[0] & 0x3FFFFFFF,
            interfaces[1] >> 30,
            interfaces[1] & 0x3FFFFFFF,
            len(records),
        ) + b"".join(records)
        return _record(3, body)
    body = struct.pack(
        "!IIIIIIII", sequence, source, rate, rng.getrandbits(32), rng.randrange(5), *interfaces, len(records)
    ) + b"".join(records)
    return _record(1, body)


def _counter_sample(number: int) -> bytes:
    """No records, or a port's generic interface and Ethernet counters (with its name every other time)."""
    if number % 2:
        return _record(2, struct.pack("!III", number, 3, 0))
    records = [
        _record(1, struct.pack("!IIQIIQIIIIIIQIIIIII", 3, 6, 10**9, 1, number & 3, *range(14))),
        _record(2, struct.pack("!13I", *range(13))),
    ]
    if number % 4:
        records.append(_record(1005, struct.pack("!I", 5) + b"xe-0/\0\0\0"))
    return _record(2, struct.pack("!III", number, 3, len(records)) + b"".join(records))


def _generated_payloads(count: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    payloads = []
    sequence = 0
    for number in range(count):
        samples = []
        for _ in range(rng.randrange(1, 8)):
            sequence += 1
            samples.append(_flow_sample(rng, sequence))
        if number % 7 == 0:  # a counter sample among them takes the Python path in both decoders
            samples.append(_counter_sample(number))
        if rng.randrange(4):
            agent = struct.pack("!I", 1) + rng.choice((bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
        else:
            agent = struct.pack("!I", 2) + bytes(15) + b"\x01"
        header = (
            struct.pack("!I", 5) + agent + struct.pack("!IIII", 0, number + 1, 60_000 + number, len(samples))
        )
        payloads.append(header + b"".join(samples))
    return payloads


def _mutations(payloads: list[bytes], per_payload: int, seed: int = 13) -> list[bytes]:
    """Truncations and bit flips of each payload."""
    rng = random.Random(seed)
    mutated = []
    for payload in payloads:
        for _ in range(per_payload):
            data = bytearray(payload)
            if rng.randrange(3) == 0:
                mutated.append(bytes(data[: rng.randrange(len(data))]))
                continue
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            mutated.append(bytes(data))
    return mutated


def _decoders(enrichment: str | None = None) -> tuple[SflowDecoder, SflowDecoder, SflowDecoder]:
    in_c = SflowDecoder(DecoderSettings(enricher=enricher(enrichment)))
    in_python = SflowDecoder(DecoderSettings(enricher=enricher(enrichment)))
    in_python.extension = None
    general = SflowDecoder(DecoderSettings(enricher=enricher(enrichment)))
    general.fast_path = False
    return in_c, in_python, general


def _assert_same_everywhere(payloads: list[bytes], enrichment: str | None = None) -> int:
    """Decode every payload three ways; return how many documents the C path built."""
    in_c, in_python, general = _decoders(enrichment)
    built_in_c = 0
    original = sflow_module.EXTENSION.sflow_samples

    def counting(*args):
        nonlocal built_in_c
        stopped = original(*args)
        built_in_c += stopped[2]
        return stopped

    in_c.extension = type("Counting", (), {"sflow_samples": staticmethod(counting)})()
    for payload in payloads:
        ours = in_c.decode(payload, EXPORTER, ARRIVAL_NS)
        python_fast = in_python.decode(payload, EXPORTER, ARRIVAL_NS)
        reference = general.decode(payload, EXPORTER, ARRIVAL_NS)
        # byte-identical to the Python fast path (same key order), equal to the general path
        assert [orjson.dumps(d) for d in ours.documents] == [orjson.dumps(d) for d in python_fast.documents]
        assert ours.documents == reference.documents
        assert (ours.errors, ours.stats) == (python_fast.errors, python_fast.stats)
        assert (ours.errors, ours.stats) == (reference.errors, reference.stats)
    return built_in_c


ENRICHMENTS = pytest.mark.parametrize("enrichment", [None, "all"])  # support.enrichment's


@needs_extension
@ENRICHMENTS
def test_fixtures_decode_identically_in_c_and_python(enrichment):
    payloads = _fixture_payloads()
    assert len(payloads) >= 10
    assert _assert_same_everywhere(payloads, enrichment) > 0


@needs_extension
@ENRICHMENTS
def test_generated_datagrams_decode_identically_in_c_and_python(enrichment):
    payloads = _generated_payloads(2500)
    built = _assert_same_everywhere(payloads, enrichment)
    # most samples are the common case, and the refused ones still decode (through Python)
    assert built > 5000


@needs_extension
@ENRICHMENTS
def test_truncated_and_bit_flipped_datagrams_decode_identically_and_never_raise(enrichment):
    payloads = _mutations(_fixture_payloads(), 60) + _mutations(_generated_payloads(300, seed=17), 8)
    assert len(payloads) > 2500
    assert _assert_same_everywhere(payloads, enrichment) > 500


@needs_extension
def test_renormalisation_off_in_c_as_in_python():
    settings = DecoderSettings()
    settings.renormalize = False
    in_c, in_python = SflowDecoder(settings), SflowDecoder(settings)
    in_python.extension = None
    for payload in _generated_payloads(200, seed=19):
        ours = in_c.decode(payload, EXPORTER, ARRIVAL_NS).documents
        theirs = in_python.decode(payload, EXPORTER, ARRIVAL_NS).documents
        assert [orjson.dumps(d) for d in ours] == [orjson.dumps(d) for d in theirs]
        assert all(d["network"]["packets"] == 1 for d in ours if d["event"]["action"] == "sflow_flow_sample")


@needs_extension
def test_c_entry_point_refuses_bad_arguments_without_crashing():
    flow_sample = sflow_module.EXTENSION.sflow_flow_sample
    frame = (
        bytes(12)
        + struct.pack("!HBBHHHBBH4s4sHHH", 0x0800, 0x45, 0, 28, 1, 0, 64, 17, 0, bytes(4), bytes(4), 5, 53, 8)
        + bytes(2)
    )
    raw = _record(1, struct.pack("!IIII", 1, 64, 4, len(frame)) + frame)
    sample = _record(1, struct.pack("!IIIIIIII", 1, 3, 512, 512, 0, 3, 4, 1) + raw)
    data = struct.pack("!II4sIIII", 5, 1, bytes(4), 0, 1, 1, 1) + sample
    context = ("t", "p-", "tag", "10.0.0.1", {}, True)
    with pytest.raises(TypeError):
        flow_sample(data, *context, 36, len(data))
    with pytest.raises(TypeError):
        flow_sample(bytearray(data), *context, 36, len(data), 0)
    with pytest.raises(ValueError):
        flow_sample(data, *context, 36, len(data) + 1, 0)
    with pytest.raises(ValueError):
        flow_sample(data, *context, -1, len(data), 0)
    assert flow_sample(data, *context, 0, 0, 0) is None
    assert flow_sample(b"", *context, 0, 0, 0) is None
    # a non-ASCII id prefix and tag still make whole texts
    document, sequence, source_id = flow_sample(data, "t", "é-", "ü", "10.0.0.1", {}, True, 36, len(data), 0)
    assert (document["_id"], sequence, source_id) == ("é-0", 1, 3)
    assert document["flow"]["id"].startswith("ü") and len(document["flow"]["id"]) == 21
    flow_samples = sflow_module.EXTENSION.sflow_samples
    documents: list = []
    runs: dict = {}
    with pytest.raises(TypeError):
        flow_samples(data, *context, 28, 0, 1, (), runs)
    with pytest.raises(ValueError):
        flow_samples(data, *context, len(data) + 1, 0, 1, documents, runs)
    assert flow_samples(data, *context, 28, 0, 1, documents, runs) == (len(data), 1, 1, 0)
    assert runs == {("flow", 0, 3): [1, 1]} and documents[0]["_id"] == "p-0"
    # a sample past the end, or a count already reached, stops at once
    assert flow_samples(data, *context, 28, 0, 5, documents, runs)[1:] == (1, 1, 0)
    assert flow_samples(data[:-1], *context, 28, 0, 1, documents, runs) == (28, 0, 0, 0)


def test_without_the_extension_the_python_path_gives_the_same_documents(tmp_path):
    """FLOWSINK_NO_EXTENSION=1 leaves the C path out; the documents it gives equal those of this process."""
    payloads = _generated_payloads(60, seed=23) + _fixture_payloads()
    inputs = tmp_path / "payloads.json"
    inputs.write_text(json.dumps([p.hex() for p in payloads]))
    script = (
        "import json, sys\n"
        "import orjson\n"
        "from flowsink.decode import DecoderSettings\n"
        "from flowsink.decode import sflow\n"
        "assert sflow.EXTENSION is None\n"
        "decoder = sflow.SflowDecoder(DecoderSettings())\n"
        "out = []\n"
        f"for text in json.load(open(sys.argv[1])):\n"
        f"    r = decoder.decode(bytes.fromhex(text), {EXPORTER!r}, {ARRIVAL_NS})\n"
        "    out.append([orjson.dumps(d).decode() for d in r.documents])\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "FLOWSINK_NO_EXTENSION": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(inputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    fallback = json.loads(done.stdout)
    decoder = SflowDecoder(DecoderSettings())
    here = [
        [orjson.dumps(d).decode() for d in decoder.decode(p, EXPORTER, ARRIVAL_NS).documents]
        for p in payloads
    ]
    assert fallback == here
    assert sum(len(docs) for docs in here) > 150
