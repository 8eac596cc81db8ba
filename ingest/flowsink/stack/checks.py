"""Consistency checks between the dashboards and what really exists (used by tests/test_stack_*.py).

- Grafana and the alert rules query Prometheus metric names: :func:`promql_metric_names` pulls them out of an
  expression, :func:`exposed_names` lists what a ``/metrics`` page (or a prometheus-client registry) offers.
- Kibana visualisations aggregate on fields: :func:`kibana_field_uses` lists (data view, field, aggregation)
  from ``kibana/*.ndjson``; :class:`TemplateFields` resolves a field's type from ``elasticsearch/*.json``
  (component templates and dynamic templates included) the way Elasticsearch would map it.

    python -m flowsink.stack.checks http://127.0.0.1:18080/metrics ...   metric names of the dashboards and
                                                                          alerts that none of the pages expose
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from flowsink import assets

GRAFANA_DIR = assets.path("monitoring", "grafana", "dashboards")
ALERTS = assets.path("monitoring", "alerts.yml")
KIBANA_DIR = assets.path("kibana")
TEMPLATE_DIR = assets.path("elasticsearch")

# ------------------------------------------------------------------------------------------ PromQL

_PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and durations left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def grafana_queries(directory: Path = GRAFANA_DIR) -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every target of every panel."""
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield path.name, panel.get("title", ""), target["expr"]


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def alert_queries(path: Path = ALERTS) -> Iterator[tuple[str, str]]:
    """(alert name, expression) for every rule."""
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record"), rule["expr"]


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "untyped": ("",),
    "unknown": ("",),
    "info": ("_info",),
}


