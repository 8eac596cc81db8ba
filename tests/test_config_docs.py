"""docs/operations.md and the example configuration stay in step with the code."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

import flowsink.metrics as metrics
from flowsink.config import describe, load_config

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
EXAMPLE = REPO / "ingest" / "flowsink" / "data" / "flowsink.example.yml"


def test_every_config_key_is_documented_with_its_env_variable():
    missing = [env for _key, env, *_ in describe() if f"`{env}`" not in OPERATIONS]
    assert not missing, f"docs/operations.md lacks {missing}"


def test_every_node_metric_is_documented():
    names = []
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            names.append(value._name + ("_total" if isinstance(value, Counter) else ""))
    # the flows API documents its own metrics in docs/flows-api.md
    missing = [n for n in names if f"`{n}`" not in OPERATIONS and not n.startswith("flowsink_api_")]
    assert not missing, f"docs/operations.md lacks {missing}"


def test_example_configuration_is_valid():
    config = load_config(EXAMPLE, env={})
    assert config.node.run_dir == "/var/lib/flowsink"
    assert config.elasticsearch.bulk_max_bytes == 10 * 1024 * 1024
