"""The flowsink stack as local processes, for machines without a Docker engine (``flowsink stack up|down``).

    flowsink stack up       Elasticsearch (if not running), N ingest nodes, nginx, Prometheus, node_exporter,
                            nginx and Elasticsearch exporters; prints every URL
    flowsink stack down     ends exactly the processes ``up`` recorded (pid files); idempotent
    flowsink stack status   one line per process
    flowsink stack urls     the addresses again;  render: write the configs without starting
    flowsink stack watch    the stack's nginx_watch process (started by ``up``): marks dead nodes down in
                            nginx and puts them back when they answer again

Everything lives in one run folder (default ``.run/stack``): generated configs, logs, pid files, queues.

Environment (all optional):
    FLOWSINK_STACK_DIR          run folder
    FLOWSINK_STACK_NODES        number of ingest nodes (default 3)
    FLOWSINK_STACK_ES_URL       Elasticsearch to use (default http://127.0.0.1:9200, started if not running)
    FLOWSINK_STACK_PORT_OFFSET  added to every port the stack uses internally (nodes, exporters, stub_status);
                                the front ports (UDP 2055/4739/6343, HTTP 8080, Prometheus 9090) stay the
                                standard ones. Node ports decide where nginx's hash sends each exporter.
    FLOWSINK_STACK_HTTP_PORT / FLOWSINK_STACK_PROMETHEUS_PORT   move the HTTP front or Prometheus
    FLOWSINK_STACK_INDEX_PREFIX  index (and template) name prefix of the nodes (default flowsink)
    FLOWSINK_STACK_NGINX_UDP_SESSIONS=1  keep a UDP session per exporter instead of `proxy_responses 0`
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from flowsink import assets
from flowsink.stack import StackError, default_run_dir, log
from flowsink.stack.nginx import NginxSettings, UdpFront, render

FLOW_PORTS = (2055, 4739, 6343)
PROMETHEUS_CONFIG = assets.path("monitoring", "prometheus.yml")
ALERT_RULES = assets.path("monitoring", "alerts.yml")
# Start order; stop runs it backwards so nginx stops taking traffic before the nodes drain.
START_ORDER = (
    "node",
    "nginx",
    "nginx_watch",
    "node_exporter",
    "nginx_exporter",
    "elasticsearch_exporter",
    "prometheus",
)


@dataclass
class StackLayout:
    """Where every process of the local stack listens, and where its files go."""

    run_dir: Path
    nodes: int = 3
    es_url: str = "http://127.0.0.1:9200"
    http_port: int = 8080
    prometheus_port: int = 9090
    port_offset: int = 0
    host: str = "127.0.0.1"
    udp_ports: tuple[int, ...] = FLOW_PORTS
    index_prefix: str = "flowsink"
    nginx_udp_sessions: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> StackLayout:
        env = os.environ if environ is None else environ
        return cls(
            run_dir=default_run_dir(env),
            nodes=int(env.get("FLOWSINK_STACK_NODES", "3")),
            es_url=env.get("FLOWSINK_STACK_ES_URL", "http://127.0.0.1:9200").rstrip("/"),
            http_port=int(env.get("FLOWSINK_STACK_HTTP_PORT", "8080")),
            prometheus_port=int(env.get("FLOWSINK_STACK_PROMETHEUS_PORT", "9090")),
            port_offset=int(env.get("FLOWSINK_STACK_PORT_OFFSET", "0")),
            index_prefix=env.get("FLOWSINK_STACK_INDEX_PREFIX", "flowsink"),
            nginx_udp_sessions=env.get("FLOWSINK_STACK_NGINX_UDP_SESSIONS", "") in ("1", "true", "yes"),
        )

    def save(self) -> None:
        """Record the layout in the run folder, so ``down``, ``status`` and the watcher use the same one."""
        data = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}
        (self.run_dir / "layout.json").write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> StackLayout | None:
        try:
            data = json.loads((run_dir / "layout.json").read_text())
        except (OSError, ValueError):
            return None
        data["run_dir"] = Path(data["run_dir"])
        data["udp_ports"] = tuple(data["udp_ports"])
        return cls(**data)

    # Node i listens on its own loopback address 127.0.1.(i+1), like a host of its own, on UDP
    # 20000 + flow port + 100*i (node 0: 22055, 24739, 26343) and HTTP 18080 + i. nginx's consistent hash
    # places nodes on its ring by "address:port", so the layout decides which exporter goes where; this one
    # sends the demo exporters 127.0.0.2/.3/.4 to three different nodes on every flow port (docs/stack.md).
    def node_host(self, index: int) -> str:
        return f"127.0.1.{index + 1}"

    def node_udp_ports(self, index: int) -> list[int]:
        return [20000 + port + 100 * index + self.port_offset for port in self.udp_ports]

    def node_http_port(self, index: int) -> int:
        return 18080 + index + self.port_offset

    def node_udp_addresses(self, index: int) -> list[str]:
        return [f"{self.node_host(index)}:{port}" for port in self.node_udp_ports(index)]

    def node_http_address(self, index: int) -> str:
        return f"{self.node_host(index)}:{self.node_http_port(index)}"

    @property
    def nginx_status_port(self) -> int:
        return 8081 + self.port_offset

    @property
    def node_exporter_port(self) -> int:
        return 9100 + self.port_offset

    @property
    def nginx_exporter_port(self) -> int:
        return 9113 + self.port_offset

    @property
    def elasticsearch_exporter_port(self) -> int:
        return 9114 + self.port_offset

    def url(self, port: int, path: str = "") -> str:
        return f"http://{self.host}:{port}{path}"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def config_dir(self) -> Path:
        return self.run_dir / "config"


@dataclass
class ProcessSpec:
    """One process of the stack: how to start it and how to tell that it is ready."""

    name: str
    argv: list[str]
    ready_url: str | None = None
    ready_udp_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


# ----------------------------------------------------------------------------------------- configuration


def node_config(layout: StackLayout, index: int) -> dict:
    """The config file of ingest node ``index`` (every key: docs/operations.md)."""
    return {
        "node": {"name": f"node{index}", "run_dir": str(layout.run_dir / f"node{index}")},
        "elasticsearch": {"url": [layout.es_url], "index_prefix": layout.index_prefix},
        # One receiver process per node: three nodes already share this machine's cores.
        "receive": {"host": layout.node_host(index), "ports": layout.node_udp_ports(index), "processes": 1},
        "http": {"host": layout.node_host(index), "port": layout.node_http_port(index)},
        "api": {"tokens": [api_token(layout)], "index_prefix": f"{layout.index_prefix}-app-flows"},
        # Save learnt templates every 5 s (default 30 s): a node that restarts after a crash then decodes its
        # exporters' data at once instead of waiting for their next template (docs/stack.md).
        "decode": {"template_save_interval_s": 5},
        "logging": {"level": "INFO"},
    }


def api_token(layout: StackLayout) -> str:
    """The flows API's bearer token for this stack: made once, kept (mode 0600) in the run folder."""
    path = layout.run_dir / "api-token"
    if not path.exists():
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def nginx_settings(layout: StackLayout, down: frozenset[int] = frozenset()) -> NginxSettings:
    """nginx for ``layout``; nodes in ``down`` stay in the upstreams marked ``down``, so the consistent hash
    moves only their exporters (to the next node on the ring) and moves them back when they return."""
    nginx_dir = layout.run_dir / "nginx"

    def mark(i: int, address: str) -> str:
        return f"{address} down" if i in down else address

    fronts = [
        UdpFront(port, [mark(i, layout.node_udp_addresses(i)[k]) for i in range(layout.nodes)])
        for k, port in enumerate(layout.udp_ports)
    ]
    return NginxSettings(
        udp_fronts=fronts,
        http_upstreams=[mark(i, layout.node_http_address(i)) for i in range(layout.nodes)],
        http_listen=str(layout.http_port),
        status_listen=f"{layout.host}:{layout.nginx_status_port}",
        pid_file=str(nginx_dir / "nginx.pid"),
        error_log=str(layout.log_dir / "nginx-error.log"),
        error_log_level="info",
        stream_access_log=f"{layout.log_dir / 'nginx-udp-access.log'} flows buffer=64k flush=1s",
        http_access_log=f"{layout.log_dir / 'nginx-http-access.log'} upstreams",
        temp_dir=str(nginx_dir / "temp"),
        worker_processes="2",
        udp_sessions=layout.nginx_udp_sessions,
    )


