"""Shared fixtures: a real Elasticsearch for the whole session, and private ones for tests that crash it.

The session node comes from ``scripts/elasticsearch.sh`` (Maven Central's integ-test-zip on a local JDK) unless
``ES_URL`` names a cluster to use instead. Tests that kill or stop Elasticsearch must use ``private_es`` so that
they never disturb the shared node other tests index into.

Markers: ``integration`` (real servers, tools or sockets) and ``slow``; ``make test-fast`` runs the rest.
A test that asks for Elasticsearch is marked ``integration`` here, whatever its module says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"
FIXTURES = REPO.parent / "shared" / "fixtures"
# every fixture that brings up or reaches an Elasticsearch (es, private_es, ...) depends on this one
ELASTICSEARCH_FIXTURE = "es_url"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses Elasticsearch ``integration`` before ``-m`` selects (so test-fast skips it)."""
    for item in items:
        if ELASTICSEARCH_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def _run_es_script(action: str, name: str, port: int) -> str:
    env = dict(os.environ, ES_NAME=name, ES_PORT=str(port))
    done = subprocess.run(
        ["bash", str(ES_SCRIPT), action], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/elasticsearch.sh {action} ({name}) failed:\n{done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """URL of the shared Elasticsearch: ``ES_URL`` if set, else a local node started for the session."""
    if os.environ.get("ES_URL"):
        yield os.environ["ES_URL"].rstrip("/")
        return
    status = _run_es_script("status", "main", 9200)
    started_here = not status.startswith("running")
    url = _run_es_script("start", "main", 9200)
    try:
        yield url
    finally:
        if started_here and not os.environ.get("FLOWSINK_KEEP_ES"):
            _run_es_script("stop", "main", 9200)


@pytest.fixture(scope="session")
def es_version(es_url: str, pytestconfig: pytest.Config) -> str:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url)
    nodes = client.nodes.info(node_id="_local")["nodes"]
    version = next(iter(nodes.values()))["version"]
    line = f"[conftest] integration tests use Elasticsearch {version} at {es_url}"
    sys.stderr.write(f"\n{line}\n")
    # Captured stderr shows only on failure; the terminal reporter puts the version in every test log.
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(line)
    return version


@pytest.fixture
def es(es_url: str, es_version: str):
    """An elasticsearch-py client on the shared node."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture
def unique_prefix() -> str:
    """A lower-case prefix for index names, so tests sharing one cluster never see each other's documents."""
    return f"t{uuid.uuid4().hex[:10]}"


def _free_es_port() -> int:
    """An HTTP port in 9210-9299 whose transport port (+100) is free too; several test runs may share a machine."""
    import random
    import socket

    candidates = list(range(9210, 9300))
    random.shuffle(candidates)
    for port in candidates:
        try:
            for p in (port, port + 100):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port for a private Elasticsearch in 9210-9299")


@dataclass
class PrivateElasticsearch:
    """A node of its own, for tests that kill, stop or restart Elasticsearch."""

    name: str
    port: int
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        return _run_es_script("start", self.name, self.port)

    def stop(self) -> None:
        _run_es_script("stop", self.name, self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        _run_es_script("kill", self.name, self.port)


@pytest.fixture
def private_es(es_url: str) -> Iterator[PrivateElasticsearch]:
    """A separate single node (own port, data dir and heap), stopped and wiped after the test."""
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL points at an external cluster; crash tests need a local node they may kill")
    node = PrivateElasticsearch(name=f"private-{uuid.uuid4().hex[:6]}", port=_free_es_port())
    node.start()
    try:
        yield node
    finally:
        node.stop()
        import shutil

        shutil.rmtree(REPO / ".run" / f"es-{node.name}", ignore_errors=True)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/fixtures``: real-device datagrams (see its SOURCES.md)."""
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def flowsink_templates(es, unique_prefix: str) -> Iterator[str]:
    """flowsink's templates installed under ``unique_prefix`` (indices ``<prefix>-flows-*`` ... get its
    mappings); yields the prefix, then deletes the prefix's indices and templates."""
    from flowsink.sinks.elasticsearch.index_templates import (
        TemplateSettings,
        install_templates,
        remove_templates,
    )

    settings = TemplateSettings(name_prefix=unique_prefix, refresh_interval="1s")
    install_templates(es, settings)
    try:
        yield unique_prefix
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_prefix}-*", expand_wildcards="all")
        remove_templates(es, settings)
