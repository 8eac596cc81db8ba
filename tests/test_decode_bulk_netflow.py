"""NetFlow v5/v9/IPFIX bulk lines written in C equal the pure-Python reference on odd values, case by case.

Each case is a short sequence of datagrams (templates first). It is decoded here with the C writers and in a
child started with FLOWSINK_NO_EXTENSION=1 (dicts + ``flowsink.bulk.encode_document``); every datagram's lines,
errors and counters must be equal, and the C writers must have written the lines themselves except where a value
is one they leave to the reference on purpose (floats).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from flowsink import native
from flowsink.bulk import BulkFormat
from flowsink.decode import DecoderSettings, FlowDecoder
from support.enrichment import enricher
from test_decode_netflow_builders import (
    flowset,
    ip4,
    ip6,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    v5_packet,
    v5_record,
    v9_packet,
    v9_template_set,
    varlen,
)

EXPORTER = "203.0.113.9"
ARRIVAL_NS = 1_700_000_000_250_000_000
VARIABLE = 65535
U64_MAX = (1 << 64) - 1
ODD_TEXT = b'a"b\\c\x01\x1f\x7f \xc3\xa9\xe2\x82\xac \xff\xfe\xed\xa0\x80 \xf0\x9f\x98\x80\x00\x00'
FORMATS = {
    "create": BulkFormat("flowsink", "create", True),
    "index-no-ids": BulkFormat('fs"odd\\prefix\u00e9\x01', "index", False),
}

needs_extension = pytest.mark.skipif(
    native.EXTENSION is None, reason="C extension not built (pip install -e . builds it)"
)


def _ipfix(*sets: bytes, export_time: int = 1_700_000_000, sequence: int = 0) -> bytes:
    return ipfix_message(list(sets), sequence=sequence, export_time=export_time)


def cases() -> dict[str, tuple[dict, list[bytes], int]]:
    """name -> (DecoderSettings keywords, datagrams, documents the C writers leave to the reference)."""
    user_fixed = ipfix_template_set([(400, [(8, 4), (12, 4), (4, 1), (371, 32), (82, 8)])])
    user_variable = ipfix_template_set([(401, [(8, 4), (12, 4), (4, 1), (371, VARIABLE)])])
    text = ODD_TEXT[:32].ljust(32, b"\x00")
    counters = ipfix_template_set(
        [(402, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (10, 4)])]
    )
    times = ipfix_template_set([(403, [(8, 4), (12, 4), (152, 8), (153, 8), (150, 4), (154, 8)])])
    floats = ipfix_template_set([(404, [(8, 4), (12, 4), (4, 1), (320, 8)])])
    float_any = ipfix_template_set([(405, [(8, 4), (4, 1), (320, VARIABLE)])])
    biflow = ipfix_template_set(
        [(406, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (1, 8, 29305), (2, 8, 29305)])]
    )
    v6_icmp = ipfix_template_set([(407, [(27, 16), (28, 16), (4, 1), (139, 2), (56, 6), (80, 0)])])
    options = ipfix_options_template_set(500, 1, [(10, 4), (82, VARIABLE), (305, 4), (306, 4), (160, 8)])
    flows_after_options = ipfix_template_set([(408, [(8, 4), (12, 4), (4, 1), (10, 4), (14, 4), (1, 8)])])
    return {
        "v5 every value at its maximum, sampled": (
            {},
            [
                v5_packet(
                    [
                        v5_record(
                            "255.255.255.255",
                            "0.0.0.0",
                            0xFFFFFFFF,
                            0xFFFFFFFF,
                            0xFFFFFFFF,
                            0,
                            65535,
                            65535,
                            255,
                            65535,
                            65535,
                            255,
                        ),
                        v5_record("10.0.0.1", "10.0.0.2", 1, 64, 99_000, 99_500, 0, (8 << 8) | 0, 1),
                    ],
                    uptime=0xFFFFFFFF,
                    secs=0xFFFFFFFF,
                    nsecs=999_999_999,
                    sequence=0xFFFFFFFF,
                    engine_type=255,
                    engine_id=255,
                    sampling=0xFFFF,
                )
            ],
            0,
        ),
        "v5 times of 0, not renormalised": (
            {"renormalize": False},
            [
                v5_packet(
                    [v5_record("10.0.0.1", "10.0.0.2", 3, 300, 0, 0, protocol=58, dst_port=(128 << 8))],
                    uptime=0,
                    secs=0,
                    sampling=100,
                )
            ],
            0,
        ),
        "usernames with quotes, control characters, non-ASCII and invalid UTF-8": (
            {},
            [
                _ipfix(
                    user_fixed,
                    user_variable,
                    flowset(
                        400, ip4("10.0.0.1") + ip4("10.0.0.2") + b"\x06" + text + b'Gi0/"1"\x00', pad=False
                    ),
                    flowset(
                        401,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + b"\x11"
                        + varlen(ODD_TEXT)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + b"\x11"
                        + varlen(b"plain", long_form=True),
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "64-bit counter maxima, renormalised and clamped": (
            {},
            [
                _ipfix(
                    options,
                    counters,
                    flowset(
                        500,
                        struct.pack("!I", 7) + varlen(b"ge-0/0/0") + struct.pack("!IIQ", 1, 999, 0),
                        pad=False,
                    ),
                    flowset(
                        402,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!HHBQQI", 1, 2, 6, U64_MAX, U64_MAX, 7)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + struct.pack("!HHBQQI", 1, 2, 17, 0, 1, 8),
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "dateTime elements of 0 and far beyond year 9999": (
            {},
            [
                _ipfix(
                    times,
                    flowset(
                        403,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!QQIQ", 0, 0, 0, 0)
                        + ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!QQIQ", U64_MAX, 1 << 63, 0xFFFFFFFF, U64_MAX)
                        + ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!QQIQ", 253_402_300_799_999, 253_402_300_800_000, 1 << 31, 1 << 63),
                        pad=False,
                    ),
                    export_time=0xFFFFFFFF,
                )
            ],
            0,
        ),
        "an export time of 0 takes the arrival time": (
            {},
            [
                _ipfix(
                    counters,
                    flowset(
                        402,
                        ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack("!HHBQQI", 1, 2, 6, 5, 1, 0),
                        pad=False,
                    ),
                    export_time=0,
                )
            ],
            0,
        ),
        "floats: documents left to the reference": (
            {},
            [
                _ipfix(
                    floats,
                    flowset(
                        404,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + b"\x06"
                        + struct.pack("!d", 0.1)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + b"\x06"
                        + struct.pack("!d", 1e300),
                        pad=False,
                    ),
                )
            ],
            2,
        ),
        "a float mid-set: one document left to the reference": (
            {},
            [
                _ipfix(
                    float_any,
                    flowset(
                        405,
                        ip4("10.0.0.1")
                        + b"\x06"
                        + varlen(b"abc")
                        + ip4("10.0.0.2")
                        + b"\x06"
                        + varlen(struct.pack("!f", 2.5))
                        + ip4("10.0.0.3")
                        + b"\x06"
                        + varlen(b""),
                        pad=False,
                    ),
                )
            ],
            1,
        ),
        # the first record's directions sum past 64 bits: network.bytes is clamped to the largest long (a sum,
        # like a renormalised counter), so the document is written, by C and by the reference alike
        "biflow counters at their maxima": (
            {},
            [
                _ipfix(
                    biflow,
                    flowset(
                        406,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!HHB", 5000, 443, 6)
                        + struct.pack("!QQQQ", U64_MAX, 10, U64_MAX, 8)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + struct.pack("!HHB", 1, 2, 17)
                        + struct.pack("!QQQQ", 1, 2, 3, 4),
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "IPv6 ICMP, MAC, a 0-length field": (
            {},
            [
                _ipfix(
                    v6_icmp,
                    flowset(
                        407,
                        ip6("2001:db8::1")
                        + ip6("::ffff:10.0.0.1")
                        + b"\x3a"
                        + struct.pack("!H", 129 << 8)
                        + b"\x00\x1b\x21\xff\xfe\x01",
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "options records, then flows named by them": (
            {},
            [
                _ipfix(
                    options,
                    flows_after_options,
                    flowset(
                        500,
                        struct.pack("!I", 7)
                        + varlen(ODD_TEXT)
                        + struct.pack("!IIQ", 1, 9, 1_699_999_000_000)
                        + struct.pack("!I", 9)
                        + varlen(b"")
                        + struct.pack("!IIQ", 0, 0, U64_MAX),
                        pad=False,
                    ),
                    flowset(
                        408,
                        ip4("10.0.0.1") + ip4("10.0.0.2") + b"\x06" + struct.pack("!IIQ", 7, 9, 100),
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "IPFIX sysUpTime times from the system init time options give": (
            {},
            [
                _ipfix(
                    ipfix_options_template_set(501, 1, [(144, 4), (160, 8)]),
                    ipfix_template_set([(409, [(8, 4), (12, 4), (4, 1), (22, 4), (21, 4), (161, 4)])]),
                    flowset(
                        409,
                        ip4("10.0.0.1") + ip4("10.0.0.2") + b"\x06" + struct.pack("!III", 1_000, 2_500, 40),
                    ),
                    flowset(501, struct.pack("!IQ", 1, 1_699_999_000_000)),
                    flowset(
                        409,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + b"\x06"
                        + struct.pack("!III", 1_000, 2_500, 40)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + b"\x11"
                        + struct.pack("!III", 0xFFFFFFFF, 0, 0),
                    ),
                )
            ],
            0,
        ),
        "a sampling rate per selector id (records read as dicts)": (
            {},
            [
                _ipfix(
                    ipfix_options_template_set(502, 1, [(302, 4), (34, 4)]),
                    flowset(502, struct.pack("!II", 1, 10) + struct.pack("!II", 2, 1000), pad=False),
                    ipfix_template_set([(410, [(8, 4), (12, 4), (302, 4), (1, 4), (2, 8)])]),
                    flowset(
                        410,
                        ip4("10.0.0.1")
                        + ip4("10.0.0.2")
                        + struct.pack("!IIQ", 1, 7, U64_MAX)
                        + ip4("10.0.0.3")
                        + ip4("10.0.0.4")
                        + struct.pack("!IIQ", 3, 7, 1),
                        pad=False,
                    ),
                )
            ],
            0,
        ),
        "v9 sysUpTime across a wrap, unknown protocol": (
            {},
            [
                v9_packet(
                    [
                        v9_template_set(
                            [(300, [(8, 4), (12, 4), (4, 1), (22, 4), (21, 4), (61, 1), (1, 4)])]
                        ),
                        flowset(
                            300,
                            ip4("10.0.0.1")
                            + ip4("10.0.0.2")
                            + b"\xfe"
                            + struct.pack("!II", 0xFFFFFF00, 50)
                            + b"\x01"
                            + struct.pack("!I", 9)
                            + ip4("10.0.0.3")
                            + ip4("10.0.0.4")
                            + b"\x00"
                            + struct.pack("!II", 200, 100)
                            + b"\x00"
                            + struct.pack("!I", 1),
                        ),
                    ],
                    uptime=100,
                )
            ],
            0,
        ),
    }


# run -> (bulk format, enrichment mode of support.enrichment)
RUNS = {
    "create": ("create", None),
    "index-no-ids": ("index-no-ids", None),
    "create-enriched": ("create", "all"),
    "index-no-ids-exporters-only": ("index-no-ids", "exporters-only"),
    "create-geoip-only": ("create", "geoip-only"),
}


def decode_cases(
    fmt: BulkFormat, enrichment: str | None = None
) -> tuple[dict[str, list[bytes]], dict[str, int]]:
    """Per case, one line per datagram (its sorted bulk lines, errors and counters); and the reference's count."""
    out, by_reference = {}, {}
    for name, (settings, datagrams, _) in cases().items():
        decoder = FlowDecoder(DecoderSettings(bulk=fmt, enricher=enricher(enrichment), **settings))
        lines = []
        for payload in datagrams:
            result = decoder.decode(payload, EXPORTER, ARRIVAL_NS)
            assert not result.documents
            lines.append(
                orjson.dumps(
                    {
                        "encoded": sorted(line.decode() for line in result.encoded),
                        "errors": result.errors,
                        "stats": dict(sorted(result.stats.items())),
                    }
                )
            )
        out[name] = lines
        by_reference[name] = decoder.reference_encoded
    return out, by_reference


