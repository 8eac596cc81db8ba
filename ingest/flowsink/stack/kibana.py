"""Generate flowsink's Kibana saved objects (``kibana/flowsink.ndjson``, Kibana 8 import format).

    python -m flowsink.stack.kibana           write kibana/flowsink.ndjson (in a source checkout)
    python -m flowsink.stack.kibana --check   exit 1 if the shipped file differs from this code

Data views on the flow, meta and flows-API indices, aggregation-based visualisations and three dashboards.
Written as code because a saved object keeps its visualisation state as JSON inside a JSON string, which
nobody can review or keep consistent by hand. ``tests/test_stack_config.py`` checks every field every
visualisation uses against the index templates in ``elasticsearch/``; docs/stack.md lists every panel.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from flowsink import assets

OUT = assets.path("kibana", "flowsink.ndjson")
CORE_MIGRATION_VERSION = "8.8.0"

# data view id -> (title pattern, time field or None, display name)
DATA_VIEWS = {
    "flowsink-flows": ("flowsink-flows-*", "@timestamp", "flowsink flows"),
    "flowsink-meta": ("flowsink-meta-*", "@timestamp", "flowsink options and sFlow counters"),
    # The flows API's indices (elasticsearch/api-*.json): one marker per applied batch of rows, and the
    # aggregates (no time field: documents carry the hour they sum).
    "flowsink-app-batches": ("flowsink-app-flows-batches*", "applied_ms", "flowsink app flow batches (API)"),
    "flowsink-app-flows": ("flowsink-app-flows-aggregates*", None, "flowsink app flow aggregates (API)"),
}


@dataclass
class Vis:
    """One aggregation-based visualisation: its chart type, aggregations and the data view they run on."""

    id: str
    title: str
    kind: str  # line | area | histogram | pie | table | metric
    data_view: str
    aggs: list[dict]
    query: str = ""
    description: str = ""
    params: dict = field(default_factory=dict)


def metric(agg: str, field_name: str | None = None, agg_id: str = "1", **extra) -> dict:
    params = {"field": field_name} if field_name else {}
    params.update(extra)
    return {"id": agg_id, "enabled": True, "type": agg, "schema": "metric", "params": params}


def rate_of(counter_field: str, agg_id: str) -> dict:
    """Per-interval increase of a cumulative counter (sFlow counters are totals since the agent started)."""
    return {
        "id": agg_id,
        "enabled": True,
        "type": "derivative",
        "schema": "metric",
        "params": {
            "metricAgg": "custom",
            "customMetric": {
                "id": f"{agg_id}-metric",
                "enabled": True,
                "type": "max",
                "params": {"field": counter_field},
            },
        },
    }


def over_time(agg_id: str = "2", time_field: str = "@timestamp") -> dict:
    return {
        "id": agg_id,
        "enabled": True,
        "type": "date_histogram",
        "schema": "segment",
        "params": {
            "field": time_field,
            "interval": "auto",
            "min_doc_count": 1,
            "extended_bounds": {},
            "useNormalizedEsInterval": True,
            "scaleMetricValues": False,
        },
    }


def terms(field_name: str, agg_id: str, schema: str = "bucket", size: int = 10, order_by: str = "1") -> dict:
    return {
        "id": agg_id,
        "enabled": True,
        "type": "terms",
        "schema": schema,
        "params": {
            "field": field_name,
            "orderBy": order_by,
            "order": "desc",
            "size": size,
            "otherBucket": False,
            "missingBucket": False,
        },
    }


def _chart_params(kind: str) -> dict:
    """The parameters Kibana's own editor saves for each chart type (defaults, so the chart renders as is)."""
    if kind in ("line", "area", "histogram"):
        mode = "stacked" if kind != "line" else "normal"
        return {
            "type": kind,
            "addTooltip": True,
            "addLegend": True,
            "legendPosition": "right",
            "times": [],
            "addTimeMarker": False,
            "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
            "grid": {"categoryLines": False},
            "categoryAxes": [
                {
                    "id": "CategoryAxis-1",
                    "type": "category",
                    "position": "bottom",
                    "show": True,
                    "style": {},
                    "scale": {"type": "linear"},
                    "labels": {"show": True, "filter": True, "truncate": 100},
                    "title": {},
                }
            ],
            "valueAxes": [
                {
                    "id": "ValueAxis-1",
                    "name": "LeftAxis-1",
                    "type": "value",
                    "position": "left",
                    "show": True,
                    "style": {},
                    "scale": {"type": "linear", "mode": "normal"},
                    "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                    "title": {"text": ""},
                }
            ],
            "seriesParams": [
                {
                    "show": True,
                    "type": kind,
                    "mode": mode,
                    "data": {"label": "", "id": "1"},
                    "valueAxis": "ValueAxis-1",
                    "drawLinesBetweenPoints": True,
                    "lineWidth": 2,
                    "showCircles": True,
                    "interpolate": "linear",
                }
            ],
        }
    if kind == "pie":
        return {
            "type": "pie",
            "addTooltip": True,
            "legendDisplay": "show",
            "legendPosition": "right",
            "isDonut": True,
            "labels": {
                "show": True,
                "values": True,
                "last_level": True,
                "truncate": 100,
                "position": "default",
                "valuesFormat": "percent",
            },
        }
    if kind == "table":
        return {
            "perPage": 20,
            "showPartialRows": False,
            "showMetricsAtAllLevels": False,
            "showTotal": True,
            "totalFunc": "sum",
            "percentageCol": "",
            "row": True,
        }
    if kind == "metric":
        return {
            "addTooltip": True,
            "addLegend": False,
            "type": "metric",
            "metric": {
                "percentageMode": False,
                "useRanges": False,
                "colorSchema": "Green to Red",
                "metricColorMode": "None",
                "colorsRange": [{"from": 0, "to": 10000}],
                "labels": {"show": True},
                "invertColors": False,
                "style": {
                    "bgFill": "#000",
                    "bgColor": False,
                    "labelColor": False,
                    "subText": "",
                    "fontSize": 40,
                },
            },
        }
    raise ValueError(f"unknown chart type {kind}")


