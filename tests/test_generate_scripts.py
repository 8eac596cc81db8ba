"""The scripts as a user runs them: --help explains every option with an example; replay_pcap.py and the drop
relay over real UDP sockets; the accuracy check's verdict logic."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsink.generate.accuracy import Row, affected_exporters, totals_rows
from flowsink.generate.pcap import Datagram, write_pcap
from test_generate_run import Receiver

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = [
    "send_netflow_v5.py",
    "send_netflow_v9.py",
    "send_ipfix.py",
    "send_sflow.py",
    "replay_pcap.py",
    "check_accuracy.py",
    "check_api_accuracy.py",
    "udp_drop_relay.py",
]


def run_script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_option_with_an_example(name):
    done = run_script(name, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "examples:" in text and f"scripts/{name}" in text.split("examples:")[1]
    options = sorted(set(re.findall(r"^\s+(--[a-z0-9-]+)", text, flags=re.M)) - {"--help"})
    assert options, text
    for option in options:
        # each option's own help line carries words, not just the metavar
        block = text.split(option, 1)[1].split("\n  -", 1)[0]
        words = re.sub(r"^[ A-Z_,{}|.\[\]-]*", "", block.strip())
        assert len(words.split()) >= 3, (name, option, block)


def test_flowsink_generate_help_lists_protocols_and_examples():
    done = subprocess.run(
        [sys.executable, "-m", "flowsink.cli", "generate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "{v5,v9,ipfix,sflow}" in done.stdout and "flowsink generate ipfix --exporters 3" in done.stdout


def test_bad_options_are_one_line_errors():
    done = run_script("send_netflow_v5.py", "--ipv6-share", "0.5", "--count", "10", "--no-progress")
    assert done.returncode == 2 and "IPv4 only" in done.stderr and "Traceback" not in done.stderr
    done = run_script("send_ipfix.py", "--protocol-mix", "sctp=1", "--count", "10", "--no-progress")
    assert done.returncode == 2 and "unknown protocol" in done.stderr
    done = run_script("send_ipfix.py", "--count", "5", "--manifest", "/nonexistent/m.json", "--no-progress")
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = run_script(
        "send_ipfix.py", "--host", "192.0.2.10", "--exporters", "2", "--count", "5", "--no-progress"
    )
    assert done.returncode == 2 and "own source addresses" in done.stderr
    done = run_script("check_accuracy.py", "--manifest", "/nonexistent.json", "--no-progress")
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.integration
def test_replay_keeps_payloads_order_and_exporters_apart(tmp_path):
    receiver = Receiver()
    payloads = [bytes([i % 256]) * (20 + i) for i in range(60)]
    sources = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    datagrams = [
        Datagram(1000.0 + i * 0.01, sources[i % 3], "198.51.100.9", 40000, 2055, p)
        for i, p in enumerate(payloads)
    ]
    pcap = tmp_path / "c.pcap"
    write_pcap(pcap, datagrams)
    started = time.perf_counter()
    done = run_script(
        "replay_pcap.py",
        str(pcap),
        "--port",
        str(receiver.port),
        "--original-timing",
        "--speed",
        "2",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    receiver.stop()
    assert [p for _, p in receiver.datagrams] == payloads
    by_source = {}
    for (address, _), original in zip(receiver.datagrams, [d.src for d in datagrams], strict=True):
        by_source.setdefault(original, set()).add(address)
    assert by_source == {"192.0.2.1": {"127.0.2.1"}, "192.0.2.2": {"127.0.2.2"}, "192.0.2.3": {"127.0.2.3"}}
    # 0.59 s of capture at double speed: about 0.3 s, plus the interpreter's start
    assert time.perf_counter() - started >= 0.29


@pytest.mark.integration
def test_replay_of_real_fixtures_at_a_rate(fixtures_dir):
    receiver = Receiver()
    files = sorted((fixtures_dir / "logstash-codec-netflow").glob("netflow9_test_nprobe_*.dat"))
    done = run_script(
        "replay_pcap.py",
        *map(str, files),
        "--port",
        str(receiver.port),
        "--rate",
        "50",
        "--loop",
        "4",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    receiver.stop()
    assert [p for _, p in receiver.datagrams] == [f.read_bytes() for f in files] * 4
    assert "50 datagrams/s" in done.stderr or "49 datagrams/s" in done.stderr


@pytest.mark.integration
def test_drop_relay_drops_the_share_asked_and_keeps_sources(tmp_path):
    receiver = Receiver()
    report = tmp_path / "r.json"
    relay = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "udp_drop_relay.py"),
            "--target",
            f"127.0.0.1:{receiver.port}",
            "--drop-share",
            "0.1",
            "--seed",
            "3",
            "--report",
            str(report),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = int(relay.stdout.readline().rsplit(":", 1)[1])
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for i, sock in enumerate(senders):
        sock.bind((f"127.0.0.{71 + i}", 0))
    for n in range(1000):
        senders[n % 2].sendto(n.to_bytes(4, "big"), ("127.0.0.1", port))
        if n % 50 == 0:
            time.sleep(0.01)
    time.sleep(0.5)
    relay.terminate()
    relay.wait(10)
    receiver.stop()
    stats = json.loads(report.read_text())["exporters"]
    assert set(stats) == {"127.0.0.71", "127.0.0.72"}
    assert sum(s["received"] for s in stats.values()) == 1000
    dropped = sum(s["dropped"] for s in stats.values())
    assert 60 <= dropped <= 140
    assert len(receiver.datagrams) == 1000 - dropped
    assert {a for a, _ in receiver.datagrams} == {"127.0.0.71", "127.0.0.72"}
    for address, payload in receiver.datagrams:  # each arrives from the address that sent it
        assert int.from_bytes(payload, "big") % 2 == int(address.rsplit(".", 1)[1]) - 71


def test_totals_rows_name_the_exporters_that_differ():
    manifest = {
        "exporters": {
            "127.0.0.11": {"flows": 3, "bytes": 384, "packets": 4},
            "127.0.0.12": {"flows": 3, "bytes": 384, "packets": 4},
            "127.0.0.13": {"flows": 3, "bytes": 384, "packets": 4},
        }
    }
    found = {"127.0.0.11": (3, 384, 4), "127.0.0.12": (2, 234, 3)}  # .13 sent nothing that arrived
    rows = totals_rows(manifest, found, sigmas=5)
    assert affected_exporters(rows) == ["127.0.0.12", "127.0.0.13"]
    assert [(r.exporter, r.metric, r.difference) for r in rows if not r.ok] == [
        ("127.0.0.12", "flows", -1),
        ("127.0.0.12", "bytes", -150),
        ("127.0.0.12", "packets", -1),
        ("127.0.0.13", "flows", -3),
        ("127.0.0.13", "bytes", -384),
        ("127.0.0.13", "packets", -4),
    ]


def test_statistical_rows_use_the_bound():
    assert Row("a", "packets", 1000, 1040, tolerance=50).ok
    assert not Row("a", "packets", 1000, 1060, tolerance=50).ok
