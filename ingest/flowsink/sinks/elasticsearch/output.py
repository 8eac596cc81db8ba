"""The Elasticsearch output as the node runs it: the start-up check (reach the cluster, install the index
templates) and the sink each pipeline worker builds from the ``elasticsearch`` section, with its metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flowsink import metrics
from flowsink.log import get_logger
from flowsink.sinks.base import OutputContext, SinkOutcome
from flowsink.sinks.elasticsearch.client import connect, wait_for_elasticsearch
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates
from flowsink.sinks.elasticsearch.settings import ElasticsearchSettings
from flowsink.sinks.elasticsearch.sink import ElasticsearchSink

log = get_logger(__name__)


def for_context(settings: ElasticsearchSettings, context: OutputContext) -> ElasticsearchSettings:
    """The section with what the node decides filled in: the bulk operation and the dead-letter file."""
    return dataclasses.replace(
        settings,
        op_type="create" if context.deterministic_ids else "index",
        dead_letter_path=settings.dead_letter_path or str(Path(context.run_dir) / "dead-letter.jsonl"),
    )


def template_settings(settings: ElasticsearchSettings) -> TemplateSettings:
    """What the template installer takes from the section."""
    templates = TemplateSettings(
        name_prefix=settings.index_prefix,
        api_prefix=settings.api_index_prefix,
        shards=settings.number_of_shards,
        replicas=settings.number_of_replicas,
        document_profile=settings.document_profile,
        connect_timeout_s=settings.startup_timeout_s,
    )
    if settings.template_dir:
        templates.template_dir = Path(settings.template_dir)
    return templates


def prepare(settings: ElasticsearchSettings, context: OutputContext) -> str:
    """Once per node, before its workers start: wait for the cluster and install the templates.

    Raises ``UserError`` naming the URL and the reason when the cluster does not answer in time."""
    client = connect(settings)
    try:
        if not settings.install_templates:
            wait_for_elasticsearch(client, settings.startup_timeout_s)
            return "reached (templates not installed: elasticsearch.install_templates is off)"
        for line in install_templates(client, template_settings(settings)):
            log.debug("template %s", line)
        return "reached, templates installed"
    finally:
        client.close()


def observe_request(seconds: float, documents: int, nbytes: int, result: str) -> None:
    """Each bulk request: latency histogram, request results, Elasticsearch reachability."""
    metrics.BULK_REQUEST_DURATION.observe(seconds)
    metrics.BULK_REQUESTS.labels(result=result).inc()
    metrics.ELASTICSEARCH_UP.set(0 if result == "failed" else 1)


def count_outcome(outcome: SinkOutcome) -> None:
    if outcome.written:
        metrics.DOCUMENTS_INDEXED.inc(outcome.written)
    if outcome.already_present:
        metrics.DOCUMENTS_DUPLICATE.inc(outcome.already_present)
    if outcome.retries:
        metrics.BULK_RETRIES.inc(outcome.retries)
    for reason, count in outcome.dead_letter_reasons.items():
        metrics.DOCUMENTS_DEAD_LETTERED.labels(reason=reason).inc(count)


def build(settings: ElasticsearchSettings, context: OutputContext) -> ElasticsearchSink:
    """The sink of one pipeline worker."""
    return ElasticsearchSink(
        for_context(settings, context), observer=observe_request, on_outcome=count_outcome
    )
