"""The flows API: ``POST /flows`` (app-level flow rows) and ``GET /flows?hour=N`` (exact hourly aggregates).

``server.build_app`` calls :func:`setup`; tests and benchmarks build an ``aiohttp.web.Application`` and call
it the same way. See docs/flows-api.md for the contract, the storage design and the settings.
"""

from __future__ import annotations

from aiohttp import web

from flowsink.api.settings import ApiSettings

API_KEY = web.AppKey("flowsink_api", object)


def setup(app: web.Application, settings: ApiSettings) -> None:
    """Register ``/flows`` and ``/openapi.json`` and the API's start/stop hooks on ``app``."""
    from flowsink.api.service import FlowsApi

    if not settings.enabled:
        return
    api = FlowsApi(settings)
    app[API_KEY] = api
    app.router.add_post("/flows", api.post_flows)
    app.router.add_get("/flows", api.get_flows)
    app.router.add_get("/openapi.json", api.openapi)
    app.on_startup.append(api.start)
    app.on_cleanup.append(api.stop)


__all__ = ["ApiSettings", "setup"]
