"""`flowsink run` refuses to start on bad input with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import yaml

from support.node import free_port


def run_node(tmp_path, config: dict, timeout_s: float = 60) -> subprocess.CompletedProcess:
    path = tmp_path / "flowsink.yml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSINK_")}
    return subprocess.run(
        [sys.executable, "-m", "flowsink.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )


def base_config(tmp_path, es_url: str = "http://127.0.0.1:9200") -> dict:
    return {
        "node": {"run_dir": str(tmp_path / "run")},
        "elasticsearch": {"url": es_url, "startup_timeout_s": 2, "index_prefix": "tstartup"},
        "receive": {"host": "127.0.0.1", "ports": [free_port(socket.SOCK_DGRAM)], "processes": 1},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("flowsink: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_bad_value_names_key_and_value(tmp_path):
    config = base_config(tmp_path)
    config["queue"] = {"max_bytes": "a lot"}
    line = one_error_line(run_node(tmp_path, config))
    assert line == "flowsink: error: queue.max_bytes: expected an integer, got 'a lot'"


def test_unknown_key_is_rejected(tmp_path):
    config = base_config(tmp_path)
    config["pipeline"] = {"batch_size": 10}
    assert "pipeline.batch_size: unknown key" in one_error_line(run_node(tmp_path, config))


def test_unreachable_elasticsearch_exits_2(tmp_path):
    config = base_config(tmp_path, es_url=f"http://127.0.0.1:{free_port()}")
    line = one_error_line(run_node(tmp_path, config))
    assert "cannot reach Elasticsearch at http://127.0.0.1:" in line


@pytest.mark.integration
def test_malformed_template_file_exits_2(tmp_path, es_url):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "flows.json").write_text('{"index_patterns": ["flowsink-flows-*"], "template": ')
    config = base_config(tmp_path, es_url)
    config["elasticsearch"]["template_dir"] = str(templates)
    line = one_error_line(run_node(tmp_path, config))
    assert "flows.json" in line


def test_http_port_in_use_exits_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = base_config(tmp_path)
        config["http"]["port"] = busy.getsockname()[1]
        line = one_error_line(run_node(tmp_path, config))
    assert f"http.port: cannot listen on 127.0.0.1:{config['http']['port']}" in line
