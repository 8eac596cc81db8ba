"""The stack's files are valid and agree with each other: Compose, nginx, Prometheus, Grafana, Kibana.

Real tools where they exist (docker-compose's own validator, nginx -t, promtool: those tests are marked
``integration``, so ``make test-fast`` needs none of them); the dashboards are checked against what they query:
Grafana's and the alerts' metric names against flowsink.metrics (the live endpoints are checked in
test_stack_local.py), Kibana's fields against the index templates in elasticsearch/.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowsink import assets
from flowsink.stack import checks as stack_checks
from flowsink.stack import entrypoint as stack_entrypoint
from flowsink.stack import kibana as stack_kibana
from flowsink.stack import local as stack_local
from flowsink.stack import nginx as stack_nginx

REPO = Path(__file__).resolve().parent.parent

COMPOSE = REPO / "docker-compose.yml"


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, **kwargs)


# ------------------------------------------------------------------------------------------ Compose


@pytest.fixture(scope="module")
def compose_config() -> dict:
    """The Compose file as docker-compose resolves it (interpolated with .env.example), after validation."""
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed (scripts/install_system_deps.sh installs it)")
    done = _run(["docker-compose", "--env-file", str(REPO / ".env.example"), "-f", str(COMPOSE), "config"])
    assert done.returncode == 0, f"docker-compose config rejects docker-compose.yml:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


@pytest.mark.integration
def test_compose_file_is_valid_and_complete(compose_config: dict) -> None:
    services = compose_config["services"]
    wanted = {
        "elasticsearch",
        "kibana",
        "kibana-setup",
        "ingest",
        "nginx",
        "nginx-watch",
        "nginx-exporter",
        "elasticsearch-exporter",
        "node-exporter",
        "prometheus",
        "grafana",
    }
    assert wanted <= set(services), f"missing services: {wanted - set(services)}"
    assert services["elasticsearch"]["image"].endswith(":9.3.2")
    assert services["kibana"]["image"].endswith(":9.3.2")
    for name, service in services.items():
        if name not in {"kibana-setup", "nginx-exporter"}:
            assert "healthcheck" in service, f"{name} has no health check"
    assert set(compose_config["volumes"]) >= {"es-data", "ingest-queues", "nginx-config"}


def _unordered(service: dict) -> dict:
    return {key: sorted(map(str, v)) if key == "volumes" else v for key, v in service.items()}


@pytest.mark.integration
def test_local_override_swaps_image_names_only(compose_config: dict) -> None:
    """docker-compose.local.yml: every service the same but for its image (flowsink-local/...); the ones with
    no artifact in a reachable registry (Kibana, kibana-setup, Grafana) only moved to the profile "registry"."""
    done = _run(
        ["docker-compose", "--env-file", str(REPO / ".env.example"), "-f", str(COMPOSE), "-f",
         str(REPO / "docker-compose.local.yml"), "config"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    local = yaml.safe_load(done.stdout)
    from flowsink.stack.images import NOT_BUILT, SERVICE_IMAGES

    assert set(local["services"]) == set(compose_config["services"])
    for name, service in local["services"].items():
        base = dict(compose_config["services"][name])
        if name in NOT_BUILT:
            assert service.pop("profiles") == ["registry"], f"{name} must be left out (profile registry)"
        else:
            assert service.pop("image").startswith("flowsink-local/"), name
            base.pop("image")
        # Compose merges list entries (volumes) in its own order; the entries, not their order, matter
        assert _unordered(service) == _unordered(base), f"{name}: the override changes more than the image"
    built = set(local["services"]) - set(NOT_BUILT) - {"nginx-watch"}  # nginx-watch runs the ingest image
    assert built == set(SERVICE_IMAGES), "an image is built for every service the override runs"


@pytest.mark.integration
def test_compose_ingest_scales(compose_config: dict) -> None:
    """`--scale ingest=N` needs no fixed container name and no host port on the ingest service."""
    ingest = compose_config["services"]["ingest"]
    assert "container_name" not in ingest and "ports" not in ingest
    assert any(
        str(v).startswith("ingest-queues:") or (isinstance(v, dict) and v.get("source") == "ingest-queues")
        for v in ingest["volumes"]
    )
    assert "NET_ADMIN" in compose_config["services"]["nginx"]["cap_add"]


@pytest.mark.integration
def test_compose_holds_no_secrets() -> None:
    """Passwords and tokens come from .env (``${VAR:?...}``), never as literals in the file."""
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        key, _, value = line.partition(":")
        if any(word in key.lower() for word in ("password", "token", "secret", "api_key")):
            assert value.strip().startswith("${") and ":?" in value, (
                f"literal secret in docker-compose.yml: {line}"
            )
    scale_three = _run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], env={"PATH": os.environ["PATH"]}, cwd="/"
    )
    assert scale_three.returncode != 0 and "set " in scale_three.stderr, (
        "secrets must be required, not defaulted"
    )


def test_entrypoint_gives_each_replica_its_own_queue_slot(tmp_path: Path) -> None:
    first_fd, first = stack_entrypoint.claim_slot(tmp_path)
    second_fd, second = stack_entrypoint.claim_slot(tmp_path)
    assert first != second
    os.close(first_fd)  # a replica died: the next one takes over its slot (and its queue)
    third_fd, third = stack_entrypoint.claim_slot(tmp_path)
    assert third == first
    for fd in (second_fd, third_fd):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_a_restarted_replica_takes_its_own_slot_back(tmp_path: Path) -> None:
    """The same container (same host name) restarted takes the slot it had, even with a lower one free; a new
    replica takes the lowest free slot, so a slot a removed replica left is used next."""
    fds = {}
    for name in ("a", "b", "c"):
        fds[name], _ = stack_entrypoint.claim_slot(tmp_path, name)
    os.close(fds.pop("a"))  # a removed by a scale-down: slot-0 free
    os.close(fds.pop("c"))  # c killed
    fd, slot = stack_entrypoint.claim_slot(tmp_path, "c")
    assert slot.name == "slot-2", "the restarted replica's own queue and template cache"
    fds["c"] = fd
    fd, slot = stack_entrypoint.claim_slot(tmp_path, "d")
    assert slot.name == "slot-0", "a new replica takes the slot the removed one left"
    fds["d"] = fd
    for fd in fds.values():
        os.close(fd)


@pytest.mark.parametrize(
    "command",
    [["flowsink", "stack", "entrypoint", "--"], [sys.executable, "-m", "flowsink.stack.entrypoint"]],
)
def test_entrypoint_runs_the_command_in_its_slot(tmp_path: Path, command: list[str]) -> None:
    """The image's entry point, as the package runs it: the command gets the slot as its run folder."""
    show = [
        sys.executable,
        "-c",
        "import os; print(os.environ['FLOWSINK_NODE_RUN_DIR'], os.environ['FLOWSINK_NODE_NAME'])",
    ]
    if command[0] == "flowsink":
        command = [sys.executable, "-m", "flowsink.cli", *command[1:]]
    done = _run([*command, *show], env={**os.environ, "FLOWSINK_STATE_ROOT": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    run_dir, name = done.stdout.split()
    assert run_dir == str(tmp_path / "slot-0") and name.endswith("-slot-0")
    assert f"queue slot {tmp_path / 'slot-0'}" in done.stderr


def test_stack_mode_is_forced_then_recorded(tmp_path: Path, monkeypatch) -> None:
    """`down` ends what `up` started: the mode written in the run folder wins over what the machine offers."""
    from flowsink.stack import StackError
    from flowsink.stack.cli import choose_mode

    monkeypatch.setenv("FLOWSINK_STACK_MODE", "local")
    (tmp_path / "mode").write_text("docker\n")
    assert choose_mode(tmp_path) == "local"
    monkeypatch.delenv("FLOWSINK_STACK_MODE")
    assert choose_mode(tmp_path) == "docker"
    monkeypatch.setenv("FLOWSINK_STACK_MODE", "kubernetes")
    with pytest.raises(StackError, match="FLOWSINK_STACK_MODE='kubernetes'"):
        choose_mode(tmp_path)


# ------------------------------------------------------------------------------------------ nginx


def test_docker_nginx_config_lists_every_replica_address() -> None:
    """One server line per replica address (a single service name would turn the consistent hash into
    round-robin), with replicas marked down kept on the ring."""
    text = stack_nginx.render(
        stack_nginx.docker_settings(["172.18.0.5", "172.18.0.7"], frozenset({"172.18.0.7"}))
    )
    for port in (2055, 4739, 6343, 8080):
        assert f"server 172.18.0.5:{port}" in text
        assert f"server 172.18.0.7:{port} down" in text
    assert "include /etc/nginx/modules-enabled/*.conf;" in text
    assert "ingest:" not in text


def test_docker_watch_marks_down_forgets_removed_and_adds_new_replicas() -> None:
    from flowsink.stack.docker_watch import ReplicaSet

    replicas = ReplicaSet(misses_to_fail=2, forget_after_s=10)
    replicas.update({"10.0.0.2", "10.0.0.10"}, {"10.0.0.2": "ready", "10.0.0.10": "ready"}, now=0)
    assert replicas.ring == ["10.0.0.2", "10.0.0.10"] and not replicas.down
    replicas.update({"10.0.0.10"}, {"10.0.0.10": "alive"}, now=1)  # .2 killed; .10 answers, not ready: stays
    assert not replicas.down, "one miss is not enough"
    replicas.update({"10.0.0.10", "10.0.0.3"}, {"10.0.0.10": "ready", "10.0.0.3": "alive"}, now=2)
    assert replicas.down == {"10.0.0.2"} and replicas.ring == ["10.0.0.2", "10.0.0.10"], ".3 joins when ready"
    replicas.update({"10.0.0.2", "10.0.0.10"}, {"10.0.0.2": "alive", "10.0.0.10": "ready"}, now=2.5)
    assert replicas.down == {"10.0.0.2"}, "back only when ready (its receivers bound)"
    everyone = {"10.0.0.2", "10.0.0.10", "10.0.0.3"}
    replicas.update(everyone, dict.fromkeys(everyone, "ready"), now=3)
    assert not replicas.down and replicas.ring == ["10.0.0.2", "10.0.0.3", "10.0.0.10"]
    replicas.update({"10.0.0.2", "10.0.0.10"}, {"10.0.0.2": "ready", "10.0.0.10": "ready"}, now=20)
    assert replicas.ring == ["10.0.0.2", "10.0.0.10"], ".3 scaled away: off the ring"
    replicas.update(set(), {}, now=21)
    replicas.update(set(), {}, now=22)
    assert not replicas.down, "with every replica gone none is marked down"


@pytest.mark.integration
def test_local_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    layout = stack_local.StackLayout(run_dir=tmp_path, nodes=3)
    configs = stack_local.write_configs(layout)
    text = configs["nginx"].read_text()
    for port in (2055, 4739, 6343):
        block = text[text.index(f"upstream flowsink_udp_{port}") :]
        block = block[: block.index("proxy_bind")]
        assert "hash $remote_addr consistent;" in block
        assert f"listen {port} udp reuseport;" in block and "proxy_responses 0;" in block
        assert block.count("server 127.0.1.") == 3
    assert text.count("proxy_bind $remote_addr transparent;") == 3
    assert "stub_status;" in text
    done = _run(["nginx", "-t", "-c", str(configs["nginx"]), "-p", str(tmp_path / "nginx")])
    assert done.returncode == 0, done.stderr


def test_node_configs_pass_the_nodes_own_validation(tmp_path: Path) -> None:
    from flowsink.config import load_config

    layout = stack_local.StackLayout(run_dir=tmp_path, nodes=3, port_offset=7)
    configs = stack_local.write_configs(layout)
    ports_seen: set[int] = set()
    for i in range(3):
        config = load_config(configs[f"node{i}"], env={})
        assert config.receive.ports == layout.node_udp_ports(i)
        assert config.http.port == layout.node_http_port(i)
        assert config.api.tokens == [stack_local.api_token(layout)]
        ports_seen |= {*config.receive.ports, config.http.port}
    assert len(ports_seen) == 3 * 4, "two nodes share a port"


# ------------------------------------------------------------------------------------------ Prometheus


@pytest.mark.integration
def test_prometheus_config_and_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rules = _run(["promtool", "check", "rules", str(stack_checks.ALERTS)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The Compose file mounts the rules at /etc/prometheus; point a copy at the repo's file.
    compose_variant = yaml.safe_load(assets.path("monitoring", "prometheus.yml").read_text())
    compose_variant["rule_files"] = [str(stack_checks.ALERTS)]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose_variant))
    local_variant = stack_local.local_prometheus_config(stack_local.StackLayout(run_dir=tmp_path))
    (tmp_path / "local.yml").write_text(yaml.safe_dump(local_variant))
    for name in ("compose.yml", "local.yml"):
        done = _run(["promtool", "check", "config", str(tmp_path / name)])
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    jobs = {job["job_name"] for job in local_variant["scrape_configs"]}
    assert jobs == {"flowsink", "nginx", "node", "elasticsearch", "prometheus"}


def test_promql_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, instance) (rate(flowsink_bulk_request_duration_seconds_bucket"
        '{instance=~"$instance"}[5m]))) / on(instance) group_left flowsink_x > 0 and up{job="a"} == 0'
    )
    assert stack_checks.promql_metric_names(expr) == {
        "flowsink_bulk_request_duration_seconds_bucket",
        "flowsink_x",
        "up",
    }


def test_every_flowsink_metric_in_dashboards_and_alerts_is_defined() -> None:
    """Grafana panels and alert rules only query flowsink metrics that flowsink.metrics defines."""
    import prometheus_client

    import flowsink.metrics  # noqa: F401  (registers every metric)

    defined = stack_checks.registry_names(prometheus_client.REGISTRY)
    queries = [(f"{board} / {title}", expr) for board, title, expr in stack_checks.grafana_queries()]
    queries += list(stack_checks.alert_queries())
    assert len(queries) > 40
    missing = sorted(
        {
            (where, name)
            for where, expr in queries
            for name in stack_checks.promql_metric_names(expr)
            if name.startswith("flowsink_") and name not in defined
        }
    )
    assert not missing, f"queried but not defined in flowsink/metrics.py: {missing}"


# ------------------------------------------------------------------------------------------ Grafana


def test_grafana_json_is_generated_from_the_code() -> None:
    done = _run([sys.executable, "-m", "flowsink.stack.grafana", "--check"])
    assert done.returncode == 0, done.stderr


def test_grafana_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        assets.path("monitoring", "grafana", "provisioning", "datasources", "prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    panels = 0
    for path in sorted(stack_checks.GRAFANA_DIR.glob("*.json")):
        for panel in stack_checks._panels(json.loads(path.read_text())["panels"]):
            if panel["type"] == "row":
                continue
            panels += 1
            assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
            assert panel["targets"], f"{path.name}: {panel['title']} queries nothing"
    assert panels >= 30


# ------------------------------------------------------------------------------------------ Kibana


def test_kibana_ndjson_is_generated_from_the_code() -> None:
    done = _run([sys.executable, "-m", "flowsink.stack.kibana", "--check"])
    assert done.returncode == 0, done.stderr


def test_kibana_references_resolve() -> None:
    objects = stack_checks.kibana_objects()
    ids = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{obj['id']} refers to missing {ref}"
    dashboards = [obj for obj in objects if obj["type"] == "dashboard"]
    assert len(dashboards) == 3
    used = {ref["id"] for d in dashboards for ref in d["references"]}
    assert used == {obj["id"] for obj in objects if obj["type"] == "visualization"}, (
        "a visualisation is on no dashboard"
    )


def _example_index(pattern: str) -> str:
    return pattern.replace("*", "2026.01.01") if pattern.endswith("-*") else pattern.replace("*", "")


def test_every_kibana_field_exists_with_an_aggregatable_type() -> None:
    """Each field each visualisation aggregates (or filters on) is mapped by elasticsearch/*.json with a type
    its aggregation accepts; data views name indices an index template covers."""
    objects = stack_checks.kibana_objects()
    templates = stack_checks.TemplateFields()
    views = {obj["id"]: obj["attributes"]["title"] for obj in objects if obj["type"] == "index-pattern"}
    for pattern in views.values():
        assert templates.index_template_for(_example_index(pattern)), f"no index template covers {pattern}"
    uses = stack_checks.kibana_field_uses(objects)
    assert len(uses) > 50
    problems = []
    for use in uses:
        found = templates.field_type(_example_index(views[use.data_view]), use.field)
        field_type, mapping = found if found else (None, {})
        problem = stack_checks.aggregatable_problem(field_type, mapping, use.aggregation)
        if problem:
            problems.append(f"{use.object_id}: {use.aggregation}({use.field}): {problem}")
    assert not problems, "\n".join(problems)


def test_field_check_catches_unaggregatable_fields() -> None:
    """The check above would fail on a text-only or doc-values-free field, or one no template maps."""
    templates = stack_checks.TemplateFields()
    original = templates.field_type("flowsink-deadletter-2026.01.01", "event.original")
    assert original is not None
    assert stack_checks.aggregatable_problem(*original, "terms") is not None
    missing = templates.field_type("flowsink-flows-2026.01.01", "source.no_such_field")
    assert (
        stack_checks.aggregatable_problem(missing and missing[0], {}, "terms") == "not in the index templates"
    )
    ip_type = templates.field_type("flowsink-flows-2026.01.01", "source.ip")
    assert stack_checks.aggregatable_problem(*ip_type, "sum") is not None


def test_kibana_has_the_dashboards_network_engineers_expect() -> None:
    titles = {vis.title for vis in stack_kibana.all_visualisations()}
    for needle in (
        "bytes",
        "packets",
        "flow records",
        "sources",
        "destinations",
        "pairs",
        "ports",
        "protocols",
        "per exporter",
        "interface",
        "IPv4 vs IPv6",
        "sFlow interface counters",
        "App flows",
    ):
        assert any(needle.lower() in title.lower() for title in titles), f"no visualisation about {needle}"


def test_docs_describe_every_panel() -> None:
    """docs/stack.md says what each dashboard shows (screenshots are impossible here): every title is in it."""
    docs = (REPO / "docs" / "stack.md").read_text()
    flat = " ".join(docs.replace("*", "").split())
    titles = [title for _, title, _ in stack_checks.grafana_queries()]
    titles += [vis.title for vis in stack_kibana.all_visualisations()]
    # "Top talkers: sources", "Top talkers: destinations" may be written "Top talkers: sources, : destinations"
    missing = sorted(
        {title for title in titles if title not in flat and title.rsplit(": ", 1)[-1] not in flat}
    )
    assert not missing, f"docs/stack.md does not describe: {missing}"


def _dockerfile_env() -> dict[str, str]:
    """ENV settings of the Dockerfile (``ENV A=1 \\`` continuation lines included)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


@pytest.mark.integration
def test_ingest_container_environment_is_a_valid_node_config(compose_config: dict) -> None:
    """What the ingest container runs with (image ENV, Compose environment, the entrypoint's slot folder) passes
    the node's own validation, with every flow port and the HTTP port where nginx sends them."""
    from flowsink.config import load_config

    env = {**_dockerfile_env(), **compose_config["services"]["ingest"]["environment"]}
    env["FLOWSINK_NODE_RUN_DIR"] = "/var/lib/flowsink/slot-0"
    config = load_config(None, env={k: str(v) for k, v in env.items()})
    assert config.receive.ports == [2055, 4739, 6343] and config.http.port == 8080
    assert config.elasticsearch.url == ["http://elasticsearch:9200"]
    assert config.api.tokens and config.queue.max_bytes == 4 * 1024**3
    # no template folder setting: the node installs the templates shipped in its package (flowsink.assets)
    assert config.elasticsearch.template_dir == ""


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    import fnmatch

    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), (
            f"{source} is in .dockerignore"
        )


@pytest.mark.integration
def test_every_grafana_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's expression (as a recording rule), with Grafana's variable filled in."""
    rules = [
        {"record": f"flowsink:panel_{n}", "expr": expr.replace("$instance", ".*")}
        for n, (_, _, expr) in enumerate(stack_checks.grafana_queries())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = _run(["promtool", "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


@pytest.mark.integration
def test_alert_rules_fire_when_they_should() -> None:
    """promtool's rule unit tests (monitoring/alerts_test.yml): node down, drops, rejections, backlog."""
    done = _run(["promtool", "test", "rules", str(assets.path("monitoring", "alerts_test.yml"))])
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_busy_port_is_named_with_its_holder() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        problem = stack_local.port_problem("udp", "127.0.0.1", port)
    assert problem is not None and problem.startswith(f"UDP port {port} is already in use")
    assert stack_local.port_problem("udp", "127.0.0.1", port) is None
