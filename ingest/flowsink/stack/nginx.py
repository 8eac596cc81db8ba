"""Render nginx's configuration for the flowsink stack from ``nginx/flowsink.conf.template``.

One template serves both stacks: the local one (nodes on 127.0.0.1 with a port range per node) and Docker
Compose, where ``flowsink stack watch --docker`` (the ``nginx-watch`` service) renders it with the address of
every live ingest replica and reloads nginx (``docker_watch.py``).
"""

from __future__ import annotations

import bisect
import struct
import zlib
from dataclasses import dataclass
from string import Template

from flowsink import assets

TEMPLATE = assets.path("nginx", "flowsink.conf.template")
# Debian's nginx loads the stream module dynamically; the official image's nginx has it built in.
DEBIAN_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
# In Docker the same config serves both images: this glob matches nothing in the official one, and loads the
# stream module in the one built from Debian's packages (flowsink/stack/images.py).
DOCKER_MODULES = (
    "# Debian's nginx (the locally built image) loads its stream module here; the official image has it built in.\n"
    "include /etc/nginx/modules-enabled/*.conf;"
)


@dataclass
class UdpFront:
    """One UDP port nginx owns, and the node address:port each datagram may be sent on to."""

    listen_port: int
    upstreams: list[str]
    listen_host: str = ""


@dataclass
class NginxSettings:
    """Everything the template needs; paths are absolute in the local stack and container paths in Docker."""

    udp_fronts: list[UdpFront]
    http_upstreams: list[str]
    http_listen: str = "8080"
    status_listen: str = "127.0.0.1:8081"
    pid_file: str = "/run/nginx.pid"
    error_log: str = "stderr"
    error_log_level: str = "notice"
    stream_access_log: str = "off"
    http_access_log: str = "off"
    temp_dir: str = "/var/cache/nginx"
    worker_processes: str = "auto"
    load_stream_module: bool = True
    transparent: bool = True
    # False (the default, as specified): `proxy_responses 0`, one upstream socket per datagram. True: nginx keeps
    # a session per exporter address:port until proxy_timeout of silence and reuses its upstream socket;
    # bench/bench_stack_nginx.py measures the difference (docs/stack.md).
    udp_sessions: bool = False


def _stream_server(front: UdpFront, transparent: bool, udp_sessions: bool) -> str:
    name = f"flowsink_udp_{front.listen_port}"
    servers = "\n".join(f"        server {address};" for address in front.upstreams)
    listen = f"{front.listen_host}:{front.listen_port}" if front.listen_host else str(front.listen_port)
    # Without transparent binding every document would name nginx as its exporter (observer.ip).
    bind = "        proxy_bind $remote_addr transparent;\n" if transparent else ""
    return (
        f"    upstream {name} {{\n"
        "        # One exporter always reaches the same node, which holds its templates and sequence state.\n"
        "        hash $remote_addr consistent;\n"
        f"{servers}\n"
        "    }\n"
        "    server {\n"
        f"        listen {listen} udp reuseport;\n"
        f"        proxy_pass {name};\n"
        f"{_responses(udp_sessions)}"
        "        proxy_timeout 10s;\n"
        f"{bind}"
        "    }"
    )


def _responses(udp_sessions: bool) -> str:
    if udp_sessions:
        return (
            "        # Sessions kept: nginx never gets an answer, so a session ends after proxy_timeout of silence\n"
            "        # (a clean end, not an upstream failure) and its upstream socket serves every datagram till then.\n"
        )
    return (
        "        # Exporters never expect an answer; without this nginx would wait for one per datagram.\n"
        "        proxy_responses 0;\n"
    )


def render(settings: NginxSettings) -> str:
    """The full nginx.conf text for ``settings``."""
    stream_servers = "\n".join(
        _stream_server(front, settings.transparent, settings.udp_sessions) for front in settings.udp_fronts
    )
    http_servers = "\n".join(
        f"        server {address} max_fails=1 fail_timeout=5s;" for address in settings.http_upstreams
    )
    load_module = f"load_module {DEBIAN_STREAM_MODULE};" if settings.load_stream_module else DOCKER_MODULES
    values = {
        "load_module": load_module,
        "worker_processes": settings.worker_processes,
        "pid_file": settings.pid_file,
        "error_log": settings.error_log,
        "error_log_level": settings.error_log_level,
        "stream_access_log": settings.stream_access_log,
        "http_access_log": settings.http_access_log,
        "stream_servers": stream_servers,
        "http_upstream_servers": http_servers,
        "http_listen": settings.http_listen,
        "status_listen": settings.status_listen,
        "temp_dir": settings.temp_dir,
    }
    return Template(TEMPLATE.read_text()).substitute(values)


def consistent_hash_pick(servers: list[str], key: str, down: frozenset[str] = frozenset()) -> str:
    """The upstream nginx's ``hash KEY consistent`` picks for ``key`` among ``servers`` ("address:port").

    A model of ngx_stream_upstream_hash_module (nginx 1.22, weight 1): each server puts 160 points on a ring,
    the first the CRC-32 of "host\\0port", each next one the CRC-32 of the same bytes plus the previous point;
    a key goes to the first point at or after CRC-32(key), skipping points of servers marked down. Written here
    because no library reproduces nginx's ring; the stack test checks it against the real nginx. It lets
    the stack choose node addresses that spread known exporters, and tests predict where each exporter lands.
    """
    points: list[tuple[int, str]] = []
    for server in servers:
        host, _, port = server.rpartition(":")
        base = host.encode() + b"\0" + port.encode()
        previous = 0
        for _ in range(160):
            previous = zlib.crc32(base + struct.pack("<I", previous))
            points.append((previous, server))
    points.sort(key=lambda point: point[0])
    ring = [point[0] for point in points]
    start = bisect.bisect_left(ring, zlib.crc32(key.encode()))
    for step in range(len(points)):
        server = points[(start + step) % len(points)][1]
        if server not in down:
            return server
    raise ValueError("every server is down")


def docker_settings(replicas: list[str], down: frozenset[str] = frozenset()) -> NginxSettings:
    """Compose: one server line per ingest replica address (``flowsink stack watch --docker`` keeps the list).

    Not the service name: nginx turns a name that resolves to several addresses into peers that share one name,
    and ``hash ... consistent`` places points on its ring by that name, so every replica would get the same
    points and each datagram would go round-robin among them, splitting an exporter's templates and sequence
    state over the replicas. Addresses in ``down`` keep their place on the ring, marked down.
    """
    flow_ports = (2055, 4739, 6343)

    def servers(port: int) -> list[str]:
        return [f"{ip}:{port} down" if ip in down else f"{ip}:{port}" for ip in replicas]

    return NginxSettings(
        udp_fronts=[UdpFront(port, servers(port)) for port in flow_ports],
        http_upstreams=servers(8080),
        http_listen="8080",
        status_listen="8081",
        pid_file="/tmp/nginx.pid",
        temp_dir="/tmp",
        error_log="stderr",
        load_stream_module=False,
    )
