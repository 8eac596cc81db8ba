"""``flowsink run --config FILE``: one ingest node.

Processes (all started with ``spawn``, none shares a lock or a socket with another):

- N receiver processes (``receive.processes``, default: cores), each binding every UDP port with
  SO_REUSEPORT and appending to its own queue partition ``<queue dir>/rx-<i>``;
- one pipeline worker per partition (``flowsink.processes.pipeline_main``): read in arrival order, decode,
  write to the configured outputs, ack;
- with GeoIP databases or SNMP targets configured, one enrichment process
  (``flowsink.processes.enrich_main``): it watches the databases and polls the exporters for the workers;
- this process: the HTTP server (``/metrics``, ``/healthz``, ``/readyz``, flows API), the supervisor that
  restarts a child that died, and the signal handling.

Signals: SIGTERM/SIGINT stop the receivers first, then let each worker drain its partition (up to
``pipeline.shutdown_timeout_s``), then exit 0. SIGHUP re-reads the config file and applies what can change
live (log level, batch sizes; see ``docs/operations.md``); workers get it forwarded.
Children die with the node (PR_SET_PDEATHSIG), so a ``kill -9`` of the node never leaves an orphan
holding a queue partition or a UDP port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowsink.config import Config, apply_reloadable, load_config
from flowsink.errors import UserError
from flowsink.log import get_logger, set_level, setup_logging

log = get_logger(__name__)

HELP = "run one ingest node: UDP receivers, persistent queue, decoders, outputs, HTTP API"

SUPERVISE_INTERVAL_S = 0.5
RESTART_BACKOFF_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML configuration file (omit: defaults and FLOWSINK_* only)")


# ---------------------------------------------------------------- child processes


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the node process dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return


def child_entry(role: str, target: str, parent_pid: int, args: tuple[Any, ...]) -> None:
    """Runs first in every child: tie its life to the node's, then call ``target`` (``module:function``)."""
    _die_with_parent()
    if os.getppid() != parent_pid:  # the node died before prctl took effect
        os._exit(1)
    # The node forwards what a child must see; a terminal hangup or a group-wide signal must not kill it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    import importlib

    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    function(*args)


@dataclass
class Child:
    """One supervised child process; ``start`` (re)creates it."""

    role: str  # "receiver", "pipeline" or "enrich"
    index: int
    target: str
    args: tuple[Any, ...]
    process: Any = None
    restarts: int = 0
    next_start: float = 0.0
    wants_ready_event: bool = False  # the target takes an Event it sets once it serves (signals handled)
    ready: Any = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    def start(self, context: Any) -> None:
        args = self.args
        if self.wants_ready_event:
            self.ready = context.Event()
            args = (*args, self.ready)
        self.process = context.Process(
            target=child_entry, args=(self.role, self.target, os.getpid(), args), name=self.name, daemon=False
        )
        self.process.start()

    def is_ready(self) -> bool:
        return self.alive() and (self.ready is None or self.ready.is_set())

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


# ---------------------------------------------------------------- the node


