"""The integration tests run against a real Elasticsearch process, index into it and read back, and say which."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"

pytestmark = pytest.mark.integration


def test_index_and_read_back_from_the_real_node(es, es_version, unique_prefix):
    assert re.fullmatch(r"9\.\d+\.\d+", es_version), es_version
    index = f"{unique_prefix}-readback"
    try:
        es.index(index=index, id="1", document={"source": {"ip": "192.0.2.7"}, "note": "written by a test"})
        assert es.get(index=index, id="1")["_source"]["note"] == "written by a test"
        es.indices.refresh(index=index)
        hits = es.search(index=index, query={"match": {"note": "test"}})["hits"]
        assert hits["total"]["value"] == 1
    finally:
        es.options(ignore_status=404).indices.delete(index=index)


def test_session_node_is_a_live_local_process(es, es_url):
    """Not a stand-in: the node reports a JVM process that exists on this machine (unless ES_URL is external)."""
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL names an external cluster")
    status = subprocess.run(["bash", str(ES_SCRIPT), "status"], capture_output=True, text=True, check=True)
    # "stopped" only when another checkout's script started the shared node (the pid file lives in its .run/);
    # the process check below holds either way.
    assert status.stdout.strip() in (f"running {es_url}", "stopped")
    node = next(iter(es.nodes.info(node_id="_local", metric="process,jvm")["nodes"].values()))
    os.kill(node["process"]["id"], 0)  # raises if there is no such process here
    assert node["jvm"]["version"]


def test_version_is_printed_in_the_test_log(es_url):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{Path(__file__).name}::test_index_and_read_back_from_the_real_node",
        ],
        cwd=REPO / "tests",
        env=dict(os.environ, ES_URL=es_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"integration tests use Elasticsearch 9\.\d+\.\d+ at " + re.escape(es_url), done.stdout)


def test_script_usage_and_status_of_an_unknown_instance():
    env = dict(os.environ, ES_NAME="never-started", ES_PORT="9299")
    status = subprocess.run(
        ["bash", str(ES_SCRIPT), "status"], env=env, capture_output=True, text=True, check=False
    )
    assert (status.returncode, status.stdout.strip()) == (0, "stopped")
    usage = subprocess.run(["bash", str(ES_SCRIPT), "bogus"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
