"""The Compose stack users deploy, for real: images built here (no registry), `docker compose up` with three
ingest replicas behind nginx, traffic from several exporter hosts, a replica killed, scaling, stop and start,
bad configuration; then nothing of it is left behind.

One bring-up serves every test of the module, in order. The exporters are hosts of the test's own: a network
namespace joined to this machine by a veth pair, with addresses of 198.51.100.0/24 (TEST-NET-2, routed nowhere),
sending to the host's end of the veth on the stack's published UDP ports, as routers send to a Docker host; so
their datagrams cross Docker's port mapping and nginx, and observer.ip must still be the exporter's address.
Host ports are picked free, so the shared Elasticsearch (9200) and a running local stack are left alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "scripts" / "check_accuracy.py"
NET = "198.51.100"
HOST_ADDRESS = f"{NET}.1"
# exporter addresses in the namespace: .11-.13 NetFlow v9, .21-.23 IPFIX, .31-.33 sFlow (the exactness test),
# .41 the kill, .51-.56 after scaling, .61-.63 the stop and start
EXPORTER_ADDRESSES = [f"{NET}.{n}" for n in (*range(11, 14), *range(21, 24), *range(31, 34), 41)]
EXPORTER_ADDRESSES += [f"{NET}.{n}" for n in (*range(51, 57), *range(61, 64))]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def _run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kwargs)


def _wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


# ----------------------------------------------------------------------------------------- exporters


@dataclass
class ExporterHost:
    """A network namespace with the exporter addresses, routed to this machine through a veth pair."""

    namespace: str

    def run(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv], text=True, **kwargs)

    def generate(
        self, protocol: str, port: int, source: str, manifest: Path, *extra: str
    ) -> subprocess.Popen:
        argv = [sys.executable, "-m", "flowsink.cli", "generate", protocol, "--host", HOST_ADDRESS]
        argv += ["--port", str(port), "--source-base", source, "--manifest", str(manifest), "--no-progress"]
        return self.run([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def exporters() -> ExporterHost:
    if os.geteuid() != 0:
        pytest.skip("network namespaces and the Docker engine need root")
    name = f"fsdk{uuid.uuid4().hex[:6]}"
    host_end, ns_end = f"{name}h", f"{name}n"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", name],
        ["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["ip", "-n", name, "link", "set", ns_end, "up"],
        *(
            ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", ns_end]
            for address in EXPORTER_ADDRESSES
        ),
        ["ip", "-n", name, "route", "add", "default", "via", HOST_ADDRESS],
    ]
    try:
        for step in steps:
            done = _run(step)
            assert done.returncode == 0, f"{' '.join(step)}: {done.stderr}"
        yield ExporterHost(name)
    finally:
        _run(["ip", "netns", "del", name])  # takes the veth pair with it


# ----------------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    compose: object  # flowsink.stack.docker.ComposeStack
    env: dict[str, str]  # what `make run` gets: FLOWSINK_STACK_* pointing at this test's stack
    ports: dict[str, int]
    up_output: str
    up_seconds: float
    images: str

    @property
    def es_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ES']}"

    def cli(self, action: str, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
        """``flowsink stack ACTION`` (what make run / make stop run) against this test's stack."""
        env = {**os.environ, **self.env, **extra_env}
        return _run(
            [sys.executable, "-m", "flowsink.cli", "stack", action], timeout=timeout, env=env, cwd=REPO
        )

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        argv = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.compose.project}"]
        argv += ["--filter", f"label=com.docker.compose.service={service}"] + (["-a"] if all_states else [])
        return _run(argv).stdout.split()

    def inspect(self, container: str) -> dict:
        return json.loads(_run(["docker", "inspect", container]).stdout)[0]

    def metrics(self, container: str) -> str:
        probe = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/metrics').read().decode())"
        return _run(["docker", "exec", container, "python", "-c", probe]).stdout

    def slot(self, container: str) -> str:
        """The queue slot the replica's entry point claimed last (its log's last ``queue slot`` line)."""
        logs = _run(["docker", "logs", container]).stderr
        return re.findall(r"entrypoint: queue slot \S+/(slot-\d+)", logs)[-1]

    def count(self, query: dict | None = None) -> int:
        from elasticsearch import Elasticsearch

        es = Elasticsearch(self.es_url, request_timeout=30)
        try:
            es.indices.refresh(index="flowsink-*", ignore_unavailable=True, allow_no_indices=True)
            body = {"query": query} if query else {}
            return es.count(index="flowsink-flows-*", ignore_unavailable=True, allow_no_indices=True, **body)[
                "count"
            ]
        finally:
            es.close()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def stack(tmp_path_factory, exporters: ExporterHost):
    from flowsink.stack import docker as stack_docker
    from support.api import TOKEN

    if not stack_docker.engine_answers():
        pytest.fail("no Docker engine answers: `make test` installs and starts one (scripts/start_docker.sh)")
    tmp = tmp_path_factory.mktemp("docker")
    tcp, udp = socket.SOCK_STREAM, socket.SOCK_DGRAM
    ports = {"HTTP": _free_port(tcp), "ES": _free_port(tcp), "PROMETHEUS": _free_port(tcp)}
    ports |= {"NETFLOW": _free_port(udp), "IPFIX": _free_port(udp), "SFLOW": _free_port(udp)}
    project = f"fst{uuid.uuid4().hex[:8]}"
    env_file = tmp / "stack.env"
    settings = {
        "COMPOSE_PROJECT_NAME": project,
        "ELASTIC_VERSION": "9.3.2",
        "ES_HEAP": "512m",
        "GRAFANA_ADMIN_PASSWORD": "unused-here",
        "FLOWSINK_API_TOKENS": TOKEN,
        "FLOWSINK_QUEUE_MAX_BYTES": "1GiB",
        **{f"FLOWSINK_STACK_{name}_PORT": str(port) for name, port in ports.items()},
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    images = os.environ.get("FLOWSINK_STACK_IMAGES", "local")
    env = {
        "FLOWSINK_STACK_MODE": "docker",
        "FLOWSINK_STACK_ENV_FILE": str(env_file),
        "FLOWSINK_STACK_DIR": str(tmp / "run"),
        "FLOWSINK_STACK_IMAGES": images,
    }
    compose = stack_docker.ComposeStack(REPO, env_file, tmp / "run", images=images, ready_timeout_s=300)
    output = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(output):
            compose.up(3)
        up_seconds = time.monotonic() - started
        sys.stderr.write(f"\n[docker] images built or found and stack up in {up_seconds:.0f} s\n")
        yield Stack(compose, env, ports, output.getvalue(), up_seconds, images)
    finally:
        compose.compose(compose.recorded_images() or images, "down", "-v", "--remove-orphans", capture=True)


# ----------------------------------------------------------------------------------------- the tests


def test_up_prints_where_everything_is(stack: Stack) -> None:
    text = stack.up_output
    assert f"http://127.0.0.1:{stack.ports['HTTP']}/" in text
    assert f"http://127.0.0.1:{stack.ports['ES']}" in text
    assert f"http://127.0.0.1:{stack.ports['PROMETHEUS']}/targets" in text
    assert f"udp://0.0.0.0:{stack.ports['NETFLOW']}, {stack.ports['IPFIX']}, {stack.ports['SFLOW']}" in text
    if stack.images == "local":
        assert "Kibana, Grafana" in text and "not run" in text
    assert len(stack.containers("ingest")) == 3


def _check_accuracy(stack: Stack, manifest: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(CHECK), "--manifest", str(manifest), "--es", stack.es_url, "--timeout", "120"]
    return _run([*argv, "--quiet-period", "3", "--no-progress"], timeout=200)


def test_flows_from_several_exporters_are_exact_and_keep_their_address(
    stack: Stack, exporters: ExporterHost, tmp_path: Path
) -> None:
    """NetFlow v9, IPFIX and sFlow, three exporter hosts each, through Docker's port mapping and nginx: every
    document equals the generators' manifests (check_accuracy keys documents by observer.ip, so the exporter's
    own address is checked with them), and each exporter reached exactly one replica."""
    runs = {
        "v9": (stack.ports["NETFLOW"], f"{NET}.11"),
        "ipfix": (stack.ports["IPFIX"], f"{NET}.21"),
        "sflow": (stack.ports["SFLOW"], f"{NET}.31"),
    }
    extra = ("--exporters", "3", "--count", "3000", "--rate", "1500", "--template-refresh", "2")
    generators = {
        protocol: exporters.generate(protocol, port, source, tmp_path / f"{protocol}.json", *extra)
        for protocol, (port, source) in runs.items()
    }
    for protocol, process in generators.items():
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{protocol} generator: {err}"
    for protocol in runs:
        done = _check_accuracy(stack, tmp_path / f"{protocol}.json")
        assert done.returncode == 0 and "verdict: OK" in done.stdout, (
            f"{protocol}:\n{done.stdout}{done.stderr}"
        )

    received = {c: stack.metrics(c) for c in stack.containers("ingest")}
    used = set()
    for exporter in EXPORTER_ADDRESSES[:9]:
        replicas = [
            c
            for c, text in received.items()
            if _metric(text, "flowsink_datagrams_received_total", exporter=exporter)
        ]
        assert len(replicas) == 1, f"{exporter} reached {len(replicas)} replicas, not one"
        used.update(replicas)
    assert len(used) >= 2, "nine exporters should spread over the replicas"


def test_prometheus_scrapes_every_replica_nginx_elasticsearch_and_node(stack: Stack) -> None:
    import urllib.request

    url = f"http://127.0.0.1:{stack.ports['PROMETHEUS']}/api/v1/targets"

    def all_up():
        with urllib.request.urlopen(url, timeout=10) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        jobs = [t["labels"]["job"] for t in targets]
        healthy = all(t["health"] == "up" for t in targets)
        return targets if healthy and jobs.count("flowsink") == 3 else None

    targets = _wait_for(all_up, 90, "every Prometheus target up", 3)
    assert {t["labels"]["job"] for t in targets} == {
        "flowsink",
        "nginx",
        "node",
        "elasticsearch",
        "prometheus",
    }


def _health(stack: Stack, container: str) -> str | None:
    state = stack.inspect(container)["State"]
    return state.get("Health", {}).get("Status")


def test_health_checks_green_and_a_broken_service_unhealthy(stack: Stack) -> None:
    project = stack.compose.project
    ids = _run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"]
    ).stdout.split()
    checked = {c: stack.inspect(c)["Config"]["Labels"]["com.docker.compose.service"] for c in ids}
    checked = {c: s for c, s in checked.items() if _health(stack, c) is not None}
    assert set(checked.values()) >= {"elasticsearch", "ingest", "nginx", "nginx-watch", "prometheus"}
    _wait_for(lambda: all(_health(stack, c) == "healthy" for c in checked), 90, "every health check green")

    # A service that runs but no longer answers: its process frozen (from the host, outside its namespace).
    victim = stack.containers("elasticsearch-exporter")[0]
    pid = stack.inspect(victim)["State"]["Pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        _wait_for(
            lambda: _health(stack, victim) == "unhealthy", 90, "the frozen exporter to turn unhealthy", 2
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_for(lambda: _health(stack, victim) == "healthy", 60, "the exporter healthy again", 2)


def test_flows_api_through_nginx_is_exact(stack: Stack) -> None:
    """The flows API's exactness check (tests/test_api_exact_sums.py) against the replicas behind nginx."""
    from support.api import ApiClient, expected_sums
    from test_api_exact_sums import HOURS, batches_of, random_rows

    api = ApiClient(stack.ports["HTTP"])
    rows = random_rows(7)[:40_000]

    def send(batch: list[dict]) -> None:
        response = api.post(batch)
        assert response.status == 202, response.data

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, batches_of(rows)))
    expected = expected_sums(rows)
    for hour in range(HOURS):
        assert api.get_hour(hour) == expected.get(hour, []), f"hour {hour} differs"
    assert api.get("hour=1", headers={}).status == 401, "the token from the env file is required"