def exposed_names(metrics_text: str) -> set[str]:
    """Every sample name a Prometheus text page declares (``# TYPE`` lines) or carries."""
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in _SUFFIXES.get(kind, ("",)))
            names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def registry_names(registry) -> set[str]:
    """Sample names a prometheus-client registry can expose, whether or not a labelled child exists yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def labelled_metric_names(module) -> set[str]:
    """Sample names of the labelled metrics a module defines: they appear on /metrics only once a child exists."""
    from prometheus_client.metrics import MetricWrapperBase

    names: set[str] = set()
    for metric in vars(module).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            names.update(metric._name + suffix for suffix in _SUFFIXES.get(metric._type, ("",)))
    return names


def scrape(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode()


# ------------------------------------------------------------------------------------------ Kibana

NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "unsigned_long",
    "scaled_float",
}
# aggregation -> field types it can aggregate
AGG_TYPES = {
    "sum": NUMERIC,
    "avg": NUMERIC,
    "max": NUMERIC | {"date"},
    "min": NUMERIC | {"date"},
    "median": NUMERIC,
    "histogram": NUMERIC,
    "date_histogram": {"date", "date_nanos"},
    "terms": NUMERIC | {"keyword", "ip", "boolean", "date"},
    "cardinality": NUMERIC | {"keyword", "ip", "date"},
    # a field named in a visualisation's KQL query: it must be searchable
    "query": NUMERIC | {"keyword", "ip", "boolean", "date", "date_nanos", "text", "constant_keyword"},
}
_KQL_FIELD = re.compile(r"([A-Za-z@_][\w.@]*)\s*:")


@dataclass(frozen=True)
class FieldUse:
    object_id: str
    data_view: str
    field: str
    aggregation: str


def kibana_objects(directory: Path = KIBANA_DIR) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.ndjson"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _agg_fields(aggs: Iterable[dict]) -> Iterator[tuple[str, str]]:
    for agg in aggs:
        params = agg.get("params", {})
        if params.get("field"):
            yield params["field"], agg["type"]
        for nested in ("customMetric", "customBucket"):
            if isinstance(params.get(nested), dict):
                yield from _agg_fields([params[nested]])


def kibana_field_uses(objects: list[dict]) -> list[FieldUse]:
    """Every field every visualisation aggregates, with the data view it runs on."""
    uses = []
    for obj in objects:
        if obj["type"] != "visualization":
            continue
        refs = {ref["name"]: ref["id"] for ref in obj["references"]}
        view = refs["kibanaSavedObjectMeta.searchSourceJSON.index"]
        state = json.loads(obj["attributes"]["visState"])
        uses += [FieldUse(obj["id"], view, field, agg) for field, agg in _agg_fields(state["aggs"])]
        query = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        uses += [FieldUse(obj["id"], view, field, "query") for field in _KQL_FIELD.findall(query)]
    return uses


class TemplateFields:
    """Field types of the index a name would create, from the composable templates in ``elasticsearch/``."""

    def __init__(self, directory: Path = TEMPLATE_DIR, prefix: str = "flowsink") -> None:
        self.files = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
        self.prefix = prefix

    def index_template_for(self, index: str) -> tuple[str, dict] | None:
        """The matching index template of highest priority, as Elasticsearch picks it."""
        candidates = [
            (body.get("priority", 0), stem, body)
            for stem, body in self.files.items()
            if "index_patterns" in body
            and any(fnmatch.fnmatchcase(index, pattern) for pattern in body["index_patterns"])
        ]
        if not candidates:
            return None
        _, stem, body = max(candidates, key=lambda c: c[0])
        return stem, body

    def mappings(self, index: str) -> tuple[dict[str, dict], list[dict]]:
        """(flattened dotted field -> mapping, dynamic templates in order) for ``index``."""
        found = self.index_template_for(index)
        if found is None:
            return {}, []
        _, body = found
        parts = [self.files[name.removeprefix(self.prefix + "-")] for name in body.get("composed_of", [])]
        parts.append(body)
        fields: dict[str, dict] = {}
        dynamic: list[dict] = []
        for part in parts:
            mapping = part.get("template", {}).get("mappings", {})
            fields.update(_flatten(mapping.get("properties", {})))
            dynamic += [next(iter(entry.values())) for entry in mapping.get("dynamic_templates", [])]
        return fields, dynamic

    def field_type(self, index: str, field: str, json_kind: str = "long") -> tuple[str, dict] | None:
        """(type, mapping) of ``field`` in ``index``: explicit, else the first dynamic template that maps a
        ``json_kind`` value (long, double, string) at that path; None when only default dynamic mapping would."""
        fields, dynamic = self.mappings(index)
        if field in fields:
            return fields[field].get("type", "object"), fields[field]
        leaf = field.rsplit(".", 1)[-1]
        for template in dynamic:
            if _dynamic_matches(template, field, leaf, json_kind):
                mapping = template.get("mapping", {})
                return mapping.get("type", json_kind), mapping
        return None


def _flatten(properties: dict, prefix: str = "") -> dict[str, dict]:
    out = {}
    for name, mapping in properties.items():
        path = prefix + name
        if "properties" in mapping:
            out.update(_flatten(mapping["properties"], path + "."))
        else:
            out[path] = mapping
    return out


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _dynamic_matches(template: dict, path: str, leaf: str, json_kind: str) -> bool:
    checks = [
        ("path_match", path, True),
        ("path_unmatch", path, False),
        ("match", leaf, True),
        ("unmatch", leaf, False),
    ]
    for key, subject, wanted in checks:
        patterns = _as_list(template.get(key))
        if patterns and any(fnmatch.fnmatchcase(subject, p) for p in patterns) != wanted:
            return False
    kinds = _as_list(template.get("match_mapping_type"))
    return not kinds or "*" in kinds or json_kind in kinds


def aggregatable_problem(field_type: str | None, mapping: dict, aggregation: str) -> str | None:
    """None if Elasticsearch can run ``aggregation`` on a field of this type and mapping, else why not."""
    if field_type is None:
        return "not in the index templates"
    if aggregation == "query":
        return None if mapping.get("index", True) else f"{field_type} field that is not indexed"
    if mapping.get("doc_values") is False:
        return f"{field_type} without doc values"
    allowed = AGG_TYPES.get(aggregation)
    if allowed is None:
        return f"aggregation {aggregation} is not known to this check"
    if field_type not in allowed:
        return f"{aggregation} cannot aggregate a {field_type} field"
    return None


def main(argv: list[str]) -> int:
    exposed = set().union(*(exposed_names(scrape(url)) for url in argv)) if argv else set()
    wanted = {name for _, _, expr in grafana_queries() for name in promql_metric_names(expr)}
    wanted |= {name for _, expr in alert_queries() for name in promql_metric_names(expr)}
    missing = sorted(wanted - exposed - {"up"})
    for name in missing:
        print(name)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