@dataclass
class Node:
    config: Config
    receivers: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)
    services: list[Child] = field(default_factory=list)  # the enrichment process, when configured
    stopping: bool = False
    outputs_ready: bool = False
    http_port: int = 0
    udp_stats: dict[int, dict[str, int]] = field(default_factory=dict)
    _context: Any = None
    _stop_event: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")

    # -- start-up -------------------------------------------------------------------------------------

    def plan(self) -> None:
        """One worker per queue partition (also partitions left by an earlier run), one receiver per slot."""
        from flowsink.queue import partition_dirs, receiver_dir

        receivers = self.config.receiver_processes
        for index, directory in enumerate(partition_dirs(self.config.queue_dir, receivers)):
            self.workers.append(
                Child(
                    "pipeline",
                    index,
                    "flowsink.processes:pipeline_main",
                    (self.config, index, str(directory)),
                    wants_ready_event=True,
                )
            )
        c = self.config
        for index in range(receivers):
            directory = str(receiver_dir(c.queue_dir, index))
            args = (c.receive, c.queue, c.logging, directory, index)
            self.receivers.append(Child("receiver", index, "flowsink.receive:receiver_main", args))

    def start_children(self) -> None:
        from flowsink import metrics

        metrics.create_known_series()
        self.start_enrich_process()
        # Workers first: they drain what an earlier run left before receivers add more.
        for child in self.workers + self.receivers:
            child.start(self._context)
        self.write_pids()
        log.info(
            "node started: %d receiver(s) on UDP %s, %d pipeline worker(s), queue %s",
            len(self.receivers),
            ",".join(map(str, self.config.receive.ports)),
            len(self.workers),
            self.config.queue_dir,
        )

    def start_enrich_process(self) -> None:
        """The enrichment process, when the configuration asks for one and it is not running yet (at start, or
        when a SIGHUP adds GeoIP databases or SNMP targets)."""
        from flowsink.processes import needs_enrich_process

        if self.services or not needs_enrich_process(self.config):
            return
        child = Child("enrich", 0, "flowsink.processes:enrich_main", (self.config,), wants_ready_event=True)
        self.services.append(child)
        child.start(self._context)
        self.write_pids()

    def write_pids(self) -> None:
        """``<run_dir>/pids.json``: which process is which (for profilers and operators)."""
        pids = {"node": os.getpid()}
        pids.update(
            {
                child.name: child.process.pid
                for child in self.workers + self.receivers + self.services
                if child.process
            }
        )
        (self.config.run_dir / "pids.json").write_text(json.dumps(pids, indent=1) + "\n")

    # -- supervision ----------------------------------------------------------------------------------

    def supervise_once(self) -> None:
        """Restart children that died (unless stopping), after a short backoff so a crash loop cannot spin."""
        from flowsink import metrics

        now = time.monotonic()
        for child in self.workers + self.receivers + self.services:
            if self.stopping or child.alive():
                continue
            if child.next_start == 0.0:
                code = child.process.exitcode if child.process is not None else None
                log.error("%s exited (code %s); restarting it", child.name, code)
                _mark_dead(child)
                child.next_start = now + RESTART_BACKOFF_S * min(2**child.restarts, 30)
                continue
            if now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                metrics.PROCESS_RESTARTS.labels(role=child.role).inc()
                child.start(self._context)
                self.write_pids()

    def readiness_checks(self) -> list[tuple[str, Callable[[], str | None]]]:
        return [
            ("queue", self._queue_problem),
            ("outputs", lambda: None if self.outputs_ready else "not prepared yet"),
            ("processes", self._process_problem),
            ("receive", self._receive_problem),
        ]

    def _queue_problem(self) -> str | None:
        directory = self.config.queue_dir
        if not os.access(directory, os.W_OK):
            return f"{directory} is not writable"
        if shutil.disk_usage(directory).free < 1024 * 1024:
            return f"{directory}: disk full"
        return None

    def _process_problem(self) -> str | None:
        down = [child.name for child in self.workers + self.receivers if not child.is_ready()]
        if self.stopping:
            return "shutting down"
        return f"not running: {', '.join(down)}" if down else None

    def _receive_problem(self) -> str | None:
        """Every receiver process has bound every port (seen in /proc/net/udp)."""
        unbound = [
            str(port)
            for port in self.config.receive.ports
            if self.udp_stats.get(port, {}).get("sockets", 0) < len(self.receivers)
        ]
        return f"UDP port(s) {', '.join(unbound)} not bound by every receiver yet" if unbound else None

    # -- signals --------------------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: apply the reloadable settings here and forward the signal to the workers."""
        from flowsink import metrics

        if not self.config.source:
            log.warning("SIGHUP ignored: the node was started without a config file")
            return
        try:
            new = load_config(self.config.source)
        except UserError as exc:
            metrics.CONFIG_RELOADS.labels(result="error").inc()
            log.error("configuration reload failed, keeping the running settings: %s", exc)
            return
        apply, restart = apply_reloadable(self.config, new)
        if "logging.level" in apply:
            set_level(self.config.logging.level)
        for child in self.workers + self.services:
            if child.alive():
                os.kill(child.process.pid, signal.SIGHUP)
        self.start_enrich_process()
        metrics.CONFIG_RELOADS.labels(result="ok").inc()
        log.info(
            "configuration reloaded: applied %s%s",
            ", ".join(f"{k}={v}" for k, v in apply.items()) or "nothing",
            f"; need a restart: {', '.join(restart)}" if restart else "",
        )

    def shutdown(self) -> None:
        """Receivers first (no new data), then workers drain and finish their bulks, then we return."""
        self.stopping = True
        log.info(
            "stopping: receivers first, then draining the queue (up to %gs)",
            self.config.pipeline.shutdown_timeout_s,
        )
        _stop_all(self.receivers, timeout_s=10.0)
        _stop_all(self.workers, timeout_s=self.config.pipeline.shutdown_timeout_s + 15.0)
        _stop_all(self.services, timeout_s=10.0)
        log.info("stopped")

    # -- main loop ------------------------------------------------------------------------------------

    async def serve(self) -> None:
        from flowsink.server import NodeState, build_app, start_server

        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self._stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self._stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        state = NodeState()
        for name, check in self.readiness_checks():
            state.add_check(name, check)
        app = build_app(state, self.config.api_settings())
        runner, self.http_port = await start_server(app, self.config.http.host, self.config.http.port)
        (self.config.run_dir / "http.port").write_text(f"{self.http_port}\n")
        log.info("HTTP on %s:%d (/metrics /healthz /readyz)", self.config.http.host, self.http_port)
        self.start_children()
        try:
            while not self._stop_event.is_set():
                self.supervise_once()
                self.udp_stats = await loop.run_in_executor(None, update_udp_gauges, self.config)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), SUPERVISE_INTERVAL_S)
            await loop.run_in_executor(None, self.shutdown)
        finally:
            await runner.cleanup()