def send_v9(source: str, host: str, port: int, first: int, count: int, interval_s: float) -> None:
    """Run in the exporter namespace: one flow per datagram, source port = marker, template every 20th;
    prints "marker monotonic-time" per datagram (CLOCK_MONOTONIC is the machine's, namespaces share it)."""
    from test_stack_local import _v9_datagram

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for n in range(count):
            marker = first + n
            sock.sendto(_v9_datagram(n + 1, marker, n % 20 == 0), (host, port))
            print(marker, time.monotonic(), flush=True)
            time.sleep(interval_s)


def _markers(stack: Stack, exporter: str) -> list[int]:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(stack.es_url, request_timeout=30)
    try:
        es.indices.refresh(index="flowsink-flows-*")
        hits = es.search(
            index="flowsink-flows-*",
            query={"term": {"observer.ip": exporter}},
            size=5000,
            source=["source.port"],
        )["hits"]["hits"]
    finally:
        es.close()
    return [hit["_source"]["source"]["port"] for hit in hits]


def test_killing_a_replica_under_traffic(stack: Stack, exporters: ExporterHost) -> None:
    """kill -9 of the replica an exporter hashes to, the exporter sending 20 datagrams/s: nginx-watch marks
    it down, its exporter moves to the next replica until the restart policy brings it back; what it had
    accepted is indexed, nothing is doubled; measures what is lost and when."""
    exporter, port = f"{NET}.41", stack.ports["NETFLOW"]
    here = Path(__file__)
    sender = [sys.executable, str(here), "send-v9", exporter, HOST_ADDRESS, str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])}
    warm = exporters.run([*sender, "1000", "20", "0.01"], stdout=subprocess.PIPE, env=env)
    warm.communicate(timeout=60)
    _wait_for(lambda: len(_markers(stack, exporter)) == 20, 60, "the first 20 flows")
    home = next(
        c
        for c in stack.containers("ingest")
        if _metric(stack.metrics(c), "flowsink_datagrams_received_total", exporter=exporter)
    )
    slot_before = stack.slot(home)
    # FLOWSINK_TEST_KILLS=N repeats the measurement (docs/stack.md quotes such a run); one kill otherwise
    for round_ in range(int(os.environ.get("FLOWSINK_TEST_KILLS", "1"))):
        _kill_and_measure(stack, exporters, home, sender, env, 2000 + 200 * round_)
        assert stack.slot(home) == slot_before, "the restarted replica took another slot"


