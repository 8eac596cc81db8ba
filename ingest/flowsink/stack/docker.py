"""The flowsink stack on Docker Compose: the repository's ``docker-compose.yml``, ingest nodes scaled to N.

``up`` uses the official images when they are on the machine or can be pulled; when the engine reaches no
registry it builds stand-ins here (``images.py``) and adds ``docker-compose.local.yml``, which swaps image names
only (Kibana and Grafana, which have no artifact in any reachable registry, stay out). Before Compose runs it
checks what would otherwise fail late or obscurely: the settings the Compose file requires, the host ports it
publishes; after, it waits (bounded) until every ingest replica is ready, so an unreachable Elasticsearch is
one clear message, not a hang. The choice of images is kept in the run folder, so ``down`` and ``status`` use
the same files.

Environment: FLOWSINK_STACK_IMAGES=official|local|auto (default auto), FLOWSINK_STACK_ENV_FILE (default
``.env`` of the checkout, made from ``.env.example`` on first use), FLOWSINK_STACK_READY_TIMEOUT (seconds,
default 180). The host ports are settings of the env file (``FLOWSINK_STACK_HTTP_PORT`` ... in .env.example).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import yaml

from flowsink import assets
from flowsink.stack import StackError, log

LOCAL_OVERRIDE = "docker-compose.local.yml"
IMAGE_MODES = ("auto", "official", "local")
# Settings docker-compose.yml requires (``${NAME:?...}``), per service that needs them.
REQUIRED = {"FLOWSINK_API_TOKENS": "ingest", "GRAFANA_ADMIN_PASSWORD": "grafana"}
HOW_TO_LOCAL = "or run the same stack as local processes without Docker: FLOWSINK_STACK_MODE=local make run"


def engine_answers(timeout_s: float = 30.0) -> bool:
    """True when a Docker client is installed and its engine answers ``docker info``."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _checkout() -> Path:
    root = assets.checkout_root()
    if root is None:
        raise StackError(
            "the Docker stack builds its image from a source checkout (docker-compose.yml, Dockerfile); "
            "run it there, or FLOWSINK_STACK_MODE=local"
        )
    return root


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) when installed, else ``docker-compose``."""
    plugin = subprocess.run(
        ["docker", "compose", "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError(
        "neither `docker compose` nor docker-compose is installed (make system-deps installs it)"
    )


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines as Compose reads them (comments and blank lines skipped, surrounding quotes removed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def port_problem(protocol: str, host: str, port: int) -> str | None:
    from flowsink.stack.local import port_problem as probe

    return probe(protocol, host or "0.0.0.0", port)


@dataclass
class ComposeStack:
    """One Compose project of the stack: its files, env file, project name and the images it runs."""

    root: Path
    env_file: Path
    run_dir: Path
    images: str = "auto"
    ready_timeout_s: float = 180.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, run_dir: Path) -> ComposeStack:
        root = _checkout()
        images = os.environ.get("FLOWSINK_STACK_IMAGES", "auto")
        if images not in IMAGE_MODES:
            raise StackError(f"FLOWSINK_STACK_IMAGES={images!r}: use one of {', '.join(IMAGE_MODES)}")
        env_file = Path(os.environ.get("FLOWSINK_STACK_ENV_FILE") or root / ".env")
        timeout = float(os.environ.get("FLOWSINK_STACK_READY_TIMEOUT", "180"))
        return cls(root, env_file, run_dir, images, timeout)

    # -- settings

    def fit_limits(self) -> None:
        """Lower Elasticsearch's open-file limit (ES_NOFILE, default 65536) to what this host allows.

        A container cannot raise a limit above the engine's own hard limit without CAP_SYS_RESOURCE, which
        sandboxes and some hosts withhold: the container would not start at all. Elasticsearch runs with fewer
        (single-node discovery does not enforce its 65535 bootstrap check) and says so in its log.
        """
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if "ES_NOFILE" not in self.settings() and hard != resource.RLIM_INFINITY and hard < 65536:
            log(f"this host's open-file limit is {hard}: Elasticsearch gets {hard}, not 65536 (ES_NOFILE)")
            self.extra_env["ES_NOFILE"] = str(hard)

    def settings(self) -> dict[str, str]:
        """What Compose interpolates with: the env file, overridden by the environment (as Compose does)."""
        return {**read_env_file(self.env_file), **os.environ, **self.extra_env}

    @property
    def project(self) -> str:
        return self.settings().get("COMPOSE_PROJECT_NAME") or self.root.name

    @property
    def _images_file(self) -> Path:
        return self.run_dir / "docker-images"

    def recorded_images(self) -> str | None:
        try:
            return self._images_file.read_text().strip() or None
        except OSError:
            return None

    def files(self, images: str) -> list[str]:
        names = ["docker-compose.yml"] + ([LOCAL_OVERRIDE] if images == "local" else [])
        return [arg for name in names for arg in ("-f", str(self.root / name))]

    def compose(self, images: str, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
        argv = [*compose_command(), "--env-file", str(self.env_file), "-p", self.project, *self.files(images)]
        env = {**os.environ, **self.extra_env}
        return subprocess.run(
            [*argv, *args], cwd=self.root, env=env, check=False, text=True, capture_output=capture
        )

    def config(self, images: str) -> dict:
        done = self.compose(images, "config", capture=True)
        if done.returncode != 0:
            raise StackError(f"docker-compose.yml does not resolve: {done.stderr.strip()}")
        return yaml.safe_load(done.stdout)

    def check_settings(self, images: str) -> None:
        settings = self.settings()
        skipped = ("grafana",) if images == "local" else ()
        for name, service in REQUIRED.items():
            if service not in skipped and not settings.get(name, "").strip():
                raise StackError(
                    f"{name} is not set: the {service} service needs it. Set it in {self.env_file} "
                    "(see .env.example) or in the environment"
                )

    def check_ports(self, config: dict) -> None:
        """Every host port the stack publishes must be free (unless this project already holds it)."""
        if self.running_containers():
            return
        problems = []
        for service in config.get("services", {}).values():
            for port in service.get("ports", []):
                if isinstance(port, dict) and port.get("published"):
                    host, number = port.get("host_ip", ""), int(port["published"])
                    protocol = port.get("protocol", "tcp")
                elif isinstance(port, str):
                    spec, _, protocol = port.partition("/")
                    parts = spec.split(":")
                    if len(parts) < 2:
                        continue
                    host = parts[0] if len(parts) == 3 else ""
                    number, protocol = int(parts[-2]), protocol or "tcp"
                else:
                    continue
                if problem := port_problem(protocol, host, number):
                    problems.append(problem)
        if problems:
            raise StackError(
                "cannot start the Docker stack: " + "; ".join(problems) + ". Free the port or choose another "
                f"one in {self.env_file} (FLOWSINK_STACK_*_PORT, see .env.example); {HOW_TO_LOCAL}"
            )

    # -- images

    def official_images(self, config: dict) -> list[str]:
        return sorted(
            {
                service["image"]
                for service in config["services"].values()
                if "image" in service and "build" not in service
            }
        )

    def choose_images(self) -> str:
        """official when every official image is here or pulls; else local (built here)."""
        if self.images != "auto":
            return self.images
        config = self.config("official")
        missing = [image for image in self.official_images(config) if not _image_present(image)]
        if not missing:
            return "official"
        log(f"pulling {len(missing)} images")
        pulled = self.compose("official", "pull", "--quiet", capture=True)
        if pulled.returncode == 0:
            return "official"
        reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
        log(
            f"the official images cannot be pulled ({reason}); building stand-ins from Debian's packages "
            f"and Maven Central instead ({LOCAL_OVERRIDE}: Kibana and Grafana are left out)"
        )
        return "local"

    # -- actions

    def up(self, nodes: int) -> int:
        if not self.env_file.exists() and self.env_file == self.root / ".env":
            shutil.copyfile(self.root / ".env.example", self.env_file)
            log(f"wrote {self.env_file} from .env.example: change its passwords and tokens")
        # the ingest service's settings first: Compose cannot even resolve the file (to pull) without them
        self.check_settings("local")
        images = self.recorded_images() if self.running_containers() else None
        images = images or self.choose_images()
        self.check_settings(images)
        self.fit_limits()
        config = self.config(images)
        self.check_ports(config)
        if images == "local":
            from flowsink.stack import images as local_images

            try:
                local_images.build_all(self.root, environ=self.settings())
            except StackError as exc:
                raise StackError(f"building the local images failed: {exc}\n{HOW_TO_LOCAL}") from exc
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._images_file.write_text(images + "\n")
        build = ["--build"] if images == "official" else ["--no-build"]
        log(
            f"docker compose up ({'official' if images == 'official' else 'locally built'} images, {nodes} ingest)"
        )
        done = self.compose(images, "up", "-d", *build, "--scale", f"ingest={nodes}", capture=True)
        if done.returncode != 0:
            if cause := self.ingest_failure():
                self.fail(images, cause)
            raise StackError(f"docker compose up failed:\n{_tail(done.stderr)}")
        self.wait_ready(images, nodes)
        self.print_urls(images)
        return 0

    def down(self) -> int:
        images = self.recorded_images() or "official"
        done = self.compose(images, "down")
        self._images_file.unlink(missing_ok=True)
        return done.returncode

    def status(self) -> int:
        return self.compose(self.recorded_images() or "official", "ps").returncode

    def running_containers(self, service: str | None = None) -> list[str]:
        """Ids of this project's running containers (of one service, if given)."""
        argv = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            argv += ["--filter", f"label=com.docker.compose.service={service}"]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.stdout.split()

    def replica_readiness(self) -> dict[str, tuple[int, str]]:
        """Each running ingest replica's /readyz (status, body), asked inside its container."""
        probe = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=3); print(r.status, r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code, e.read().decode())\n"
            "except Exception as e:\n"
            "    print(0, repr(e))\n"
        )
        answers = {}
        for container in self.running_containers("ingest"):
            done = subprocess.run(
                ["docker", "exec", container, "python", "-c", probe],
                capture_output=True,
                text=True,
                check=False,
            )
            code, _, body = done.stdout.strip().partition(" ")
            answers[container] = (int(code) if code.isdigit() else 0, body or done.stderr.strip())
        return answers

    def wait_ready(self, images: str, nodes: int) -> None:
        """Until ``nodes`` replicas answer /readyz; else StackError with what they say (bounded, no hang)."""
        deadline = time.monotonic() + self.ready_timeout_s
        answers: dict[str, tuple[int, str]] = {}
        while time.monotonic() < deadline:
            answers = self.replica_readiness()
            if len(answers) >= nodes and all(code == 200 for code, _ in answers.values()):
                return
            time.sleep(2)
        reasons = sorted({_reasons(body) for code, body in answers.values() if code != 200})
        if cause := self.ingest_failure():
            message = cause
        elif len(answers) < nodes:
            message = f"only {len(answers)} of {nodes} ingest replicas are running"
        else:
            message = f"the ingest nodes are not ready after {self.ready_timeout_s:.0f} s: " + "; ".join(
                reasons
            )
        self.fail(images, message)

    def ingest_failure(self) -> str | None:
        """Why the ingest replicas do not start, from their logs: the node's own one-line error, if any."""
        argv = ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"]
        argv += ["--filter", "label=com.docker.compose.service=ingest"]
        for container in subprocess.run(argv, capture_output=True, text=True, check=False).stdout.split():
            logs = subprocess.run(
                ["docker", "logs", "--tail", "50", container], capture_output=True, text=True, check=False
            )
            for line in reversed((logs.stdout + logs.stderr).splitlines()):
                message = _log_message(line)
                if "cannot reach Elasticsearch" in message:
                    return "the ingest nodes " + message[message.index("cannot reach") :]
        return None

    def fail(self, images: str, message: str) -> NoReturn:
        """Stop what was started (volumes kept) and raise ``message`` as the one error line."""
        # A node still waiting for Elasticsearch has nothing to drain: no need for the 60 s stop grace period.
        self.compose(images, "stop", "--timeout", "10", capture=True)
        raise StackError(
            f"{message} (stack stopped, volumes kept; `docker compose -p {self.project} logs ingest` has the rest)"
        )

    def print_urls(self, images: str) -> None:
        settings = self.settings()

        def port(name: str, default: int) -> str:
            return settings.get(f"FLOWSINK_STACK_{name}_PORT") or str(default)

        rows = [
            (
                "NetFlow/IPFIX/sFlow (UDP, via nginx)",
                f"udp://0.0.0.0:{port('NETFLOW', 2055)}, {port('IPFIX', 4739)}, {port('SFLOW', 6343)}",
            ),
            ("flows API, /healthz, /readyz, /metrics (via nginx)", f"http://127.0.0.1:{port('HTTP', 8080)}/"),
            ("flows API bearer token", f"FLOWSINK_API_TOKENS in {self.env_file}"),
            ("Elasticsearch", f"http://127.0.0.1:{port('ES', 9200)}"),
            ("Prometheus", f"http://127.0.0.1:{port('PROMETHEUS', 9090)}/targets"),
        ]
        if images == "official":
            rows += [
                ("Kibana", f"http://127.0.0.1:{port('KIBANA', 5601)}"),
                ("Grafana", f"http://127.0.0.1:{port('GRAFANA', 3000)}"),
            ]
        else:
            rows.append(("Kibana, Grafana", f"not run: no image without a registry ({LOCAL_OVERRIDE})"))
        rows.append(("containers", f"docker compose -p {self.project} ps"))
        width = max(len(label) for label, _ in rows)
        for label, url in rows:
            print(f"  {label:<{width}}  {url}")


def _image_present(image: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    return done.returncode == 0


def _reasons(body: str) -> str:
    try:
        return ", ".join(json.loads(body).get("reasons", [])) or body
    except (ValueError, AttributeError):
        return body


def _log_message(line: str) -> str:
    """The message of a node's log line (JSON in the container, plain text elsewhere)."""
    try:
        return str(json.loads(line).get("message", line))
    except (ValueError, AttributeError):
        return line


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(action: str, nodes: int, run_dir: Path) -> int:
    """One ``flowsink stack`` action on the Compose stack: up, down, status or urls; returns the exit status."""
    stack = ComposeStack.from_env(run_dir)
    if action == "up":
        return stack.up(nodes)
    if action == "down":
        return stack.down()
    if action == "status":
        return stack.status()
    if action == "urls":
        stack.print_urls(stack.recorded_images() or "official")
        return 0
    raise StackError(f"`flowsink stack {action}` is for the local stack only (this one runs on Docker)")
