"""Render nginx's configuration for the flowsink stack from ``nginx/flowsink.conf.template``.

One template serves both stacks: the local one (nodes on 127.0.0.1 with a port range per node) and Docker
Compose (one ``ingest`` service name that resolves to every replica). ``python -m flowsink.stack.nginx --docker``
prints the Docker variant, which is committed as ``nginx/nginx.docker.conf`` (a test keeps the two in sync).
"""

from __future__ import annotations

import argparse
import bisect
import struct
import sys
import zlib
from dataclasses import dataclass
from string import Template

from flowsink import assets

TEMPLATE = assets.path("nginx", "flowsink.conf.template")
DOCKER_CONF = assets.path("nginx", "nginx.docker.conf")
# Debian's nginx loads the stream module dynamically; the official image's nginx has it built in.
DEBIAN_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


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
    load_module = f"load_module {DEBIAN_STREAM_MODULE};" if settings.load_stream_module else ""
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


def docker_settings() -> NginxSettings:
    """Compose: ``ingest`` resolves to every replica when nginx starts (reload nginx after a scale change)."""
    flow_ports = (2055, 4739, 6343)
    return NginxSettings(
        udp_fronts=[UdpFront(port, [f"ingest:{port}"]) for port in flow_ports],
        http_upstreams=["ingest:8080"],
        http_listen="8080",
        status_listen="8081",
        pid_file="/tmp/nginx.pid",
        temp_dir="/tmp",
        error_log="stderr",
        load_stream_module=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker", action="store_true", help="print the Docker Compose variant")
    parser.add_argument("--write", action="store_true", help="with --docker: write nginx/nginx.docker.conf")
    args = parser.parse_args(argv)
    if not args.docker:
        parser.error("the local stack renders its own config (flowsink stack render); use --docker here")
    text = render(docker_settings())
    if args.write:
        assets.source_path("nginx", DOCKER_CONF.name).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