def _stop_all(children: list[Child], timeout_s: float) -> None:
    for child in children:
        if child.alive():
            child.process.terminate()
    deadline = time.monotonic() + timeout_s
    for child in children:
        if child.process is None:
            continue
        child.process.join(max(0.0, deadline - time.monotonic()))
        if child.process.is_alive():
            log.error("%s did not stop within %gs; killing it", child.name, timeout_s)
            child.process.kill()
            child.process.join(5)


def _mark_dead(child: Child) -> None:
    """Drop a dead process's live gauges (queue depth and the like) from the multiprocess metrics."""
    if child.process is None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(child.process.pid)


# ---------------------------------------------------------------- seams to the receive module


def update_udp_gauges(config: Config) -> dict[int, dict[str, int]]:
    """Kernel drops and receive-queue depth of the node's UDP sockets, from /proc/net/udp{,6}; returns them."""
    from flowsink import metrics
    from flowsink.receive import udp_socket_stats

    all_stats = udp_socket_stats(config.receive.ports)
    for port, stats in all_stats.items():
        metrics.UDP_RECEIVE_DROPS.labels(port=str(port)).set(stats.get("drops", 0))
        metrics.UDP_RECEIVE_QUEUE_BYTES.labels(port=str(port)).set(stats.get("rx_queue", 0))
    return all_stats


# ---------------------------------------------------------------- start-up checks and main


def prepare_run_dir(config: Config) -> None:
    """Create the run dir and an empty metrics dir; must run before ``flowsink.metrics`` is imported."""
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.queue_dir.mkdir(parents=True, exist_ok=True)
        metrics_dir = config.run_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
    except OSError as exc:
        raise UserError(f"node.run_dir: cannot use {str(config.run_dir)!r}: {exc.strerror or exc}") from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)


def check_ports_free(config: Config) -> None:
    """Fail early with one line when the HTTP port is taken (UDP ports are shared on purpose: SO_REUSEPORT)."""
    if config.http.port == 0:
        return
    family = socket.AF_INET6 if ":" in config.http.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.http.host, config.http.port))
        except OSError as exc:
            raise UserError(
                f"http.port: cannot listen on {config.http.host}:{config.http.port}: {exc.strerror or exc}"
            ) from None


def prepare_outputs(config: Config) -> None:
    """Each output's start-up check (Elasticsearch: reach it, install the templates), and the cluster the flows
    API keeps its aggregates in when no Elasticsearch output did that already; UserError with one line if not."""
    from flowsink.sinks import prepare_outputs as prepare

    sections = config.output_sections()
    for name, said in prepare(config.output, sections, config.output_context()).items():
        log.info("output %s: %s", name, said)
    if config.api.enabled and "elasticsearch" not in config.output:
        from flowsink.sinks.elasticsearch.output import prepare as prepare_elasticsearch

        try:
            prepare_elasticsearch(sections["elasticsearch"], config.output_context())
        except UserError as exc:
            raise UserError(
                f"flows API (api.enabled): {exc}; set api.enabled: false to run without it"
            ) from None


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config.logging.level, config.logging.format, role="node")
    prepare_run_dir(config)
    check_ports_free(config)
    prepare_outputs(config)
    from flowsink.processes import publish_enrichment_sources

    publish_enrichment_sources(config)
    node = Node(config)
    node.outputs_ready = True
    node.plan()
    asyncio.run(node.serve())
    return 0


if __name__ == "__main__":  # pragma: no cover - `flowsink run` is the entry point
    sys.exit(main(argparse.Namespace(config=sys.argv[1] if len(sys.argv) > 1 else None)))