def local_prometheus_config(layout: StackLayout) -> dict:
    """``monitoring/prometheus.yml`` (the Compose one) with every target moved to its local address."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        "flowsink": [layout.node_http_address(i) for i in range(layout.nodes)],
        "nginx": [f"{layout.host}:{layout.nginx_exporter_port}"],
        "node": [f"{layout.host}:{layout.node_exporter_port}"],
        "elasticsearch": [f"{layout.host}:{layout.elasticsearch_exporter_port}"],
        "prometheus": [f"{layout.host}:{layout.prometheus_port}"],
    }
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            raise StackError(f"monitoring/prometheus.yml has job {name!r} that the local stack does not run")
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": targets[name], "labels": {"stack": "local"}}]
    config["rule_files"] = [str(ALERT_RULES)]
    config.pop("alerting", None)
    return config


def write_configs(layout: StackLayout) -> dict[str, Path]:
    """Generate every config file into the run folder; returns them by name."""
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for i in range(layout.nodes):
        path = layout.config_dir / f"node{i}.yml"
        path.write_text(yaml.safe_dump(node_config(layout, i), sort_keys=False))
        written[f"node{i}"] = path
    nginx_dir = layout.run_dir / "nginx"
    (nginx_dir / "temp").mkdir(parents=True, exist_ok=True)
    written["nginx"] = layout.config_dir / "nginx.conf"
    written["nginx"].write_text(render(nginx_settings(layout)))
    written["prometheus"] = layout.config_dir / "prometheus.yml"
    written["prometheus"].write_text(yaml.safe_dump(local_prometheus_config(layout), sort_keys=False))
    return written


def node_spec(layout: StackLayout, index: int) -> ProcessSpec:
    """Ingest node ``index``: ``flowsink run`` with its generated config (also used to restart one)."""
    return ProcessSpec(
        name=f"node{index}",
        argv=[
            sys.executable,
            "-m",
            "flowsink.cli",
            "run",
            "--config",
            str(layout.config_dir / f"node{index}.yml"),
        ],
        ready_url=f"http://{layout.node_http_address(index)}/healthz",
        cwd=layout.run_dir / f"node{index}",
    )


def process_specs(layout: StackLayout, configs: dict[str, Path]) -> list[ProcessSpec]:
    """Every process of the stack, in start order."""
    specs = [node_spec(layout, i) for i in range(layout.nodes)]

    def service(name: str, port: int, path: str, *argv: str) -> ProcessSpec:
        return ProcessSpec(name=name, argv=list(argv), ready_url=layout.url(port, path))

    host = layout.host
    specs += [
        service(
            "nginx",
            layout.nginx_status_port,
            "/stub_status",
            "nginx",
            "-c",
            str(configs["nginx"]),
            "-p",
            str(layout.run_dir / "nginx"),
        ),
        ProcessSpec(
            name="nginx_watch",
            argv=[sys.executable, "-m", "flowsink.cli", "stack", "watch", "--run-dir", str(layout.run_dir)],
        ),
        service(
            "node_exporter",
            layout.node_exporter_port,
            "/metrics",
            "prometheus-node-exporter",
            f"--web.listen-address={host}:{layout.node_exporter_port}",
            # no systemd bus here or in containers; the default collectors cover CPU, memory, disk, network
            "--no-collector.systemd",
        ),
        service(
            "nginx_exporter",
            layout.nginx_exporter_port,
            "/metrics",
            "prometheus-nginx-exporter",
            f"-nginx.scrape-uri={layout.url(layout.nginx_status_port, '/stub_status')}",
            f"-web.listen-address={host}:{layout.nginx_exporter_port}",
        ),
        service(
            "elasticsearch_exporter",
            layout.elasticsearch_exporter_port,
            "/metrics",
            "prometheus-elasticsearch-exporter",
            f"--es.uri={layout.es_url}",
            "--es.indices",
            f"--web.listen-address={host}:{layout.elasticsearch_exporter_port}",
        ),
        service(
            "prometheus",
            layout.prometheus_port,
            "/-/ready",
            "prometheus",
            f"--config.file={configs['prometheus']}",
            f"--storage.tsdb.path={layout.run_dir / 'prometheus'}",
            f"--web.listen-address={host}:{layout.prometheus_port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ),
    ]
    return specs


# ----------------------------------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the parenthesised command name (which may itself hold spaces).
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_file(layout: StackLayout, name: str) -> Path:
    return layout.pid_dir / f"{name}.pid"


def recorded_pid(layout: StackLayout, name: str) -> int | None:
    """The pid ``start`` recorded for ``name`` if that very process still runs (a reused pid does not count)."""
    path = _pid_file(layout, name)
    try:
        pid_text, started = path.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    # A child that exited stays a zombie until reaped (``start`` is the parent of everything it launches).
    return pid if _start_time(pid) == started and not _exited(pid) else None


def launch(layout: StackLayout, spec: ProcessSpec) -> int:
    """Start one process in its own session, logging to logs/NAME.log; records its pid."""
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    if spec.cwd:
        spec.cwd.mkdir(parents=True, exist_ok=True)
    with open(layout.log_dir / f"{spec.name}.log", "ab") as log_file:
        process = subprocess.Popen(
            spec.argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=spec.cwd,
            env={**os.environ, **spec.env},
            start_new_session=True,
        )
    _pid_file(layout, spec.name).write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(layout: StackLayout, name: str, lines: int = 20) -> str:
    path = layout.log_dir / f"{name}.log"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(layout: StackLayout, spec: ProcessSpec, timeout_s: float) -> None:
    """Block until ``spec`` answers on its ready URL; raise StackError with its log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if recorded_pid(layout, spec.name) is None:
            raise StackError(
                f"{spec.name} exited during start-up; {layout.log_dir / spec.name}.log:\n"
                f"{log_tail(layout, spec.name)}"
            )
        if spec.ready_url is None or _http_ok(spec.ready_url):
            return
        time.sleep(0.25)
    raise StackError(
        f"{spec.name} not ready at {spec.ready_url} after {timeout_s:.0f} s; "
        f"{layout.log_dir / spec.name}.log:\n{log_tail(layout, spec.name)}"
    )


