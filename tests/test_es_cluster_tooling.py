"""scripts/elasticsearch.sh's cluster and secure modes, for real: nodes that form one cluster over TLS, the
superuser, the env file, a node killed and started again, stop.

The cluster is the session's ``es_cluster`` (started once, at its first use); the tests run in file order, and
test_stop_leaves_no_process_behind stops it (the fixture starts it again for any later test that asks for it).
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import certifi
import pytest
from elasticsearch import (
    ApiError,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    SSLError,
    TransportError,
)

from es_cluster_support import ES_SCRIPT, SecureCluster, process_alive, read_env_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def script(cluster: SecureCluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, ES_NAME=cluster.name, ES_ENV_FILE=str(cluster.env_file))
    env.pop("ES_PORT", None)  # the instance remembers its ports
    return subprocess.run(
        ["bash", str(ES_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def processes_of(instance: Path) -> list[int]:
    """Live processes whose config or working folder is in the instance (a node runs in its logs folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not process_alive(int(proc.name)):
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        conf = next((v[len(b"ES_PATH_CONF=") :] for v in environ if v.startswith(b"ES_PATH_CONF=")), b"")
        if Path(cwd).is_relative_to(instance) or Path(os.fsdecode(conf)).is_relative_to(instance):
            found.append(int(proc.name))
    return found


def test_three_nodes_form_one_green_cluster_over_tls(es_cluster):
    assert len(es_cluster.urls) == 3 and all(u.startswith("https://127.0.0.1:") for u in es_cluster.urls)
    with es_cluster.client() as client:
        health = client.cluster.health(wait_for_status="green", timeout="60s")
        assert (health["status"], health["number_of_nodes"]) == ("green", 3)
        nodes = client.nodes.info(metric="http,settings")["nodes"].values()
        assert sorted(n["name"] for n in nodes) == [f"flowsink-{es_cluster.name}-{i}" for i in (1, 2, 3)]
        assert sorted(n["http"]["publish_address"] for n in nodes) == sorted(
            u.removeprefix("https://") for u in es_cluster.urls
        )
        for node in nodes:
            security = node["settings"]["xpack"]["security"]
            assert security["enabled"] == "true"
            assert security["http"]["ssl"]["enabled"] == security["transport"]["ssl"]["enabled"] == "true"
        # A replica lands on another node: the cluster is one that can lose a node.
        index = "tooling-replicated"
        client.indices.create(index=index, settings={"number_of_shards": 2, "number_of_replicas": 1})
        try:
            client.cluster.health(index=index, wait_for_status="green", timeout="60s")
            shards = client.cat.shards(index=index, format="json")
            assert len(shards) == 4
            for number in ("0", "1"):
                copies = [s for s in shards if s["shard"] == number]
                assert {s["prirep"] for s in copies} == {"p", "r"} and len({s["node"] for s in copies}) == 2
        finally:
            client.indices.delete(index=index)
    # Each node answers on its own URL, over TLS verified with the CA file alone.
    for url in es_cluster.urls:
        with Elasticsearch(
            url, ca_certs=es_cluster.ca_certs, basic_auth=(es_cluster.username, es_cluster.password)
        ) as one:
            assert one.cluster.health()["number_of_nodes"] == 3


def test_superuser_works_and_wrong_credentials_or_ca_fail(es_cluster, secure_es):
    with es_cluster.client() as client:
        me = client.security.authenticate()
        assert (me["username"], me["roles"]) == ("elastic", ["superuser"])
    url = es_cluster.url
    with Elasticsearch(
        url, ca_certs=es_cluster.ca_certs, basic_auth=("elastic", "not-the-password")
    ) as wrong:
        with pytest.raises(AuthenticationException) as denied:
            wrong.cluster.health()
        assert denied.value.meta.status == 401
    with (
        Elasticsearch(url, ca_certs=es_cluster.ca_certs) as anonymous,
        pytest.raises(AuthenticationException),
    ):
        anonymous.cluster.health()
    creds = (es_cluster.username, es_cluster.password)
    # Another instance's CA has the very subject elasticsearch-certutil gives every CA, but another key.
    assert Path(secure_es.ca_certs).read_bytes() != Path(es_cluster.ca_certs).read_bytes()
    for ca in (Path(secure_es.ca_certs), Path(certifi.where())):
        untrusted = Elasticsearch(url, ca_certs=str(ca), basic_auth=creds, max_retries=0)
        with untrusted, pytest.raises(SSLError) as refused:
            untrusted.cluster.health()
        assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message
    # Plain HTTP is not served at all.
    plain = url.replace("https://", "http://")
    cleartext = Elasticsearch(plain, basic_auth=creds, max_retries=0, request_timeout=5)
    with cleartext, pytest.raises(TransportError):
        cleartext.cluster.health()


def test_cluster_env_is_sourceable_and_right(es_cluster):
    env = read_env_file(es_cluster.env_file)
    ports = [es_cluster.port + i for i in range(3)]
    assert env["ES_URL"] == ",".join(f"https://127.0.0.1:{p}" for p in ports)
    assert Path(env["ES_CA_CERTS"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert env["ES_USERNAME"] == "elastic" and len(env["ES_PASSWORD"]) >= 20
    # It holds a password: readable by its owner only.
    assert stat.S_IMODE(es_cluster.env_file.stat().st_mode) == 0o600
    urls = env["ES_URL"].split(",")
    with Elasticsearch(
        urls, ca_certs=env["ES_CA_CERTS"], basic_auth=(env["ES_USERNAME"], env["ES_PASSWORD"])
    ) as client:
        assert client.cluster.health()["number_of_nodes"] == 3
    # A second start is idempotent: same nodes, same CA and password, the same assignments on stdout.
    pids = [es_cluster.pid(n) for n in (1, 2, 3)]
    ca_before = Path(env["ES_CA_CERTS"]).read_bytes()
    again = script(es_cluster, "start", "--nodes", "3", "--secure")
    assert again.returncode == 0, again.stderr
    assert [es_cluster.pid(n) for n in (1, 2, 3)] == pids
    assert Path(env["ES_CA_CERTS"]).read_bytes() == ca_before
    printed = dict(line.split("=", 1) for line in again.stdout.splitlines())
    assert printed == env
    assert read_env_file(es_cluster.env_file) == env


def test_kill_one_node_then_start_it_again_into_the_same_cluster(es_cluster):
    index = "tooling-survivor"
    with es_cluster.client() as client:
        client.indices.create(index=index, settings={"number_of_shards": 3, "number_of_replicas": 1})
        client.bulk(
            operations=[op for i in range(30) for op in ({"create": {"_index": index}}, {"n": i})],
            refresh=True,
        )
        client.cluster.health(index=index, wait_for_status="green", timeout="60s")
        node_ids = {n["name"]: node_id for node_id, n in client.nodes.info(metric="_none")["nodes"].items()}
    pid = es_cluster.pid(2)
    assert pid is not None

    killed = script(es_cluster, "kill", "--node", "2")
    assert killed.returncode == 0, killed.stderr
    assert not process_alive(pid)
    assert es_cluster.pid(2) is None and es_cluster.pid(1) and es_cluster.pid(3)
    survivors = [es_cluster.urls[0], es_cluster.urls[2]]
    with es_cluster.client(hosts=survivors) as client:
        # The master drops a node whose connection closed at once (a silent one after fault detection's retries).
        health = client.cluster.health(wait_for_nodes="2", timeout="90s")
        assert health["status"] in ("yellow", "green")
        assert client.count(index=index)["count"] == 30  # every shard still has a copy
    status = script(es_cluster, "status")
    assert status.stdout.strip() == f"degraded 2/3 nodes running {','.join(survivors)}"

    started = script(es_cluster, "start", "--node", "2")
    assert started.returncode == 0, started.stderr
    assert es_cluster.pid(2) not in (None, pid)
    with es_cluster.client() as client:
        health = client.cluster.health(wait_for_nodes="3", wait_for_status="green", timeout="120s")
        assert (health["status"], health["number_of_nodes"]) == ("green", 3)
        # The same node (its data folder kept its id) rejoined the same cluster, not a new one formed beside it.
        again = {n["name"]: node_id for node_id, n in client.nodes.info(metric="_none")["nodes"].items()}
        assert again == node_ids
        assert client.count(index=index)["count"] == 30
        client.indices.delete(index=index)
    assert script(es_cluster, "status").stdout.strip() == f"running {','.join(es_cluster.urls)}"


def test_stop_leaves_no_process_behind(es_cluster):
    pids = [es_cluster.pid(n) for n in (1, 2, 3)]
    assert all(pids) and set(pids) <= set(processes_of(es_cluster.instance_dir))
    stopped = script(es_cluster, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(process_alive(pid) for pid in pids)
    assert processes_of(es_cluster.instance_dir) == []
    assert not any(port_open(url) for url in es_cluster.urls)
    assert script(es_cluster, "status").stdout.strip() == "stopped"


def test_secure_single_node_and_what_the_distribution_offers(secure_es):
    """What a sink can rely on with this distribution (the integ-test-zip): see docs/elasticsearch-cluster.md."""
    assert len(secure_es.urls) == 1 and secure_es.env["ES_URL"] == secure_es.url
    with secure_es.client() as client:
        assert client.cluster.health(wait_for_status="green", timeout="60s")["number_of_nodes"] == 1
        assert client.license.get()["license"]["type"] == "basic"
        assert client.security.authenticate()["authentication_realm"]["type"] == "reserved"
        privileges = client.security.has_privileges(
            cluster=["monitor", "manage_index_templates"],
            index=[
                {
                    "names": ["flowsink-flows-*"],
                    "privileges": ["create_doc", "create_index", "auto_configure"],
                }
            ],
        )
        assert privileges["has_all_requested"] is True
        # Everything kept in the .security index fails: its mapping needs an analysis module this distribution
        # lacks. If this starts to pass, API keys and native roles became testable here: update the docs.
        for attempt in (
            lambda: client.security.create_api_key(name="tooling-probe"),
            lambda: client.security.put_role(name="tooling-probe", cluster=["monitor"]),
        ):
            with pytest.raises(BadRequestError, match="pattern_capture"):
                attempt()
        # GET / is not served (no rest-root module): clients must not rely on info().
        with pytest.raises(ApiError) as root:
            client.info()
        assert root.value.meta.status == 405


def test_file_realm_users_and_roles_least_privilege_and_revocation(secure_es):
    """The credentials a least-privilege flowsink gets here: a file-realm user with a file-realm role."""
    role = {
        "cluster": ["monitor"],
        "indices": [{"names": ["probe-*"], "privileges": ["create_doc", "create_index", "auto_configure"]}],
    }
    secure_es.put_role("tooling_probe_writer", role)
    secure_es.add_user("tooling-probe", "probe-password-1", ["tooling_probe_writer"])
    user = secure_es.client(basic_auth=("tooling-probe", "probe-password-1"), max_retries=0)
    try:
        with user:
            assert user.security.authenticate()["authentication_realm"]["type"] == "file"
            assert user.index(index="probe-1", document={"n": 1}, op_type="create")["result"] == "created"
            assert user.cluster.health()["status"] in ("green", "yellow")
            # What the role lacks is refused, and the refusal names the action and the privileges that grant it.
            with pytest.raises(ApiError) as refused:
                user.search(index="probe-1")
            assert refused.value.meta.status == 403
            assert re.search(
                r"indices:data/read/search.*tooling_probe_writer.*privileges \[read", str(refused.value)
            )
            secure_es.delete_user("tooling-probe")
            with pytest.raises(AuthenticationException):
                user.cluster.health()
    finally:
        secure_es.delete_role("tooling_probe_writer")
        with secure_es.client() as admin:
            admin.options(ignore_status=404).indices.delete(index="probe-1")


def test_script_rejects_bad_node_arguments():
    for args in (["start", "--nodes", "x"], ["start", "--node", "2", "--secure"], ["kill", "--node", "0"]):
        done = subprocess.run(["bash", str(ES_SCRIPT), *args], capture_output=True, text=True, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert re.search(r"--node", done.stderr)