BYTES = "network.bytes"
PACKETS = "network.packets"


def flow_visualisations() -> list[Vis]:
    flows = "flowsink-flows"
    only_flows = 'event.action : ("netflow_flow" or "ipfix_flow" or "sflow_flow_sample")'
    return [
        Vis(
            "flowsink-bytes-over-time",
            "Traffic over time: bytes",
            "area",
            flows,
            [metric("sum", BYTES), over_time(), terms("event.action", "3", "group", 5)],
            description="network.bytes (renormalised by the sampling rate), by record kind",
        ),
        Vis(
            "flowsink-packets-over-time",
            "Traffic over time: packets",
            "area",
            flows,
            [metric("sum", PACKETS), over_time(), terms("event.action", "3", "group", 5)],
        ),
        Vis(
            "flowsink-flows-over-time",
            "Traffic over time: flow records",
            "histogram",
            flows,
            [metric("count"), over_time(), terms("event.action", "3", "group", 5)],
            query=only_flows,
        ),
        Vis(
            "flowsink-top-sources",
            "Top talkers: sources",
            "table",
            flows,
            [metric("sum", BYTES), metric("sum", PACKETS, "2"), terms("source.ip", "3", size=20)],
        ),
        Vis(
            "flowsink-top-destinations",
            "Top talkers: destinations",
            "table",
            flows,
            [metric("sum", BYTES), metric("sum", PACKETS, "2"), terms("destination.ip", "3", size=20)],
        ),
        Vis(
            "flowsink-top-pairs",
            "Top talkers: source and destination pairs",
            "table",
            flows,
            [metric("sum", BYTES), terms("source.ip", "2", size=20), terms("destination.ip", "3", size=5)],
        ),
        Vis(
            "flowsink-top-ports",
            "Top destination ports",
            "table",
            flows,
            [
                metric("sum", BYTES),
                metric("count", agg_id="2"),
                terms("network.transport", "3", size=5),
                terms("destination.port", "4", size=20),
            ],
        ),
        Vis(
            "flowsink-protocols",
            "Transport protocols by bytes",
            "pie",
            flows,
            [metric("sum", BYTES), terms("network.transport", "2", "segment", 10)],
        ),
        Vis(
            "flowsink-per-exporter",
            "Traffic per exporter (observer.ip)",
            "line",
            flows,
            [metric("sum", BYTES), over_time(), terms("observer.ip", "3", "group", 10)],
            description="observer.ip is the exporter's own address, kept through nginx (transparent proxy)",
        ),
        Vis(
            "flowsink-per-interface",
            "Traffic per exporter interface",
            "table",
            flows,
            [
                metric("sum", BYTES),
                metric("sum", PACKETS, "2"),
                terms("observer.ip", "3", size=10),
                terms("observer.ingress.interface.id", "4", size=10),
                terms("observer.egress.interface.id", "5", size=10),
            ],
        ),
        Vis(
            "flowsink-ip-versions",
            "IPv4 vs IPv6 (bytes)",
            "pie",
            flows,
            [metric("sum", BYTES), terms("network.type", "2", "segment", 5)],
        ),
        Vis(
            "flowsink-directions",
            "Traffic by direction",
            "pie",
            flows,
            [metric("sum", BYTES), terms("network.direction", "2", "segment", 5)],
        ),
    ]


