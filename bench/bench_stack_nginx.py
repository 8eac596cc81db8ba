"""What the stack's nginx hop costs: UDP datagrams/s through nginx (stream, proxy_responses 0) vs straight to
the receiver, with and without ``proxy_bind $remote_addr transparent``, with one and two worker processes.

    python bench/bench_stack_nginx.py            # 3 runs per case, 3 s each
    python bench/bench_stack_nginx.py --quick    # 1 run per case

The sender is ``bench/udpsend.c`` (sendmmsg, 8 sockets), the receiver ``bench/udpcount.c`` (recvmmsg), both
compiled into ``bench/.work/``, so neither end is the limit being measured. The payload is a real NetFlow v9
datagram (shared/fixtures/telegraf/netflow_v9_example). nginx's config comes from the stack's own template
(flowsink.stack.nginx). Needs root (transparent binding) and nginx with the stream module.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_receive import WORK, build_sender, write_payload_file
from flowsink.stack.nginx import NginxSettings, UdpFront, render

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

PAYLOAD = REPO.parent / "shared" / "fixtures" / "telegraf" / "netflow_v9_example" / "netflow_v9.bin"
RECEIVER_HOST = "127.0.1.9"
# name -> None (straight to the receiver) or (worker processes, transparent bind, keep UDP sessions)
CASES = (
    ("direct to the receiver (peer)", None),
    ("nginx, 1 worker, transparent, proxy_responses 0 (the stack's default)", (1, True, False)),
    ("nginx, 1 worker, no proxy_bind (observer.ip would be nginx)", (1, False, False)),
    ("nginx, 2 workers, transparent, proxy_responses 0", (2, True, False)),
    ("nginx, 1 worker, transparent, sessions kept (FLOWSINK_STACK_NGINX_UDP_SESSIONS=1)", (1, True, True)),
)


def log(message: str) -> None:
    print(f"[bench_stack_nginx] {message}", file=sys.stderr, flush=True)


def build_counter() -> Path:
    binary = WORK / "udpcount"
    source = BENCH / "udpcount.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_nginx(
    folder: Path, front_port: int, upstream: str, workers: int, transparent: bool, sessions: bool
) -> subprocess.Popen:
    settings = NginxSettings(
        udp_fronts=[UdpFront(front_port, [upstream], listen_host="127.0.0.1")],
        http_upstreams=["127.0.0.1:9"],
        http_listen=f"127.0.0.1:{free_udp_port('127.0.0.1')}",
        status_listen=f"127.0.0.1:{free_udp_port('127.0.0.1')}",
        pid_file=str(folder / "nginx.pid"),
        error_log=str(folder / "error.log"),
        temp_dir=str(folder),
        worker_processes=str(workers),
        transparent=transparent,
        udp_sessions=sessions,
    )
    conf = folder / "nginx.conf"
    conf.write_text(render(settings))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if process.poll() is not None:
        raise SystemExit(f"nginx did not start: {(folder / 'error.log').read_text()[-500:]}")
    return process


def run_once(
    sender: Path,
    counter: Path,
    payloads: Path,
    case: tuple[int, bool, bool] | None,
    rate: int,
    seconds: float,
) -> dict[str, float]:
    """One measurement: datagrams sent, received, and the rate the receiver saw."""
    receiver_port = free_udp_port(RECEIVER_HOST)
    receiver = subprocess.Popen(
        [str(counter), RECEIVER_HOST, str(receiver_port), "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as folder:
        nginx = None
        target_host, target_port = RECEIVER_HOST, receiver_port
        if case is not None:
            target_host, target_port = "127.0.0.1", free_udp_port("127.0.0.1")
            nginx = start_nginx(Path(folder), target_port, f"{RECEIVER_HOST}:{receiver_port}", *case)
        try:
            sent_line = subprocess.run(
                [str(sender), str(payloads), target_host, str(target_port), str(rate), str(seconds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            received_line, _ = receiver.communicate(timeout=seconds + 30)
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(10)
    sent = int(re.search(r"sent (\d+)", sent_line)[1])
    send_seconds = float(re.search(r"seconds ([\d.]+)", sent_line)[1])
    received = int(re.search(r"received (\d+)", received_line)[1])
    return {"sent": sent, "received": received, "rate": received / send_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case")
    parser.add_argument("--rate", type=int, default=100_000, help="offered datagrams/s (above nginx's limit)")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    runs = 1 if args.quick else 3
    sender, counter = build_sender(), build_counter()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as folder:
        payloads = Path(folder) / "payloads.bin"
        write_payload_file(payloads, [PAYLOAD.read_bytes()])
        results: dict[str, list[dict[str, float]]] = {}
        for name, case in CASES:
            results[name] = []
            for run in range(runs):
                log(f"{name}: run {run + 1}/{runs}")
                results[name].append(run_once(sender, counter, payloads, case, args.rate, args.seconds))
    peer = statistics.median(r["rate"] for r in results[CASES[0][0]])
    print("## The nginx hop (UDP load balancing in the stack)\n")
    print(
        f"NetFlow v9 datagrams of {len(PAYLOAD.read_bytes())} bytes offered at {args.rate:,}/s for "
        f"{args.seconds:g} s over loopback ({runs} run(s) per case, median); `python bench/bench_stack_nginx.py"
        f"{' --quick' if args.quick else ''}`. Delivered = datagrams the receiver got per second of sending.\n"
    )
    print("| path | delivered datagrams/s | ratio to direct | delivered / sent |")
    print("|---|---:|---:|---:|")
    for name, _ in CASES:
        rate = statistics.median(r["rate"] for r in results[name])
        share = statistics.median(r["received"] / r["sent"] for r in results[name])
        print(f"| {name} | {rate:,.0f} | {rate / peer:.2f} | {share:.1%} |")
    print(
        "\nWith `proxy_responses 0` nginx opens, binds and closes an upstream socket per datagram; with sessions "
        "kept it reuses one per exporter address:port until 10 s of silence. What nginx cannot forward is "
        "dropped in its listening socket's buffer (`/proc/net/udp` drops on the front port), before any flowsink "
        "counter sees it. Sender, receiver and nginx share the machine's cores, so the 2-worker case competes "
        "with them for CPU."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