@pytest.fixture(scope="module")
def python_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[bytes]]]:
    out = tmp_path_factory.mktemp("bulk") / "python.pickle"
    env = {**os.environ, "FLOWSINK_NO_EXTENSION": "1"}
    subprocess.run([sys.executable, __file__, str(out)], env=env, check=True, timeout=300)
    return pickle.loads(out.read_bytes())


@needs_extension
@pytest.mark.parametrize("run", sorted(RUNS))
def test_c_lines_equal_the_reference_on_odd_values(python_lines: dict, run: str) -> None:
    """With enrichment too: the C writers apply it and leave no more documents to the reference than without."""
    fmt, enrichment = RUNS[run]
    fast, by_reference = decode_cases(FORMATS[fmt], enrichment)
    for name, (_, _, left_to_reference) in cases().items():
        assert fast[name] == python_lines[run][name], name
        assert by_reference[name] == left_to_reference, name
        assert all(b"decoder_error" not in line for line in fast[name]), name


@needs_extension
def test_every_case_writes_lines() -> None:
    fast, _ = decode_cases(FORMATS["create"])
    for name, lines in fast.items():
        assert all(b'"_index' in line for line in lines), name


if __name__ == "__main__":  # the child: the pure-Python path
    if native.EXTENSION is not None:
        sys.exit("FLOWSINK_NO_EXTENSION is not set but the extension was loaded")
    Path(sys.argv[1]).write_bytes(
        pickle.dumps({run: decode_cases(FORMATS[fmt], mode)[0] for run, (fmt, mode) in RUNS.items()})
    )
