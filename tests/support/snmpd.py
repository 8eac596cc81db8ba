"""A private Net-SNMP ``snmpd`` (Debian's package, scripts/install_system_deps.sh) on a free loopback UDP port, with a
configuration of its own: a v2c community, a v3 user (SHA/AES), a sysName and one ifAlias set to known values; the
interface table is the test host's own (``/sys/class/net``: ifIndex -> ifName)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SNMPD = "/usr/sbin/snmpd"
COMMUNITY = "flowsink-test"
USER, AUTH_KEY, PRIV_KEY = "flowsink", "auth-pass-1", "priv-pass-1"
SYS_NAME = 'edge "snmp" é'
ALIAS_INDEX, ALIAS = 1, 'uplink "to core"'


def host_interfaces() -> dict[int, str]:
    """ifIndex -> name of this host's interfaces, which snmpd's ifName reports."""
    found = {}
    for entry in Path("/sys/class/net").iterdir():
        try:
            found[int((entry / "ifindex").read_text())] = entry.name
        except (OSError, ValueError):
            continue
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Snmpd:
    port: int
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_snmpd(directory: Path) -> Snmpd:
    if not os.path.exists(SNMPD):
        pytest.fail(f"{SNMPD} is missing: run scripts/install_system_deps.sh (Debian package snmpd)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    config = directory / "snmpd.conf"
    alias = ALIAS.replace('"', '\\"')
    config.write_text(
        f"agentAddress udp:127.0.0.1:{port}\n"
        f"rocommunity {COMMUNITY} 127.0.0.1\n"
        f'createUser {USER} SHA "{AUTH_KEY}" AES "{PRIV_KEY}"\n'
        f"rouser {USER} priv\n"
        f"sysName {SYS_NAME}\n"  # the rest of the line, quotes included
        f'override .1.3.6.1.2.1.31.1.1.1.18.{ALIAS_INDEX} octet_str "{alias}"\n'
    )
    log = directory / "snmpd.log"
    persistent = directory / "persist"
    shutil.rmtree(persistent, ignore_errors=True)
    # no MIB files: the agent needs none, and loading Debian's partial set logs hundreds of lines
    env = {**os.environ, "MIBS": "", "MIBDIRS": str(directory / "no-mibs")}
    process = subprocess.Popen(
        [SNMPD, "-f", "-C", "-c", str(config), "-Lf", str(log), f"--persistentDir={persistent}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agent = Snmpd(port, process, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"snmpd exited: {log.read_text() if log.exists() else ''}")
        if _answers(port):
            return agent
        time.sleep(0.1)
    agent.stop()
    raise RuntimeError(f"snmpd did not answer on 127.0.0.1:{port}: {log.read_text() if log.exists() else ''}")


def _answers(port: int) -> bool:
    """A v2c GET of sysName answered (hand-built PDU: the probe must not depend on the code under test)."""
    community = COMMUNITY.encode()
    oid = bytes([0x06, 0x08, 0x2B, 6, 1, 2, 1, 1, 5, 0])
    varbind = bytes([0x30, len(oid) + 2]) + oid + b"\x05\x00"
    varbinds = bytes([0x30, len(varbind)]) + varbind
    pdu_body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + varbinds
    pdu = bytes([0xA0, len(pdu_body)]) + pdu_body
    body = b"\x02\x01\x01" + bytes([0x04, len(community)]) + community + pdu
    message = bytes([0x30, len(body)]) + body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(message, ("127.0.0.1", port))
        try:
            return bool(s.recv(4096))
        except OSError:
            return False
