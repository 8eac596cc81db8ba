"""flowsink's Grafana dashboards, generated as code with grafanalib.

    python -m flowsink.stack.grafana            writes monitoring/grafana/dashboards/*.json (in a source checkout)
    python -m flowsink.stack.grafana --check    exits 1 if a shipped JSON file differs from the code

grafanalib is needed only here, to generate them (it comes with the ``test`` extra), not to run flowsink.

Every panel is declared through :func:`panel`, so each dashboard stays a readable list of (title, queries,
unit). ``tests/test_stack_local.py`` takes every PromQL expression from the JSON files and checks that each
metric it names is exposed by the real processes of the local stack; docs/stack.md describes each panel.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Target, Template, Templating, TimeSeries

from flowsink import assets

OUT_DIR = assets.path("monitoring", "grafana", "dashboards")
# Provisioned with this uid (provisioning/datasources/prometheus.yml), so dashboards never ask for one.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


@dataclass
class Query:
    expr: str
    legend: str = ""


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


@dataclass
class PanelSpec:
    title: str
    queries: list[Query]
    unit: str = "short"
    description: str = ""


def panel(title: str, *queries: Query, unit: str = "short", description: str = "") -> PanelSpec:
    return PanelSpec(title, list(queries), unit, description)


def _layout(sections: list[tuple[str, list[PanelSpec]]]) -> list:
    """Rows of two panels under a row header per section (Grafana's grid is 24 units wide)."""
    panels: list = []
    y = 0
    for section_title, specs in sections:
        panels.append(RowPanel(title=section_title, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        for i, spec in enumerate(specs):
            x = (i % 2) * PANEL_WIDTH
            if i and i % 2 == 0:
                y += PANEL_HEIGHT
            targets = [
                Target(
                    expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + n), datasource=DATASOURCE
                )
                for n, query in enumerate(spec.queries)
            ]
            panels.append(
                TimeSeries(
                    title=spec.title,
                    description=spec.description,
                    dataSource=DATASOURCE,
                    targets=targets,
                    unit=spec.unit,
                    gridPos=GridPos(h=PANEL_HEIGHT, w=PANEL_WIDTH, x=x, y=y),
                )
            )
        y += PANEL_HEIGHT
    return panels


def _instance_variable(job: str) -> Templating:
    return Templating(
        list=[
            Template(
                name="instance",
                label="node",
                query=f'label_values(up{{job="{job}"}}, instance)',
                dataSource=DATASOURCE,
                includeAll=True,
                multi=True,
                default="$__all",
                refresh=2,
                type="query",
            )
        ]
    )


def _dashboard(
    uid: str, title: str, description: str, sections, templating: Templating | None = None
) -> Dashboard:
    return Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=["flowsink"],
        timezone="utc",
        refresh="10s",
        panels=_layout(sections),
        templating=templating or Templating(),
    ).auto_panel_ids()


NODE = 'instance=~"$instance"'


def ingest_dashboard() -> Dashboard:
    """Per ingest node: what comes in, what the decoders make of it, the queue, and the way into Elasticsearch."""
    sections = [
        (
            "Ingest",
            [
                panel(
                    "Datagrams received per node",
                    q(
                        f"sum by (instance) (rate(flowsink_datagrams_received_total{{{NODE}}}[1m]))",
                        "{{instance}}",
                    ),
                    unit="pps",
                ),
                panel(
                    "Bytes received per node",
                    q(
                        f"sum by (instance) (rate(flowsink_received_bytes_total{{{NODE}}}[1m]))",
                        "{{instance}}",
                    ),
                    unit="Bps",
                ),
                panel(
                    "Records decoded by kind",
                    q(
                        f"sum by (instance, kind) (rate(flowsink_records_decoded_total{{{NODE}}}[1m]))",
                        "{{instance}} {{kind}}",
                    ),
                    unit="ops",
                ),
                panel(
                    "Datagrams received per exporter (top 10)",
                    q(
                        f"topk(10, sum by (exporter) (rate(flowsink_datagrams_received_total{{{NODE}}}[5m])))",
                        "{{exporter}}",
                    ),
                    unit="pps",
                    description="nginx keeps each exporter on one node; an exporter moving between nodes shows here",
                ),
            ],
        ),
        (
            "Decoding",
            [
                panel(
                    "Decode errors by reason",
                    q(
                        f"sum by (instance, protocol, reason) (rate(flowsink_decode_errors_total{{{NODE}}}[5m]))",
                        "{{instance}} {{protocol}} {{reason}}",
                    ),
                    unit="ops",
                ),
                panel(
                    "Templates known and data waiting for a template",
                    q(f"sum by (instance) (flowsink_templates{{{NODE}}})", "{{instance}} templates"),
                    q(f"sum by (instance) (flowsink_pending_datagrams{{{NODE}}})", "{{instance}} pending"),
                    description="after a node dies its exporters' data waits here until they re-send templates",
                ),
                panel(
                    "Data expired without a template",
                    q(f"sum by (instance) (rate(flowsink_expired_total{{{NODE}}}[5m]))", "{{instance}}"),
                    unit="ops",
                ),
                panel(
                    "Sequence gaps and estimated lost records (before the node)",
                    q(
                        f"sum by (instance) (rate(flowsink_sequence_gaps_total{{{NODE}}}[5m]))",
                        "{{instance}} gaps",
                    ),
                    q(
                        f"sum by (instance) (rate(flowsink_lost_records_total{{{NODE}}}[5m]))",
                        "{{instance}} lost",
                    ),
                    unit="ops",
                ),
            ],
        ),
        (
            "Persistent queue",
            [
                panel(
                    "Queue depth (datagrams)",
                    q(f"sum by (instance) (flowsink_queue_depth_datagrams{{{NODE}}})", "{{instance}}"),
                ),
                panel(
                    "Queue depth (bytes on disk)",
                    q(f"sum by (instance) (flowsink_queue_depth_bytes{{{NODE}}})", "{{instance}}"),
                    unit="bytes",
                ),
                panel(
                    "Queue fill (disk bytes / queue.max_bytes)",
                    q(
                        f"sum by (instance) (flowsink_queue_disk_bytes{{{NODE}}}) / "
                        f"sum by (instance) (flowsink_queue_capacity_bytes{{{NODE}}})",
                        "{{instance}}",
                    ),
                    unit="percentunit",
                    description="at 100% new datagrams are dropped (reason full)",
                ),
                panel(
                    "Age of the oldest queued datagram",
                    q(f"max by (instance) (flowsink_queue_oldest_age_seconds{{{NODE}}})", "{{instance}}"),
                    unit="s",
                ),
                panel(
                    "Queue write and read rate",
                    q(
                        f"sum by (instance) (rate(flowsink_queue_written_datagrams_total{{{NODE}}}[1m]))",
                        "{{instance}} written",
                    ),
                    q(
                        f"sum by (instance) (rate(flowsink_queue_acked_datagrams_total{{{NODE}}}[1m]))",
                        "{{instance}} acked",
                    ),
                    unit="pps",
                ),
                panel(
                    "Dropped datagrams by reason",
                    q(
                        f"sum by (instance, reason) (rate(flowsink_queue_dropped_total{{{NODE}}}[1m]))",
                        "{{instance}} {{reason}}",
                    ),
                    unit="pps",
                    description="full: queue.max_bytes reached; disk_full: ENOSPC",
                ),
                panel(
                    "UDP kernel drops and receive buffer",
                    q(f"sum by (instance) (flowsink_udp_receive_drops{{{NODE}}})", "{{instance}} drops"),
                    q(
                        f"sum by (instance) (flowsink_udp_receive_queue_bytes{{{NODE}}})",
                        "{{instance}} rx queue bytes",
                    ),
                    description="drops counted by the kernel before the receivers read: /proc/net/udp",
                ),
            ],
        ),
        (
            "Elasticsearch sink",
            [
                panel(
                    "Documents indexed per node",
                    q(
                        f"sum by (instance) (rate(flowsink_documents_indexed_total{{{NODE}}}[1m]))",
                        "{{instance}}",
                    ),
                    unit="ops",
                ),
                panel(
                    "Bulk request latency (p50, p99)",
                    q(
                        f"histogram_quantile(0.5, sum by (le, instance) "
                        f"(rate(flowsink_bulk_request_duration_seconds_bucket{{{NODE}}}[5m])))",
                        "{{instance}} p50",
                    ),
                    q(
                        f"histogram_quantile(0.99, sum by (le, instance) "
                        f"(rate(flowsink_bulk_request_duration_seconds_bucket{{{NODE}}}[5m])))",
                        "{{instance}} p99",
                    ),
                    unit="s",
                ),
                panel(
                    "Retries, duplicates and dead letters",
                    q(
                        f"sum by (instance, reason) (rate(flowsink_bulk_retries_total{{{NODE}}}[5m]))",
                        "{{instance}} retry {{reason}}",
                    ),
                    q(
                        f"sum by (instance) (rate(flowsink_documents_duplicate_total{{{NODE}}}[5m]))",
                        "{{instance}} duplicate",
                    ),
                    q(
                        f"sum by (instance, reason) (rate(flowsink_documents_dead_lettered_total{{{NODE}}}[5m]))",
                        "{{instance}} dead letter {{reason}}",
                    ),
                    unit="ops",
                ),
                panel(
                    "Elasticsearch reachable from the node",
                    q(f"min by (instance) (flowsink_elasticsearch_up{{{NODE}}})", "{{instance}}"),
                    q('up{job="flowsink"}', "{{instance}} scraped"),
                ),
            ],
        ),
    ]
    return _dashboard(
        "flowsink-ingest",
        "flowsink: ingest nodes",
        "Per node: datagrams in, decoding, the persistent queue and bulk indexing",
        sections,
        _instance_variable("flowsink"),
    )


def backends_dashboard() -> Dashboard:
    """Elasticsearch (prometheus-elasticsearch-exporter) and nginx (stub_status through its exporter)."""
    sections = [
        (
            "Elasticsearch",
            [
                panel(
                    "Cluster health (0 green, 1 yellow, 2 red)",
                    q(
                        'max(elasticsearch_cluster_health_status{color="yellow"}) '
                        '+ 2 * max(elasticsearch_cluster_health_status{color="red"})',
                        "status",
                    ),
                ),
                panel(
                    "Shards",
                    q("max(elasticsearch_cluster_health_active_shards)", "active"),
                    q("max(elasticsearch_cluster_health_unassigned_shards)", "unassigned"),
                    q("max(elasticsearch_cluster_health_number_of_pending_tasks)", "pending tasks"),
                ),
                panel(
                    "Indexing rate (all indices)",
                    q("sum(rate(elasticsearch_indices_indexing_index_total[1m]))", "documents/s"),
                    unit="ops",
                ),
                panel(
                    "Write thread pool rejections",
                    q('sum(rate(elasticsearch_thread_pool_rejected_count{type="write"}[5m]))', "rejected/s"),
                    unit="ops",
                    description="rejections become 429s at the nodes, which retry them (see the sink panels)",
                ),
                panel(
                    "JVM heap",
                    q('sum by (name) (elasticsearch_jvm_memory_used_bytes{area="heap"})', "{{name}} used"),
                    q('sum by (name) (elasticsearch_jvm_memory_max_bytes{area="heap"})', "{{name}} max"),
                    unit="bytes",
                ),
                panel(
                    "Documents and store size",
                    q("sum(elasticsearch_indices_docs)", "documents"),
                    q("sum(elasticsearch_indices_store_size_bytes)", "store bytes"),
                ),
            ],
        ),
        (
            "nginx",
            [
                panel("nginx up", q("nginx_up", "{{instance}}")),
                panel(
                    "HTTP requests (flows API, health)",
                    q("sum(rate(nginx_http_requests_total[1m]))", "requests/s"),
                    unit="reqps",
                ),
                panel(
                    "Connections",
                    q("sum(nginx_connections_active)", "active"),
                    q("sum(rate(nginx_connections_accepted[1m]))", "accepted/s"),
                    q("sum(rate(nginx_connections_handled[1m]))", "handled/s"),
                    description="stub_status counts HTTP only; UDP datagrams show in the ingest dashboard",
                ),
            ],
        ),
    ]
    return _dashboard(
        "flowsink-backends",
        "flowsink: Elasticsearch and nginx",
        "Health and load of the tiers around the ingest nodes",
        sections,
    )


def hosts_dashboard() -> Dashboard:
    """CPU, memory, disk and network of every host (node_exporter)."""
    sections = [
        (
            "Hosts",
            [
                panel(
                    "CPU busy",
                    q(
                        '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))',
                        "{{instance}}",
                    ),
                    unit="percentunit",
                ),
                panel(
                    "Memory available",
                    q("node_memory_MemAvailable_bytes", "{{instance}} available"),
                    q("node_memory_MemTotal_bytes", "{{instance}} total"),
                    unit="bytes",
                ),
                panel(
                    "Disk space free (queues live here)",
                    q(
                        'min by (instance, mountpoint) (node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"})',
                        "{{instance}} {{mountpoint}}",
                    ),
                    unit="bytes",
                ),
                panel(
                    "Disk I/O",
                    q("sum by (instance) (rate(node_disk_read_bytes_total[1m]))", "{{instance}} read"),
                    q("sum by (instance) (rate(node_disk_written_bytes_total[1m]))", "{{instance}} written"),
                    unit="Bps",
                ),
                panel(
                    "Network traffic",
                    q(
                        'sum by (instance) (rate(node_network_receive_bytes_total{device!="lo"}[1m]))',
                        "{{instance}} in",
                    ),
                    q(
                        'sum by (instance) (rate(node_network_transmit_bytes_total{device!="lo"}[1m]))',
                        "{{instance}} out",
                    ),
                    unit="Bps",
                ),
                panel(
                    "UDP datagrams and receive-buffer errors (whole host)",
                    q("rate(node_netstat_Udp_InDatagrams[1m])", "{{instance}} in"),
                    q("rate(node_netstat_Udp_RcvbufErrors[1m])", "{{instance}} rcvbuf errors"),
                    q("rate(node_netstat_Udp_InErrors[1m])", "{{instance}} in errors"),
                    unit="pps",
                ),
                panel("Load average", q("node_load1", "{{instance}} 1m"), q("node_load5", "{{instance}} 5m")),
            ],
        ),
    ]
    return _dashboard(
        "flowsink-hosts", "flowsink: hosts", "node_exporter: CPU, memory, disk, network", sections
    )


DASHBOARDS = {
    "flowsink-ingest.json": ingest_dashboard,
    "flowsink-backends.json": backends_dashboard,
    "flowsink-hosts.json": hosts_dashboard,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="generate flowsink's Grafana dashboards")
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        if args.check:
            path = OUT_DIR / name
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            assets.source_path("monitoring", "grafana", "dashboards", name).write_text(text)
    if stale:
        print(f"out of date (run python -m flowsink.stack.grafana): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
