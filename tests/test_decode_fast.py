"""The C extension (flowsink.native) and the pure-Python path give byte-identical documents.

The same corpus (every fixture, generated NetFlow v5 datagrams, mutated fixtures) is decoded in this process
(extension loaded) and in a child process started with FLOWSINK_NO_EXTENSION=1 (pure Python); the serialised
documents, errors and counters of every datagram must be equal byte for byte, key order included.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import orjson
import pytest

from flowsink import native
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.decode.capture import is_capture, read_file
from flowsink.decode.fields import iana_fields
from flowsink.decode.template_cache import FieldSpec, Template
from flowsink.normalize.common import community_digest, community_digest_python
from flowsink.normalize.netflow import community_ids, community_ids_python
from support.enrichment import enricher

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
PAYLOAD_SUFFIXES = {".dat", ".bin", ".pcap", ".pcapng"}
ARRIVAL_NS = 1_700_000_000_123_456_789

needs_extension = pytest.mark.skipif(
    native.EXTENSION is None, reason="C extension not built (pip install -e . builds it)"
)


def fixture_datagrams() -> list[tuple[str, bytes]]:
    """Every payload of every fixture file, in path order, with the exporter a capture names."""
    datagrams = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix not in PAYLOAD_SUFFIXES or not path.is_file():
            continue
        with path.open("rb") as handle:
            capture = is_capture(handle.read(4))
        if capture:
            datagrams += [(d.src_ip, d.payload) for d in read_file(path)]
        else:
            datagrams.append(("192.0.2.1", path.read_bytes()))
    return datagrams


def v5_datagrams(count: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """NetFlow v5 datagrams with random records: ICMP, ICMPv6-in-v4, odd protocols, sampling, uptime wrap."""
    datagrams = []
    for n in range(count):
        records = []
        for _ in range(rng.randint(1, 30)):
            record = bytearray(rng.randbytes(48))
            record[38] = rng.choice([1, 6, 17, 58, 47, 132, 0, 255, rng.randrange(256)])
            if rng.random() < 0.2:  # both ends the same address: the port decides the order
                record[4:8] = record[0:4]
            records.append(bytes(record))
        uptime = rng.choice([0, 1000, 0xFFFFFFFF, rng.getrandbits(32)])
        secs = rng.choice([0, 1_700_000_000, rng.getrandbits(32)])
        sampling = rng.choice([0, 1, 100, (1 << 14) | 512, rng.getrandbits(16)])
        header = struct.pack(
            "!HHIIIIBBH",
            5,
            len(records),
            uptime,
            secs,
            rng.getrandbits(32),
            n,
            rng.randrange(256),
            rng.randrange(256),
            sampling,
        )
        datagrams.append((f"198.51.100.{n % 7}", header + b"".join(records)))
    return datagrams


def mutated(
    datagrams: list[tuple[str, bytes]], per_datagram: int, rng: random.Random
) -> list[tuple[str, bytes]]:
    """Bit flips and truncations of real datagrams (bad input must fail the same way on both paths)."""
    out = []
    for exporter, payload in datagrams:
        for _ in range(per_datagram):
            data = bytearray(payload)
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data) + 1)]
            out.append((exporter, bytes(data)))
    return out


def corpus() -> list[tuple[str, bytes]]:
    rng = random.Random(20241123)
    fixtures = fixture_datagrams()
    return fixtures + v5_datagrams(1500, rng) + mutated(fixtures, 12, rng)


def decode_corpus(datagrams: list[tuple[str, bytes]], enrichment: str | None = None) -> list[bytes]:
    """One line per datagram: documents, errors and counters as JSON (key order kept)."""
    decoder = FlowDecoder(DecoderSettings(enricher=enricher(enrichment)))
    lines = []
    for exporter, payload in datagrams:
        result = decoder.decode(payload, exporter, ARRIVAL_NS)
        lines.append(
            orjson.dumps(
                {
                    "documents": result.documents,
                    "errors": result.errors,
                    "stats": dict(sorted(result.stats.items())),
                }
            )
        )
    return lines


@needs_extension
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")
@pytest.mark.parametrize("enrichment", ["none", "all"])
def test_extension_and_pure_python_give_identical_documents(tmp_path: Path, enrichment: str) -> None:
    """The dict documents (flowsink decode's), without and with enrichment (support.enrichment)."""
    datagrams = corpus()
    assert len(datagrams) > 3000
    source = tmp_path / "corpus.pickle"
    source.write_bytes(pickle.dumps(datagrams))
    python_out = tmp_path / "python.jsonl"
    env = {**os.environ, "FLOWSINK_NO_EXTENSION": "1"}
    subprocess.run(
        [sys.executable, __file__, str(source), str(python_out), enrichment], env=env, check=True, timeout=300
    )
    fast_lines = decode_corpus(datagrams, enrichment)
    python_lines = python_out.read_bytes().split(b"\n")
    assert len(python_lines) == len(fast_lines)
    differing = [i for i, (a, b) in enumerate(zip(fast_lines, python_lines, strict=True)) if a != b]
    assert not differing, (
        f"{len(differing)} datagrams differ, first {differing[0]}: {datagrams[differing[0]]!r}"
    )
    v5_documents = sum(line.count(b'"netflow_flow"') for line in fast_lines)
    assert v5_documents > 20_000  # the generated v5 traffic went through the extension's own builder
    body = b"".join(fast_lines)
    assert (b'"locality"' in body) == (enrichment != "none")
    # 198.51.100.1's configured interfaces (every 16th ifIndex) in the generated v5 traffic
    assert bool(re.search(rb'"name":"if\d+","alias":"alias \d+"}', body)) == (enrichment != "none")


@needs_extension
def test_community_digest_matches_python_on_random_tuples() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        size = rng.choice([4, 16, 4, 16, 8, 0])
        src = rng.randbytes(size)
        dst = src if rng.random() < 0.1 else rng.randbytes(size if rng.random() < 0.95 else 4)
        proto = rng.choice([1, 58, 6, 17, 132, 47, rng.randrange(256)])
        ports = [rng.choice([0, 8, 128, 65535, 70000, 1 << 70, rng.randrange(1 << 16)]) for _ in range(2)]
        seed = rng.choice([0, 1, 65535])
        assert community_digest(src, dst, proto, *ports, seed) == community_digest_python(
            src, dst, proto, *ports, seed
        )


@needs_extension
def test_community_ids_from_text_match_python() -> None:
    cases = [
        ("10.0.0.1", "10.0.0.2", 6, 1234, 80),
        ("2001:db8::1", "2001:db8::2", 17, 53, 5353),
        ("10.0.0.2", "10.0.0.1", 1, 8, 0),
        ("fe80::1", "fe80::1", 58, 135, 0),
        ("1.2.3.4", "::1", 6, 1, 2),
        ("not-an-address", "1.2.3.4", 6, 1, 2),
        ("1.2.3.4", "5.6.7.8", 6, 1 << 80, 2),
    ]
    for case in cases:
        assert community_ids(*case, "abcd0123") == community_ids_python(*case, "abcd0123")
    # the Community ID spec's own example
    assert community_ids("1.2.3.4", "5.6.7.8", 6, 1122, 3344, "")[0] == "1:wCb3OG7yAFWelaUydu0D+125CLM="


@needs_extension
def test_fixed_records_match_the_generated_builders_for_every_type_and_length() -> None:
    """Every IANA data type at every length an exporter may send (reduced-size, odd, 0) over random bytes."""
    first_of_type: dict[str, int] = {}
    for element_id, info in sorted(iana_fields().items()):
        first_of_type.setdefault(info.data_type, element_id)
    rng = random.Random(11)
    checked = 0
    for data_type, element_id in sorted(first_of_type.items()):
        for length in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17):
            fields = [FieldSpec(element_id, length), FieldSpec(2, 4), FieldSpec(element_id, length)]
            template = Template(300, fields)
            data = rng.randbytes(template.record_length * 5 + 3)
            if data_type.startswith("float") and length in (4, 8):  # NaN and infinities too
                data = bytes.fromhex("7fc00001" * length)[:length] + data[length:]
            fast, _ = template.decode_records(data, 0, len(data))
            build = template._specialise()
            python = build(template._struct.iter_unpack(data[: template.record_length * 5]))
            for record in python:
                for name in template._empty:
                    record.pop(name, None)
            assert orjson.dumps(fast) == orjson.dumps(python), (data_type, length)
            checked += 1
    assert checked > 100