def terminate(layout: StackLayout, name: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM the recorded process (its whole session), SIGKILL after ``timeout_s``; True if one was running."""
    pid = recorded_pid(layout, name)
    _pid_file(layout, name).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not _exited(pid):
        time.sleep(0.1)
    if not _exited(pid):
        log(f"{name} (pid {pid}) ignored SIGTERM for {timeout_s:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def _exited(pid: int) -> bool:
    """True if ``pid`` has exited (gone, or a zombie not yet reaped by its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ----------------------------------------------------------------------------------------- ports


def port_problem(kind: str, host: str, port: int) -> str | None:
    """None if ``port`` can be bound, else a sentence naming the port (and its holder when ss knows it)."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as probe:
        if kind == "tcp":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"{kind.upper()} {port}: {exc.strerror}"
    holder = ""
    if shutil.which("ss"):
        flag = "-ulpn" if kind == "udp" else "-tlpn"
        found = subprocess.run(
            ["ss", "-H", flag, f"sport = :{port}"], capture_output=True, text=True, check=False
        )
        holder = f" (held by: {found.stdout.strip().split('users:')[-1]})" if found.stdout.strip() else ""
    return f"{kind.upper()} port {port} is already in use{holder}"


def busy_ports(layout: StackLayout) -> list[str]:
    """Every port the stack needs that something else holds."""
    wanted = [("udp", "0.0.0.0", port) for port in layout.udp_ports]
    wanted += [("tcp", "0.0.0.0", layout.http_port), ("tcp", layout.host, layout.prometheus_port)]
    wanted += [
        ("tcp", layout.host, layout.nginx_status_port),
        ("tcp", layout.host, layout.node_exporter_port),
    ]
    wanted += [
        ("tcp", layout.host, layout.nginx_exporter_port),
        ("tcp", layout.host, layout.elasticsearch_exporter_port),
    ]
    for i in range(layout.nodes):
        wanted += [("udp", layout.node_host(i), port) for port in layout.node_udp_ports(i)]
        wanted.append(("tcp", layout.node_host(i), layout.node_http_port(i)))
    return [problem for kind, host, port in wanted if (problem := port_problem(kind, host, port))]


# ----------------------------------------------------------------------------------------- commands


def _es_script(action: str, layout: StackLayout) -> subprocess.CompletedProcess:
    root = assets.checkout_root()
    if root is None:
        raise StackError(
            f"Elasticsearch at {layout.es_url} does not answer, and only a source checkout can start one "
            "(scripts/elasticsearch.sh): start it yourself or set FLOWSINK_STACK_ES_URL"
        )
    port = layout.es_url.rsplit(":", 1)[-1]
    env = {**os.environ, "ES_NAME": os.environ.get("ES_NAME", "main"), "ES_PORT": port}
    return subprocess.run(
        ["bash", str(root / "scripts" / "elasticsearch.sh"), action],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def ensure_elasticsearch(layout: StackLayout) -> None:
    """Use the node at es_url if one answers; else start the local one and remember that this stack did."""
    if _http_ok(f"{layout.es_url}/_cluster/health"):
        log(
            f"Elasticsearch already answers at {layout.es_url}; using it (`flowsink stack down` leaves it running)"
        )
        return
    if not layout.es_url.startswith("http://127.0.0.1:"):
        raise StackError(
            f"Elasticsearch at {layout.es_url} does not answer, and it is not one this stack can start"
        )
    log(f"starting Elasticsearch at {layout.es_url} (scripts/elasticsearch.sh)")
    done = _es_script("start", layout)
    if done.returncode != 0:
        raise StackError(f"scripts/elasticsearch.sh start failed:\n{done.stderr[-2000:]}")
    (layout.run_dir / "elasticsearch.started").write_text(layout.es_url + "\n")


def running_names(layout: StackLayout) -> list[str]:
    if not layout.pid_dir.is_dir():
        return []
    return sorted(path.stem for path in layout.pid_dir.glob("*.pid") if recorded_pid(layout, path.stem))


def urls(layout: StackLayout) -> list[tuple[str, str]]:
    rows = [
        ("NetFlow/IPFIX/sFlow (UDP, via nginx)", ", ".join(f"udp://0.0.0.0:{p}" for p in layout.udp_ports)),
        ("flows API, /healthz, /readyz, /metrics (via nginx)", layout.url(layout.http_port, "/")),
        ("Elasticsearch", layout.es_url),
        ("Prometheus", layout.url(layout.prometheus_port, "/")),
        ("Prometheus targets", layout.url(layout.prometheus_port, "/targets")),
        ("Prometheus alerts", layout.url(layout.prometheus_port, "/alerts")),
        ("nginx stub_status", layout.url(layout.nginx_status_port, "/stub_status")),
        ("node_exporter", layout.url(layout.node_exporter_port, "/metrics")),
        ("nginx exporter", layout.url(layout.nginx_exporter_port, "/metrics")),
        ("Elasticsearch exporter", layout.url(layout.elasticsearch_exporter_port, "/metrics")),
    ]
    for i in range(layout.nodes):
        udp = ", ".join(layout.node_udp_addresses(i))
        rows.append((f"ingest node {i} (UDP {udp})", f"http://{layout.node_http_address(i)}/metrics"))
    rows.append(("flows API bearer token", f"{layout.run_dir / 'api-token'} (Authorization: Bearer ...)"))
    rows.append(("run folder (configs, logs, pid files)", str(layout.run_dir)))
    return rows


def start(layout: StackLayout, ready_timeout_s: float = 90.0) -> None:
    """Bring the whole local stack up, or leave nothing of it running and raise StackError."""
    if running_names(layout):
        log(f"already running: {', '.join(running_names(layout))} (`flowsink stack down` first to restart)")
        print_urls(layout)
        return
    if problems := busy_ports(layout):
        raise StackError("cannot start the local stack:\n  " + "\n  ".join(problems))
    if os.geteuid() != 0:
        raise StackError(
            "nginx needs root here: `proxy_bind $remote_addr transparent` uses IP_TRANSPARENT "
            "(CAP_NET_ADMIN), which keeps each exporter's address visible to the nodes"
        )
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    layout.save()
    ensure_elasticsearch(layout)
    configs = write_configs(layout)
    nginx_check = subprocess.run(
        ["nginx", "-t", "-q", "-c", str(configs["nginx"]), "-p", str(layout.run_dir / "nginx")],
        capture_output=True,
        text=True,
        check=False,
    )
    if nginx_check.returncode != 0:
        raise StackError(f"generated nginx config is invalid:\n{nginx_check.stderr}")
    try:
        for spec in process_specs(layout, configs):
            launch(layout, spec)
            wait_ready(layout, spec, ready_timeout_s)
            log(f"{spec.name} up")
    except BaseException:
        stop(layout, stop_elasticsearch=True)
        raise
    print_urls(layout)


def print_urls(layout: StackLayout) -> None:
    width = max(len(label) for label, _ in urls(layout))
    for label, url in urls(layout):
        print(f"  {label:<{width}}  {url}")


def stop(layout: StackLayout, stop_elasticsearch: bool = True) -> list[str]:
    """End every process this stack recorded, in reverse start order; returns the names that were running."""
    stopped: list[str] = []
    names = [p.stem for p in layout.pid_dir.glob("*.pid")] if layout.pid_dir.is_dir() else []
    order = {prefix: rank for rank, prefix in enumerate(START_ORDER)}
    names.sort(key=lambda name: order.get(name.rstrip("0123456789"), -1), reverse=True)
    for name in names:
        if terminate(layout, name):
            stopped.append(name)
            log(f"{name} stopped")
    marker = layout.run_dir / "elasticsearch.started"
    if stop_elasticsearch and marker.exists():
        done = _es_script("stop", layout)
        if done.returncode != 0:
            log(f"scripts/elasticsearch.sh stop failed: {done.stderr.strip()}")
        else:
            stopped.append("elasticsearch")
            marker.unlink()
    return stopped


def node_alive(layout: StackLayout, index: int) -> bool:
    """The node's process runs and answers /healthz within a second."""
    if recorded_pid(layout, f"node{index}") is None:
        return False
    try:
        with urllib.request.urlopen(f"http://{layout.node_http_address(index)}/healthz", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def watch(layout: StackLayout, interval_s: float = 0.5, misses_to_fail: int = 2) -> None:
    """Keep nginx's upstreams in step with the nodes that are alive (runs as the stack's nginx_watch process).

    Exporters send one-way UDP (``proxy_responses 0``), so nginx never hears that a node is gone and its passive
    health checks never fire: without this, a dead node's exporters would be sent into the void. A node that
    fails ``misses_to_fail`` checks in a row is marked ``down`` and nginx reloaded (SIGHUP, no datagram socket
    is closed); when it answers again it is put back and gets exactly its own exporters back.
    """
    config_path = layout.config_dir / "nginx.conf"
    misses = dict.fromkeys(range(layout.nodes), 0)
    down: frozenset[int] = frozenset()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        for i in misses:
            misses[i] = 0 if node_alive(layout, i) else misses[i] + 1
        now_down = frozenset(i for i, n in misses.items() if n >= misses_to_fail)
        if len(now_down) == layout.nodes:
            now_down = frozenset()  # with every node gone, marking them all down would only add errors
        if now_down != down:
            config_path.write_text(render(nginx_settings(layout, now_down)))
            nginx_pid = recorded_pid(layout, "nginx")
            if nginx_pid:
                os.kill(nginx_pid, signal.SIGHUP)
            log(f"nodes down: {sorted(now_down) or 'none'}; nginx reloaded")
            down = now_down
        time.sleep(interval_s)


def status(layout: StackLayout) -> int:
    names = sorted(p.stem for p in layout.pid_dir.glob("*.pid")) if layout.pid_dir.is_dir() else []
    if not names:
        print("stopped")
        return 3
    for name in names:
        pid = recorded_pid(layout, name)
        print(f"{name:<24} {'running pid ' + str(pid) if pid else 'not running'}")
    return 0 if all(recorded_pid(layout, name) for name in names) else 1


def run(action: str, nodes: int | None = None, run_dir: Path | None = None) -> int:
    """One ``flowsink stack`` action on the local stack: up, down, status, urls, render or watch.

    Returns the exit status (status: 0 all running, 1 some not, 3 stopped); raises StackError.
    """
    layout = StackLayout.from_env()
    if nodes:
        layout.nodes = nodes
    if run_dir:
        layout.run_dir = run_dir.resolve()
    if action != "up":
        # down, status and the watcher act on the stack as it was started, whatever the environment says now
        layout = StackLayout.load(layout.run_dir) or layout
    if action == "up":
        start(layout)
    elif action == "down":
        if not stop(layout):
            log("nothing was running")
    elif action == "status":
        return status(layout)
    elif action == "urls":
        print_urls(layout)
    elif action == "watch":
        watch(layout)
    elif action == "render":
        for name, path in write_configs(layout).items():
            print(f"{name:<12} {path}")
    else:
        raise ValueError(f"unknown local stack action {action!r}")
    return 0