def _kill_and_measure(
    stack: Stack, exporters: ExporterHost, home: str, sender: list[str], env: dict, first: int
) -> None:
    restarts = stack.inspect(home)["RestartCount"]

    def nothing_down() -> bool:
        lines = _run(["docker", "logs", stack.containers("nginx-watch")[0]]).stderr.splitlines()
        return bool(lines) and lines[-1].endswith("down: none")

    # after an earlier round, the replica must be back in nginx (the exporter on it again) before the next kill
    _wait_for(nothing_down, 60, "nginx-watch to put every replica back", 0.5)
    time.sleep(1)  # nginx's new workers take over after the reload
    traffic = exporters.run([*sender, str(first), "160", "0.05"], stdout=subprocess.PIPE, env=env)
    assert traffic.stdout is not None
    sent_at: dict[int, float] = {}
    killed_at = None
    for line in traffic.stdout:
        marker, at = line.split()
        sent_at[int(marker)] = float(at)
        if len(sent_at) == 20 and killed_at is None:
            # SIGKILL of the node (the container's process 1) from the host: a crash. `docker kill` would be a
            # manual stop, which Docker's restart policy deliberately leaves stopped.
            os.kill(stack.inspect(home)["State"]["Pid"], signal.SIGKILL)
            killed_at = time.monotonic()
    traffic.wait(30)
    assert killed_at is not None

    # The restart policy brings the same container back.
    _wait_for(lambda: stack.inspect(home)["RestartCount"] > restarts, 60, "the restart policy", 1)
    _wait_for(lambda: _health(stack, home) == "healthy", 90, "the restarted replica healthy", 2)

    def settled():
        first_look = _markers(stack, exporter)
        time.sleep(3)
        second = _markers(stack, exporter)
        return second if first_look == second else None

    exporter = sender[3]
    markers = _wait_for(settled, 120, "the exporter's flows to settle", 0)
    assert len(markers) == len(set(markers)), "a flow was indexed twice"
    indexed = set(markers)
    lost = sorted(m for m in sent_at if m not in indexed)
    before_kill = [m for m, at in sent_at.items() if at < killed_at - 0.2]
    assert set(before_kill) <= indexed, "datagrams accepted before the kill were lost"
    after = [sent_at[m] - killed_at for m in lost]
    last_lost_s = max(after, default=0.0)
    watch = _run(["docker", "logs", stack.containers("nginx-watch")[0]]).stderr.splitlines()[-6:]
    timeline = f"lost at (s after the kill): {[round(t, 2) for t in after]}; nginx-watch: {watch}"
    assert last_lost_s < 3.0, f"datagrams still lost {last_lost_s:.1f} s after the kill; {timeline}"
    assert len(lost) < len(sent_at) / 4, timeline
    sys.stderr.write(
        f"\n[docker] replica killed under 20 datagrams/s: {len(lost)} of {len(sent_at) - 20} datagrams sent after "
        f"the kill lost, sent {min(after, default=0):.2f}-{last_lost_s:.2f} s after it; none doubled\n"
    )


