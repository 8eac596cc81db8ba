"""``flowsink decode`` end to end: the installed command on pcap, pcapng and raw payload files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.utils import PcapNgWriter, wrpcap

from flowsink.decode.capture import CaptureStats, read_file
from test_decode_fixtures import FIXTURES, LOGSTASH_NETFLOW, LOGSTASH_SFLOW, TELEGRAF

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")

V9_TEMPLATE = LOGSTASH_NETFLOW / "netflow9_test_cisco_asa_1_tpl.dat"
V9_DATA = LOGSTASH_NETFLOW / "netflow9_test_cisco_asa_1_data.dat"
V5 = LOGSTASH_NETFLOW / "netflow5.dat"
SFLOW = TELEGRAF / "sflow_issue_15918" / "message.bin"
IPFIX_TEMPLATE = LOGSTASH_NETFLOW / "ipfix_test_mikrotik_tpl.dat"
IPFIX_DATA = LOGSTASH_NETFLOW / "ipfix_test_mikrotik_data258.dat"


def run_decode(*args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run(
        [sys.executable, "-m", "flowsink.cli", "decode", *args],
        capture_output=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    documents = [orjson.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, documents, done.stderr.decode()


def udp(src: str, payload: bytes, dport: int = 2055, vlan: int | None = None):
    ip = IPv6(src=src, dst="2001:db8::fe") if ":" in src else IP(src=src, dst="192.0.2.254")
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return l2 / ip / UDP(sport=9999, dport=dport) / payload


def test_pcap_then_pcapng_carries_templates_and_summarises(tmp_path: Path):
    first = tmp_path / "templates.pcap"
    wrpcap(str(first), [udp("10.1.1.1", V9_TEMPLATE.read_bytes()), udp("10.1.1.2", V5.read_bytes(), vlan=30)])
    second = tmp_path / "data.pcapng"
    writer = PcapNgWriter(str(second))
    for packet in (udp("10.1.1.1", V9_DATA.read_bytes()), udp("2001:db8::5", SFLOW.read_bytes(), dport=6343)):
        writer.write(packet)
    writer.close()
    code, docs, stderr = run_decode(str(first), str(second))
    assert code == 0, stderr
    actions = [d["event"]["action"] for d in docs]
    assert (
        actions.count("netflow_flow") == 2 + 14
    )  # v5 has 2 records, the ASA data 14 once its template is known
    assert actions.count("sflow_flow_sample") == 6
    assert actions.count("sflow_counter_sample") == 1
    assert {d["observer"]["ip"] for d in docs if d["event"]["action"] == "netflow_flow"} == {
        "10.1.1.1",
        "10.1.1.2",
    }
    sflow = [d for d in docs if d["event"]["action"] == "sflow_flow_sample"]
    assert {d["sflow"]["exporter_address"] for d in sflow} == {"2001:db8::5"}
    assert {d["observer"]["ip"] for d in sflow} == {"192.168.227.2"}  # the agent address inside the datagram
    assert "datagrams: 4 (netflow_v5=1, netflow_v9=2, sflow=1)" in stderr
    assert "records: 23" in stderr
    assert "errors: 0" in stderr


def test_raw_payload_files_with_exporter_and_error_summary(tmp_path: Path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x63garbage")
    code, docs, stderr = run_decode(
        "--exporter",
        "192.0.2.77",
        str(IPFIX_TEMPLATE),
        str(junk),
        str(IPFIX_DATA),
        str(LOGSTASH_SFLOW / "sflow_counters_sample.dat"),
    )
    assert code == 0, stderr
    ipfix = [d for d in docs if d["event"]["action"] == "ipfix_flow"]
    assert len(ipfix) == 28
    assert {d["observer"]["ip"] for d in ipfix} == {"192.0.2.77"}
    assert sum(d["event"]["action"] == "sflow_counter_sample" for d in docs) == 12
    assert "unknown_version=1" in stderr
    assert "datagrams: 4" in stderr
    # the same files decoded again: the same documents, ids included
    _, again, _ = run_decode(
        "--exporter",
        "192.0.2.77",
        str(IPFIX_TEMPLATE),
        str(junk),
        str(IPFIX_DATA),
        str(LOGSTASH_SFLOW / "sflow_counters_sample.dat"),
    )
    assert again == docs


def test_data_without_its_template_is_counted_expired(tmp_path: Path):
    code, docs, stderr = run_decode(str(V9_DATA))
    assert code == 0
    assert docs == []
    assert "expired=" in stderr


def test_summary_counts_every_data_set_that_never_found_its_template_and_says_so():
    asa_2 = LOGSTASH_NETFLOW / "netflow9_test_cisco_asa_2_data.dat"
    mikrotik_259 = LOGSTASH_NETFLOW / "ipfix_test_mikrotik_data259.dat"
    code, docs, stderr = run_decode(str(V9_DATA), str(IPFIX_DATA), str(asa_2), str(mikrotik_259))
    assert code == 0 and docs == []
    # 12 data sets in 4 datagrams waited for templates the files never carry: 12 errors, not one per protocol
    assert "errors: 12 (template_missing=12)" in stderr
    assert (
        "data sets that came before their template: 12; decoded once it came: 0; never decoded: 12 "
        "(no template: their records are not in the output)"
    ) in stderr
    assert stderr.count(": template_missing: ") == 12  # one line each, naming the exporter and template
    assert "data set for template 263" in stderr
    # data first, then its template: held, then decoded, nothing lost
    code, docs, stderr = run_decode(str(V9_DATA), str(V9_TEMPLATE))
    assert len(docs) == 14
    assert "errors: 0 (none)" in stderr
    assert "data sets that came before their template: 1; decoded once it came: 1; never decoded: 0" in stderr


def test_no_renormalize_switch():
    _, docs, _ = run_decode("--no-renormalize", str(SFLOW))
    flows = [d for d in docs if d["event"]["action"] == "sflow_flow_sample"]
    assert all(d["network"]["packets"] == 1 for d in flows)
    assert all(d["network"]["bytes"] == d["sflow"]["frame_length"] for d in flows)


def test_error_lines_are_bounded_per_reason(tmp_path: Path):
    junk = []
    for number in range(30):
        path = tmp_path / f"junk{number:02d}.bin"
        path.write_bytes(b"\x00\x63garbage")
        junk.append(str(path))
    code, _, stderr = run_decode(*junk)
    assert code == 0
    assert stderr.count(": unknown_version: ") == 20
    assert "further unknown_version errors counted in the summary only" in stderr
    assert "errors: 30 (unknown_version=30)" in stderr


def test_bad_exporter_and_missing_file_are_user_errors(tmp_path: Path):
    code, _, stderr = run_decode("--exporter", "not-an-ip", str(V5))
    assert code == 2 and "flowsink: error:" in stderr and "Traceback" not in stderr
    code, _, stderr = run_decode(str(tmp_path / "missing.pcap"))
    assert code == 2 and "cannot read" in stderr and "Traceback" not in stderr
    huge = tmp_path / "huge.bin"
    huge.write_bytes(b"\x00" * 70_000)
    code, _, stderr = run_decode(str(huge))
    assert code == 2 and "neither a pcap/pcapng capture nor a datagram" in stderr


# --- the capture reader on its own: link types, fragments, damaged files ------------------------------------------


def test_capture_link_types_fragments_and_truncated_files(tmp_path: Path):
    big = IPFIX_DATA.read_bytes() * 3  # 3 x 1.4 KB: fragmented over a 1500-byte MTU
    fragments = fragment(IP(src="10.9.9.9", dst="10.0.0.1") / UDP(sport=1, dport=4739) / big, fragsize=1000)
    ethernet = tmp_path / "eth.pcap"
    wrpcap(str(ethernet), [Ether() / f for f in reversed(fragments)] + [udp("10.2.2.2", V5.read_bytes())])
    cooked = tmp_path / "sll.pcap"
    wrpcap(
        str(cooked),
        [CookedLinux(proto=0x0800) / IP(src="10.3.3.3", dst="10.0.0.1") / UDP(dport=2055) / V5.read_bytes()],
    )
    raw_ip = tmp_path / "raw.pcap"
    wrpcap(
        str(raw_ip),
        [IPv6(src="2001:db8::3", dst="2001:db8::4") / UDP(dport=6343) / SFLOW.read_bytes()],
        linktype=101,
    )
    found = {path.name: list(read_file(path)) for path in (ethernet, cooked, raw_ip)}
    assert [(d.src_ip, d.payload == big) for d in found["eth.pcap"]] == [
        ("10.9.9.9", True),
        ("10.2.2.2", False),
    ]
    assert [(d.src_ip, d.dst_port) for d in found["sll.pcap"]] == [("10.3.3.3", 2055)]
    assert [(d.src_ip, d.payload == SFLOW.read_bytes()) for d in found["raw.pcap"]] == [("2001:db8::3", True)]
    assert found["eth.pcap"][0].timestamp_ns > 1_600_000_000 * 10**9
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(ethernet.read_bytes()[:-100])
    stats = CaptureStats()
    survivors = list(read_file(cut, stats))
    assert [d.src_ip for d in survivors] == ["10.9.9.9"]
    assert stats.skipped["truncated_file"] == 1


def test_capture_nanosecond_big_endian_pcap_and_pcapng_resolution(tmp_path: Path):
    import struct

    frame = bytes(udp("10.4.4.4", V5.read_bytes()))
    # pcap, big-endian, nanosecond magic
    big = tmp_path / "big-ns.pcap"
    big.write_bytes(
        struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
        + struct.pack(">IIII", 1_700_000_000, 123_456_789, len(frame), len(frame))
        + frame
    )
    (datagram,) = read_file(big)
    assert datagram.timestamp_ns == 1_700_000_000_123_456_789
    assert (datagram.src_ip, datagram.payload) == ("10.4.4.4", V5.read_bytes())

    # pcapng with if_tsresol = 9 (nanoseconds) in the interface description block
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    section = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = block(
        1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    )
    stamp = 1_700_000_000_987_654_321
    packet = block(
        6, struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), len(frame)) + frame
    )
    ng = tmp_path / "ns.pcapng"
    ng.write_bytes(section + interface + packet)
    (datagram,) = read_file(ng)
    assert datagram.timestamp_ns == stamp
    assert datagram.payload == V5.read_bytes()