def sflow_visualisations() -> list[Vis]:
    meta = "flowsink-meta"
    counters = 'event.action : "sflow_counter_sample"'
    interface = "sflow.counters.interface"
    return [
        Vis(
            "flowsink-sflow-octets",
            "sFlow interface counters: octets per interval",
            "line",
            meta,
            [
                rate_of(f"{interface}.if_in_octets", "1"),
                rate_of(f"{interface}.if_out_octets", "4"),
                over_time(),
                terms("observer.ip", "3", "group", 10, order_by="_key"),
            ],
            query=counters,
            description="derivative of the agents' cumulative ifInOctets/ifOutOctets",
        ),
        Vis(
            "flowsink-sflow-errors",
            "sFlow interface counters: errors and discards per interval",
            "line",
            meta,
            [
                rate_of(f"{interface}.if_in_errors", "1"),
                rate_of(f"{interface}.if_out_errors", "4"),
                rate_of(f"{interface}.if_in_discards", "5"),
                rate_of(f"{interface}.if_out_discards", "6"),
                over_time(),
            ],
            query=counters,
        ),
        Vis(
            "flowsink-sflow-interfaces",
            "sFlow interfaces reporting",
            "table",
            meta,
            [
                metric("max", f"{interface}.if_speed"),
                metric("count", agg_id="2"),
                terms("observer.ip", "3", size=20),
                terms("observer.ingress.interface.id", "4", size=50),
            ],
            query=counters,
            description="one row per agent and ifIndex: link speed and counter samples seen",
        ),
        Vis(
            "flowsink-meta-kinds",
            "Options records and counter samples over time",
            "histogram",
            meta,
            [metric("count"), over_time(), terms("event.action", "3", "group", 5)],
        ),
    ]


def app_visualisations() -> list[Vis]:
    batches, aggregates = "flowsink-app-batches", "flowsink-app-flows"
    # The API keeps each hour's per-(src_app, dest_app, vpc_id) sums packed in a non-indexed field, as exact
    # decimal strings that only GET /flows?hour=N adds up; so Kibana shows the flow of rows, not the sums.
    return [
        Vis(
            "flowsink-app-rows-over-time",
            "App flows: rows applied over time, per node",
            "area",
            batches,
            [metric("sum", "rows"), over_time(time_field="applied_ms"), terms("node", "3", "group", 10)],
            description="rows of POST /flows batches once applied to the aggregates",
        ),
        Vis(
            "flowsink-app-batches-over-time",
            "App flows: batches applied over time",
            "histogram",
            batches,
            [metric("count"), over_time(time_field="applied_ms")],
        ),
        Vis(
            "flowsink-app-hours",
            "App flows: batches per reported hour",
            "histogram",
            aggregates,
            [
                metric("count"),
                {
                    "id": "2",
                    "enabled": True,
                    "type": "histogram",
                    "schema": "segment",
                    "params": {
                        "field": "hour",
                        "interval": 1,
                        "min_doc_count": False,
                        "has_extended_bounds": False,
                        "extended_bounds": {},
                    },
                },
            ],
            query='kind : "d"',
            description="one delta document per (batch, hour): which hours agents report",
        ),
    ]


