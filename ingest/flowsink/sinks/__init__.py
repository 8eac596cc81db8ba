"""Outputs of the pipeline: the sink seam (``base.py``) and the outputs a configuration can select.

``output: elasticsearch`` (the default), ``output: file``, or a list of them (``output: [elasticsearch, file]``:
every document goes to each, and a datagram is acknowledged once every output has it). Each output owns its
configuration section (named like the output) and exposes, in its module::

    prepare(settings, context) -> str     # once per node before the workers start (reach it, install
                                          # templates...); raises UserError with one line naming the problem
    build(settings, context) -> Sink      # in each pipeline worker

A new output is a module with those two functions, a settings dataclass, and one line in ``OUTPUTS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowsink.sinks.base import OutputContext, Sink, SinkClosed, SinkOutcome


@dataclass(frozen=True)
class OutputKind:
    name: str  # the value in `output:` and the name of its configuration section
    module: str  # has prepare(settings, context) and build(settings, context)
    settings: str  # "module:Class" of its section's settings


OUTPUTS: dict[str, OutputKind] = {
    kind.name: kind
    for kind in (
        OutputKind(
            "elasticsearch",
            "flowsink.sinks.elasticsearch.output",
            "flowsink.sinks.elasticsearch.settings:ElasticsearchSettings",
        ),
        OutputKind("file", "flowsink.sinks.file", "flowsink.sinks.file:FileSettings"),
    )
}


def settings_class(name: str) -> type:
    module, cls = OUTPUTS[name].settings.split(":")
    return getattr(importlib.import_module(module), cls)


def prepare_outputs(
    names: Sequence[str], sections: Mapping[str, Any], context: OutputContext
) -> dict[str, str]:
    """Run each selected output's start-up check; returns what each said. Raises UserError on the first failure."""
    return {
        name: importlib.import_module(OUTPUTS[name].module).prepare(sections[name], context) for name in names
    }


def build_sink(names: Sequence[str], sections: Mapping[str, Any], context: OutputContext) -> Sink:
    """The sink of one pipeline worker: the selected output, or a fan-out over several."""
    sinks = [importlib.import_module(OUTPUTS[name].module).build(sections[name], context) for name in names]
    if len(sinks) == 1:
        return sinks[0]
    from flowsink.sinks.fanout import FanoutSink

    return FanoutSink(sinks)


__all__ = [
    "OUTPUTS",
    "OutputContext",
    "OutputKind",
    "Sink",
    "SinkClosed",
    "SinkOutcome",
    "build_sink",
    "prepare_outputs",
    "settings_class",
]