def test_extension_is_built_where_a_compiler_is() -> None:
    """pip install -e . compiles it optionally: a failed build must not pass unnoticed where it should work."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("gcc") is None or not headers.exists() or os.environ.get("FLOWSINK_NO_EXTENSION"):
        pytest.skip("no compiler or Python headers here: the pure-Python path is the expected one")
    assert native.EXTENSION is not None, (
        "flowsink.native._native missing: run `pip install -e .` (it builds the extension)"
    )


@needs_extension
def test_variable_length_records_match_the_python_walk() -> None:
    """Random templates mixing variable-length (1- and 3-byte lengths) and fixed fields of every type, over
    well-formed and damaged data: same records, same error."""
    element_ids = sorted({info.data_type: element_id for element_id, info in iana_fields().items()}.values())
    rng = random.Random(5)
    for _ in range(400):
        fields = [
            FieldSpec(rng.choice(element_ids), rng.choice([65535, 65535, 0, 1, 2, 4, 8, 16, 3]))
            for _ in range(rng.randint(1, 8))
        ]
        if all(f.length != 65535 for f in fields):
            fields.append(FieldSpec(rng.choice(element_ids), 65535))
        template = Template(400, fields)
        data = bytearray()
        for _ in range(rng.randint(0, 5)):
            for spec in fields:
                if spec.length == 65535:
                    size = rng.choice([0, 1, 4, 8, 9, 16, 300])
                    data += bytes([size]) if size < 255 else b"\xff" + size.to_bytes(2, "big")
                    data += rng.randbytes(size)
                else:
                    data += rng.randbytes(spec.length)
        if rng.random() < 0.4 and data:
            data = data[: rng.randrange(len(data))]
        data = bytes(data)
        fast = template.decode_records(data, 0, len(data))
        python_records, python_error = template._decode_variable_python(data, 0, len(data))
        for record in python_records:
            for name in template._empty:
                record.pop(name, None)
        assert orjson.dumps(fast[0]) == orjson.dumps(python_records) and fast[1] == python_error, fields


def test_a_stale_build_is_not_used(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A build of another interface version (not rebuilt after an update) is refused, with a warning."""
    stale = types.ModuleType(native.MODULE_NAME)
    stale.INTERFACE_VERSION = native.INTERFACE_VERSION - 1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, native.MODULE_NAME, stale)
    monkeypatch.delenv(native.DISABLE_VARIABLE, raising=False)
    with caplog.at_level("WARNING", logger="flowsink.native"):
        assert native.load_extension() is None
    assert f"interface version {native.INTERFACE_VERSION - 1}, this code needs" in caplog.text


def test_a_missing_build_is_the_quiet_python_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, native.MODULE_NAME, None)  # as if no .so were there
    monkeypatch.delenv(native.DISABLE_VARIABLE, raising=False)
    with caplog.at_level("DEBUG", logger="flowsink.native"):
        assert native.load_extension() is None
    assert not caplog.records


def test_no_extension_switch_gives_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSINK_NO_EXTENSION", "1")
    assert native.load_extension() is None
    code = "from flowsink import native; import sys; sys.exit(native.EXTENSION is not None)"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "FLOWSINK_NO_EXTENSION": "1"}, check=True)


if __name__ == "__main__":  # the child process: decode the corpus with whatever path this environment gives
    if os.environ.get("FLOWSINK_NO_EXTENSION") and native.EXTENSION is not None:
        sys.exit("FLOWSINK_NO_EXTENSION is set but the extension was loaded")
    lines = decode_corpus(pickle.loads(Path(sys.argv[1]).read_bytes()), sys.argv[3])
    Path(sys.argv[2]).write_bytes(b"\n".join(lines))