DASHBOARDS = {
    "flowsink-traffic": (
        "flowsink: traffic",
        "NetFlow, IPFIX and sFlow traffic: volume, talkers, ports, exporters",
        flow_visualisations,
    ),
    "flowsink-sflow-counters": (
        "flowsink: sFlow counters and options records",
        "Interface counters the sFlow agents send, and NetFlow/IPFIX options records",
        sflow_visualisations,
    ),
    "flowsink-app-flows": ("flowsink: app flows (API)", "Rows agents POST to /flows", app_visualisations),
}


def _saved_object(obj_type: str, obj_id: str, attributes: dict, references: list[dict], version: str) -> dict:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": obj_id,
        "managed": False,
        "references": references,
        "type": obj_type,
        "typeMigrationVersion": version,
    }


def data_view_objects() -> list[dict]:
    objects = []
    for view_id, (pattern, time_field, name) in DATA_VIEWS.items():
        attributes = {"title": pattern, "name": name, "allowHidden": False}
        if time_field:
            attributes["timeFieldName"] = time_field
        objects.append(_saved_object("index-pattern", view_id, attributes, [], "8.0.0"))
    return objects


def vis_object(vis: Vis) -> dict:
    vis_state = {"title": vis.title, "type": vis.kind, "aggs": vis.aggs, "params": _chart_params(vis.kind)}
    search_source = {
        "query": {"query": vis.query, "language": "kuery"},
        "filter": [],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    attributes = {
        "title": vis.title,
        "description": vis.description,
        "version": 1,
        "uiStateJSON": "{}",
        "visState": json.dumps(vis_state, sort_keys=True),
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(search_source, sort_keys=True)},
    }
    references = [
        {"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": vis.data_view}
    ]
    return _saved_object("visualization", vis.id, attributes, references, "8.5.0")


def dashboard_object(dash_id: str, title: str, description: str, visualisations: list[Vis]) -> dict:
    panels, references = [], []
    for n, vis in enumerate(visualisations):
        ref = f"panel_{n}"
        panels.append(
            {
                "version": CORE_MIGRATION_VERSION,
                "type": "visualization",
                "panelIndex": str(n + 1),
                "gridData": {"x": (n % 2) * 24, "y": (n // 2) * 15, "w": 24, "h": 15, "i": str(n + 1)},
                "embeddableConfig": {},
                "panelRefName": ref,
            }
        )
        references.append({"name": ref, "type": "visualization", "id": vis.id})
    attributes = {
        "title": title,
        "description": description,
        "version": 1,
        "timeRestore": True,
        "timeFrom": "now-24h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 30000},
        "panelsJSON": json.dumps(panels, sort_keys=True),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
        },
    }
    return _saved_object("dashboard", dash_id, attributes, references, "10.2.0")


def all_visualisations() -> list[Vis]:
    return [vis for _, _, build in DASHBOARDS.values() for vis in build()]


def render() -> str:
    """The whole ndjson file: data views first, then visualisations, then the dashboards that use them."""
    objects = data_view_objects()
    objects += [vis_object(vis) for vis in all_visualisations()]
    objects += [
        dashboard_object(dash_id, title, description, build())
        for dash_id, (title, description, build) in DASHBOARDS.items()
    ]
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in objects)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="generate kibana/flowsink.ndjson")
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python -m flowsink.stack.kibana", file=sys.stderr)
            return 1
        return 0
    assets.source_path("kibana", OUT.name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
