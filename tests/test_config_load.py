"""Configuration: YAML + environment overrides, validation messages naming key and value, check-config CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowsink.config import Config, describe, env_overrides, load_config, reloadable_changes
from flowsink.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flowsink.yml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    config = load_config(None, env={})
    assert config.http.port == 8080
    assert config.receive.ports == [2055, 4739, 6343]
    assert config.pipeline.deterministic_ids is True
    assert config.elasticsearch.url == ["http://127.0.0.1:9200"]
    assert config.queue_dir == Path(".run/node/queue")


def test_file_values_and_size_suffixes(tmp_path):
    path = write(
        tmp_path,
        "receive:\n  ports: [12055, 14739]\nqueue:\n  max_bytes: 2GiB\n  segment_bytes: 16m\n"
        "elasticsearch:\n  url: http://es:9200\nlogging:\n  level: debug\n",
    )
    config = load_config(path, env={})
    assert config.receive.ports == [12055, 14739]
    assert config.queue.max_bytes == 2 * 1024**3
    assert config.queue.segment_bytes == 16 * 1024**2
    assert config.elasticsearch.url == ["http://es:9200"]
    assert config.logging.level == "DEBUG"


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, "http:\n  port: 9000\n")
    env = {
        "FLOWSINK_HTTP_PORT": "18080",
        "FLOWSINK_RECEIVE_PORTS": "20550,47390",
        "FLOWSINK_ELASTICSEARCH_URL": "http://a:9200, http://b:9200",
        "FLOWSINK_PIPELINE_DETERMINISTIC_IDS": "off",
        "FLOWSINK_RUN_DIR": "/ignored/not/a/section",
    }
    config = load_config(path, env=env)
    assert config.http.port == 18080
    assert config.receive.ports == [20550, 47390]
    assert config.elasticsearch.url == ["http://a:9200", "http://b:9200"]
    assert config.pipeline.deterministic_ids is False


def test_env_overrides_match_longest_section():
    assert env_overrides({"FLOWSINK_QUEUE_MAX_BYTES": "1"}) == {"queue": {"max_bytes": "1"}}


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("http:\n  port: eighty\n", {}, "http.port: expected an integer, got 'eighty'"),
        ("http:\n  port: 70000\n", {}, "http.port: must be <= 65535, got 70000"),
        ("http:\n  prot: 1\n", {}, "http.prot: unknown key"),
        ("htp:\n  port: 1\n", {}, "htp: unknown section"),
        ("logging:\n  format: xml\n", {}, "logging.format: must be one of text, json, got 'xml'"),
        ("pipeline:\n  deterministic_ids: maybe\n", {}, "pipeline.deterministic_ids: expected true or false"),
        ("receive:\n  ports: [2055, 0]\n", {}, "receive.ports: must be >= 1, got 0"),
        ("receive:\n  ports: [1, 1]\n", {}, "receive.ports: a port is listed twice"),
        (
            "elasticsearch:\n  url: es:9200\n",
            {},
            "elasticsearch.url: expected http:// or https:// URLs, got 'es:9200'",
        ),
        (
            "elasticsearch:\n  index_prefix: Flows\n",
            {},
            "elasticsearch.index_prefix: must be a non-empty lower-case",
        ),
        ("queue:\n  max_bytes: 2m\n  segment_bytes: 4m\n", {}, "queue.segment_bytes: must not exceed"),
        ("", {"FLOWSINK_QUEUE_MAX_BYTES": "lots"}, "queue.max_bytes: expected an integer, got 'lots'"),
        ("", {"FLOWSINK_HTTP_PROT": "1"}, "FLOWSINK_HTTP_PROT: unknown key http.prot"),
        ("[1, 2]\n", {}, "expected a mapping of sections"),
        ("http: [\n", {}, "not valid YAML at line"),
    ],
)
def test_validation_names_key_and_value(tmp_path, text, env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env)
    assert message in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.yml", env={})


def test_reloadable_changes_split_live_and_restart():
    old = Config()
    new = load_config(
        None,
        env={
            "FLOWSINK_LOGGING_LEVEL": "DEBUG",
            "FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS": "10",
            "FLOWSINK_HTTP_PORT": "1",
        },
    )
    apply, restart = reloadable_changes(old, new)
    assert apply == {"logging.level": "DEBUG", "pipeline.batch_max_datagrams": 10}
    assert restart == ["http.port"]


def test_describe_lists_every_section():
    sections = {row[0].split(".")[0] for row in describe()}
    assert {"elasticsearch", "receive", "queue", "decode", "pipeline", "http", "api", "logging"} <= sections


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowsink.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_check_config_prints_effective_settings(tmp_path):
    import os

    path = write(tmp_path, "elasticsearch:\n  password: hunter2\n")
    done = run_cli("check-config", str(path), env=dict(os.environ, FLOWSINK_HTTP_PORT="18081"))
    assert done.returncode == 0, done.stderr
    assert "port: 18081" in done.stdout
    assert "hunter2" not in done.stdout and "'***'" in done.stdout


def test_check_config_bad_value_is_one_line_exit_2(tmp_path):
    done = run_cli("check-config", str(write(tmp_path, "queue:\n  fsync_interval_ms: -5\n")))
    assert done.returncode == 2
    assert done.stderr.strip() == "flowsink: error: queue.fsync_interval_ms: must be >= 0, got -5"
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_check_config_reaches_elasticsearch(tmp_path, es_url):
    done = run_cli("check-config", "--check-es", str(write(tmp_path, f"elasticsearch:\n  url: {es_url}\n")))
    assert done.returncode == 0, done.stderr
    assert "elasticsearch: reachable" in done.stdout


@pytest.mark.integration
def test_check_config_unreachable_elasticsearch_exit_2(tmp_path):
    path = write(tmp_path, "elasticsearch:\n  url: http://127.0.0.1:9\n  request_timeout_s: 2\n")
    done = run_cli("check-config", "--check-es", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "flowsink: error: elasticsearch.url: cannot reach Elasticsearch"
    )


def test_reading_the_configuration_leaves_the_metrics_alone():
    """`flowsink run` sets PROMETHEUS_MULTIPROC_DIR after reading its configuration, and prometheus_client picks
    its multiprocess mode when first imported: the configuration (and every settings module it composes) must
    import neither, or the node's own counters would never reach /metrics."""
    import subprocess
    import sys

    probe = (
        "import sys, flowsink.config, flowsink.node; "
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client') or m == 'flowsink.metrics'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