def _slot_depth(stack: Stack, slot: str) -> int:
    """Datagrams still queued in a slot, read from the volume by a one-off container of the ingest image."""
    volume = f"{stack.compose.project}_ingest-queues"
    image = stack.inspect(stack.containers("ingest")[0])["Config"]["Image"]
    done = _run(
        ["docker", "run", "--rm", "--entrypoint", "flowsink", "-v", f"{volume}:/var/lib/flowsink", image, "queue",
         f"/var/lib/flowsink/{slot}/queue"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return sum(json.loads(line)["depth_entries"] for line in done.stdout.splitlines())


def test_scaling_down_and_up_keeps_one_slot_per_replica(
    stack: Stack, exporters: ExporterHost, tmp_path: Path
) -> None:
    """--scale ingest=2 then 3: no two replicas share a slot; the removed replica drained its slot on the way
    out and the replica added next takes that slot; traffic is exact afterwards (nginx-watch followed)."""
    images = stack.compose.recorded_images()
    before = {c: stack.slot(c) for c in stack.containers("ingest")}
    assert len(set(before.values())) == 3
    done = stack.compose.compose(images, "up", "-d", "--no-build", "--scale", "ingest=2", capture=True)
    assert done.returncode == 0, done.stderr
    after = {c: stack.slot(c) for c in stack.containers("ingest")}
    assert len(after) == 2 and len(set(after.values())) == 2
    (removed_slot,) = set(before.values()) - set(after.values())
    assert _slot_depth(stack, removed_slot) == 0, "the removed replica left datagrams in its slot"

    done = stack.compose.compose(images, "up", "-d", "--no-build", "--scale", "ingest=3", capture=True)
    assert done.returncode == 0, done.stderr
    _wait_for(
        lambda: all(_health(stack, c) == "healthy" for c in stack.containers("ingest")), 90, "3 healthy"
    )
    again = {c: stack.slot(c) for c in stack.containers("ingest")}
    assert len(set(again.values())) == 3
    (added,) = set(again) - set(after)
    assert again[added] == removed_slot, "the new replica takes the slot the removed one left"

    time.sleep(2)  # nginx-watch checks every 0.5 s and reloads nginx
    generator = exporters.generate(
        "ipfix", stack.ports["IPFIX"], f"{NET}.51", tmp_path / "scaled.json", "--exporters", "6", "--count",
        "1200", "--rate", "1200",
    )  # fmt: skip
    _, err = generator.communicate(timeout=60)
    assert generator.returncode == 0, err
    done = _check_accuracy(stack, tmp_path / "scaled.json")
    assert done.returncode == 0, done.stdout


def test_stop_then_run_loses_nothing(stack: Stack, exporters: ExporterHost, tmp_path: Path) -> None:
    """`make stop` (containers removed, volumes kept) then `make run`: every document indexed before is still
    there once, and what was queued at the stop is indexed."""
    before = stack.count()
    generator = exporters.generate(
        "ipfix", stack.ports["IPFIX"], f"{NET}.61", tmp_path / "burst.json", "--exporters", "3", "--count",
        "6000", "--rate", "6000",
    )  # fmt: skip
    _, err = generator.communicate(timeout=60)
    assert generator.returncode == 0, err
    done = stack.cli("down", 180)
    assert done.returncode == 0, done.stderr
    assert stack.containers("ingest", all_states=True) == []
    done = stack.cli("up", 600)
    assert done.returncode == 0, done.stderr
    done = _check_accuracy(stack, tmp_path / "burst.json")
    assert done.returncode == 0, done.stdout
    assert stack.count() == before + 6000


def test_bad_configuration_gives_one_clear_message(stack: Stack, tmp_path: Path) -> None:
    """What `make run` says, with a non-zero exit and no hang: a missing FLOWSINK_API_TOKENS and a port already
    taken (checked before anything starts), an unreachable Elasticsearch (the replicas never become ready)."""
    settings = Path(stack.env["FLOWSINK_STACK_ENV_FILE"]).read_text()
    no_tokens = tmp_path / "no-tokens.env"
    no_tokens.write_text(
        "".join(line + "\n" for line in settings.splitlines() if not line.startswith("FLOWSINK_API_TOKENS"))
    )
    other_project = {"COMPOSE_PROJECT_NAME": f"fsbad{uuid.uuid4().hex[:6]}"}
    done = stack.cli("up", 60, FLOWSINK_STACK_ENV_FILE=str(no_tokens), **other_project)
    assert done.returncode != 0
    assert "error: FLOWSINK_API_TOKENS is not set" in done.stderr, done.stderr
    assert done.stderr.count("error:") == 1

    with socket.socket() as taken:
        port = _free_port(socket.SOCK_STREAM)
        taken.bind(("0.0.0.0", port))
        taken.listen()
        done = stack.cli("up", 60, FLOWSINK_STACK_HTTP_PORT=str(port), **other_project)
    assert done.returncode != 0
    assert f"TCP port {port} is already in use" in done.stderr, done.stderr
    leftover = _run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={other_project['COMPOSE_PROJECT_NAME']}",
        ]
    )
    assert leftover.stdout.split() == [], "a refused start must create nothing"

    # On the running stack: the replicas are recreated pointing nowhere, cannot start, and `up` stops the stack.
    started = time.monotonic()
    done = stack.cli(
        "up", 300, FLOWSINK_ELASTICSEARCH_URL="http://127.0.0.1:9", FLOWSINK_STACK_READY_TIMEOUT="30"
    )
    assert done.returncode != 0
    assert "cannot reach Elasticsearch at http://127.0.0.1:9" in done.stderr, done.stderr
    assert time.monotonic() - started < 240


def test_down_leaves_nothing_behind(stack: Stack) -> None:
    images = stack.compose.recorded_images()
    assert stack.cli("down", 180).returncode == 0
    # the test's own volumes too (make stop keeps them)
    stack.compose.compose(images or "local", "down", "-v", "--remove-orphans", capture=True)
    label = f"label=com.docker.compose.project={stack.compose.project}"
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        assert _run(["docker", *kind, "--filter", label]).stdout.split() == [], f"docker {kind[0]} left over"


if __name__ == "__main__" and sys.argv[1:2] == ["send-v9"]:
    source, host, port, first, count, interval = sys.argv[2:8]
    send_v9(source, host, int(port), int(first), int(count), float(interval))
