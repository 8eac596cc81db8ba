"""The node's HTTP server (aiohttp): ``/metrics``, ``/healthz``, ``/readyz``, plus the flows API routes.

``/healthz`` answers 200 while the process serves at all; ``/readyz`` answers 200 only when every readiness
check passes (the queue is writable, Elasticsearch was reached once, the node's processes run) and 503 with
the failing reasons otherwise, so nginx and orchestrators send traffic only to nodes that can keep it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from flowsink.api.settings import ApiSettings
from flowsink.log import get_logger
from flowsink.settings import setting

log = get_logger(__name__)

# A readiness check returns None when fine, else a short reason shown by /readyz.
ReadinessCheck = Callable[[], "str | None"]

STATE_KEY = web.AppKey("flowsink_state", object)


@dataclass
class HttpSettings:
    """The ``http`` section."""

    host: str = setting("0.0.0.0", help="address of /metrics, /healthz, /readyz and the flows API")
    port: int = setting(8080, min=0, max=65535, help="0 picks a free port (logged)")


@dataclass
class NodeState:
    """What the HTTP handlers need to know about the node; filled in by ``flowsink.node``."""

    started_monotonic: float = field(default_factory=time.monotonic)
    readiness_checks: list[tuple[str, ReadinessCheck]] = field(default_factory=list)

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.readiness_checks.append((name, check))

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        for name, check in self.readiness_checks:
            try:
                problem = check()
            except Exception as exc:  # a broken check means "not ready", never a 500
                problem = f"check failed: {exc}"
            if problem:
                reasons.append(f"{name}: {problem}")
        return reasons


def metrics_registry() -> Any:
    """In multiprocess mode, a registry that sums the per-process files; else the default registry.

    prometheus_client is imported here, not at the top: it picks its multiprocess mode from
    ``PROMETHEUS_MULTIPROC_DIR`` when first imported, which ``flowsink run`` sets only after reading its
    configuration (and the configuration imports this module for its settings).
    """
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


async def handle_metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = metrics_registry()
    # Reading every process's mmap files takes a few ms; off the event loop so UDP-side work is not delayed.
    body = await request.loop.run_in_executor(None, generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_healthz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    uptime = time.monotonic() - state.started_monotonic
    return web.json_response({"status": "ok", "uptime_seconds": round(uptime, 3)})


async def handle_readyz(request: web.Request) -> web.Response:
    reasons = request.app[STATE_KEY].not_ready_reasons()
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


def build_app(state: NodeState, api: ApiSettings | None = None) -> web.Application:
    """The node's aiohttp application; with ``api`` (and ``api.enabled``) the flows API adds its routes."""
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    if api is not None and api.enabled:
        from flowsink import api as flows_api

        flows_api.setup(app, api)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner (for cleanup) and the bound port (useful with port 0)."""
    # auto_decompress off: the flows API inflates gzip bodies itself, with its size limit (gzip bombs) and a
    # 400 for a corrupt body (aiohttp's own inflater drops the connection instead)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    return runner, bound
