"""The stack's images built on this machine, for Docker engines that reach no container registry.

``docker-compose.yml`` names the official images (Docker Hub, docker.elastic.co, quay.io). Where none of them can
be pulled, ``flowsink stack up`` builds stand-ins from what the package registries hold and runs the same
Compose file with ``docker-compose.local.yml`` on top, which swaps image names only:

    flowsink-local/base           debootstrap --variant=minbase of the host's Debian release, from the mirror
                                  the host's own apt sources name, imported with ``docker import``
    flowsink-local/nginx, prometheus, node-exporter, nginx-exporter, elasticsearch-exporter
                                  the base plus Debian's packages (docker/NAME.Dockerfile)
    flowsink-local/elasticsearch  the base plus the integ-test-zip from Maven Central (scripts/elasticsearch.sh
                                  fetches it, as for the tests) and a JDK 21+ of the host's
    flowsink-local/flowsink       the base plus Debian's Python, and wheels built on the host (``pip wheel``):
                                  docker/flowsink.Dockerfile, then the runtime part of the repository's Dockerfile

Nothing is downloaded inside a container: Debian packages are fetched by apt in a chroot of the base's root
folder on the host (the host's network, proxy and CA), then copied into the build and installed with dpkg.

Each image carries a label with the digest of everything it was built from (recipe, base image, packages
wanted, Elasticsearch and JDK, the project's sources); a build whose digest matches the existing image is
skipped, so ``make run`` rebuilds nothing when nothing changed. Caches live under FLOWSINK_CACHE_DIR (default
/var/cache/flowsink for root, else ~/.cache/flowsink), beside the Elasticsearch distribution.

    flowsink stack images [--force]     build what is missing or stale, print the image names
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flowsink.stack import StackError, log

PREFIX = "flowsink-local"
KEY_LABEL = "org.flowsink.build-key"
# Bump to rebuild every image after a change to how they are made that the digests do not see.
RECIPE_VERSION = "1"
DEBIAN_SUITE_KINDS = ("", "-updates", "-security")
# Parts of a JDK Elasticsearch never reads: sources, man pages, the jmods for jlink.
JDK_SKIP = ("lib/src.zip", "man", "jmods", "demo")
# The services the local images stand in for, and the recipe (docker/<recipe>.Dockerfile) of each.
SERVICE_IMAGES = {
    "nginx": "nginx",
    "prometheus": "prometheus",
    "node-exporter": "node-exporter",
    "nginx-exporter": "nginx-exporter",
    "elasticsearch-exporter": "elasticsearch-exporter",
    "elasticsearch": "elasticsearch",
    "ingest": "flowsink",
}
# What has no artifact in any reachable registry: left out by docker-compose.local.yml (profile "registry").
NOT_BUILT = ("kibana", "kibana-setup", "grafana")
RUNTIME_MARKER = "# runtime:"


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """FLOWSINK_CACHE_DIR, else /var/cache/flowsink for root, else ~/.cache/flowsink (as scripts/elasticsearch.sh)."""
    env = os.environ if environ is None else environ
    if env.get("FLOWSINK_CACHE_DIR"):
        return Path(env["FLOWSINK_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/flowsink")
    return Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowsink"


# ----------------------------------------------------------------------------------------- apt sources


@dataclass(frozen=True)
class AptSource:
    """One ``deb URI SUITE COMPONENTS...`` line of the host's apt configuration."""

    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def _deb822_sources(text: str) -> Iterable[AptSource]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue
            name, _, value = raw.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri, suite, tuple(fields.get("components", "").split()))


def _one_line_sources(text: str) -> Iterable[AptSource]:
    for raw in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", "", raw.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield AptSource(words[1], words[2], tuple(words[3:]))


def host_debian_sources(codename: str, etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """The host's apt sources for its own Debian release (main suite, -updates, -security), in the host's order;
    third-party repositories (other suite names) are left out."""
    found: list[AptSource] = []
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            found += _deb822_sources(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            found += _one_line_sources(text)
    wanted = {codename + kind for kind in DEBIAN_SUITE_KINDS}
    return [s for s in found if s.suite in wanted and "main" in s.components]


def host_codename() -> str:
    for raw in Path("/etc/os-release").read_text().splitlines():
        if raw.startswith("VERSION_CODENAME="):
            return raw.split("=", 1)[1].strip().strip('"')
    raise StackError("/etc/os-release names no VERSION_CODENAME: the local images need a Debian host")


# ----------------------------------------------------------------------------------------- docker helpers


def _run(argv: list[str], log_path: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a build step; its output goes to ``log_path`` (appended); a failure raises with the log's tail."""
    if log_path is None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
        output = done.stdout + done.stderr
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, text=True, check=False, **kwargs
            )
        output = log_path.read_text(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        where = f" (log: {log_path})" if log_path else ""
        raise StackError(f"`{' '.join(argv[:4])} ...` failed{where}:\n{tail}")
    return done


def image_key(tag: str) -> str | None:
    """The build digest label of image ``tag``, or None when there is no such image."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    labels = json.loads(done.stdout.strip() or "null") or {}
    return labels.get(KEY_LABEL, "")


def image_id(tag: str) -> str:
    return _run(["docker", "image", "inspect", "--format", "{{.Id}}", tag]).stdout.strip()


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _tree_digest(root: Path, skip: Callable[[Path], bool] = lambda _p: False) -> str:
    """Digest of every file's relative path, mode and content under ``root`` (sorted walk)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if skip(relative) or path.is_dir():
            continue
        digest.update(str(relative).encode() + b"\0" + oct(path.lstat().st_mode).encode() + b"\0")
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Context:
    """A build context assembled from files anywhere on the host, streamed to ``docker build -`` as a tar."""

    dockerfile: str
    files: dict[str, Path] = field(default_factory=dict)  # name in the context -> file or folder on the host
    skip: tuple[str, ...] = ()  # paths (relative to a folder given in files) left out

    def write(self, stream) -> None:
        with tarfile.open(fileobj=stream, mode="w|") as tar:
            data = self.dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            for name, source in self.files.items():
                tar.add(source, arcname=name, filter=self._filter(name))

    def _filter(self, name: str):
        prefixes = tuple(f"{name}/{skip}" for skip in self.skip)

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if info.name in prefixes or info.name.startswith(tuple(p + "/" for p in prefixes)):
                return None
            return info

        return keep


def docker_build(tag: str, context: Context, key: str, log_path: Path, build_args: dict[str, str]) -> None:
    """``docker build`` of ``context`` tagged ``tag`` with the digest label; raises StackError with the log."""
    # --force-rm: a failed step leaves no container behind
    argv = ["docker", "build", "--force-rm", "--tag", tag, "--label", f"{KEY_LABEL}={key}"]
    for name, value in build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    argv.append("-")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        assert process.stdin is not None
        try:
            context.write(process.stdin)
        except BrokenPipeError:
            pass  # docker gave up reading; its exit status and log say why
        finally:
            process.stdin.close()
        status = process.wait()
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise StackError(f"docker build of {tag} failed (log: {log_path}):\n{tail}")


# ----------------------------------------------------------------------------------------- the builder


def debian_packages(dockerfile_text: str) -> list[str]:
    """The packages a recipe names on its ``# debian-packages:`` line."""
    for raw in dockerfile_text.splitlines():
        if raw.startswith("# debian-packages:"):
            return raw.split(":", 1)[1].split()
    return []


def find_jdk(minimum: int = 21) -> Path:
    """ES_JAVA_HOME, else the newest JDK of at least ``minimum`` under /usr/lib/jvm (as scripts/elasticsearch.sh)."""
    if os.environ.get("ES_JAVA_HOME"):
        return Path(os.environ["ES_JAVA_HOME"])
    best: tuple[int, Path] | None = None
    for home in sorted(Path("/usr/lib/jvm").glob("*")):
        release = home / "release"
        if home.is_symlink() or not release.is_file() or not (home / "bin" / "java").exists():
            continue
        found = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.M)
        if found and int(found[1]) >= minimum and (best is None or int(found[1]) > best[0]):
            best = (int(found[1]), home)
    if best is None:
        raise StackError(f"Elasticsearch needs a JDK {minimum}+ and there is none under /usr/lib/jvm")
    return best[1]


class Builder:
    """Builds (or finds up to date) every local image; ``build_all`` returns service -> image name."""

    def __init__(self, root: Path, force: bool = False, environ: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = dict(os.environ if environ is None else environ)
        self.force = force
        self.cache = cache_dir(self.env) / "docker"
        self.logs = self.cache / "logs"
        self.codename = host_codename()
        self.rootfs = self.cache / f"rootfs-{self.codename}"
        self.es_version = self.env.get("ELASTIC_VERSION", "9.3.2")

    def tag(self, recipe: str) -> str:
        if recipe == "base":
            return f"{PREFIX}/base:{self.codename}"
        if recipe == "elasticsearch":
            return f"{PREFIX}/elasticsearch:{self.es_version}"
        return f"{PREFIX}/{recipe}:latest"

    def up_to_date(self, tag: str, key: str) -> bool:
        return not self.force and image_key(tag) == key

    # -- base

    def base(self) -> str:
        """The debootstrap image; its root folder stays in the cache for the package downloads."""
        tag = self.tag("base")
        sources = host_debian_sources(self.codename)
        mirror = next((s.uri for s in sources if s.suite == self.codename), None)
        if mirror is None:
            raise StackError(
                f"the host's apt sources name no mirror for Debian {self.codename}: "
                "the local images are made from the host's Debian release"
            )
        key = _digest(RECIPE_VERSION, self.codename, [s.line() for s in sources])
        stamp = self.rootfs / ".flowsink-build-key"
        rootfs_ok = stamp.is_file() and stamp.read_text().strip() == key
        if rootfs_ok and self.up_to_date(tag, key):
            return tag
        if not rootfs_ok or self.force:
            self._debootstrap(mirror, sources, key)
        log(f"importing {tag}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(self.rootfs), "-c", *self._rootfs_excludes(), "."],
            stdout=subprocess.PIPE,
        )
        try:
            _run(
                [
                    "docker",
                    "import",
                    "--change",
                    f"LABEL {KEY_LABEL}={key}",
                    "--change",
                    'CMD ["bash"]',
                    "-",
                    tag,
                ],
                self.logs / "base.log",
                stdin=tar.stdout,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar_status = tar.wait()
        if tar_status != 0:
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
            raise StackError(f"tar of {self.rootfs} failed (exit status {tar_status}); {tag} not imported")
        return tag

    @staticmethod
    def _rootfs_excludes() -> list[str]:
        # the package lists and downloads are for the chroot's apt on the host, not for the image
        return [
            "--exclude=./var/lib/apt/lists/*",
            "--exclude=./var/cache/apt/*",
            "--exclude=./tmp/*",
            "--exclude=./.flowsink-build-key",
        ]

    def _debootstrap(self, mirror: str, sources: list[AptSource], key: str) -> None:
        if shutil.which("debootstrap") is None:
            raise StackError("debootstrap is not installed (scripts/install_system_deps.sh installs it)")
        log(f"debootstrap --variant=minbase {self.codename} from {mirror} (about a minute)")
        shutil.rmtree(self.rootfs, ignore_errors=True)
        self.rootfs.parent.mkdir(parents=True, exist_ok=True)
        (self.logs / "base.log").unlink(missing_ok=True)
        _run(
            ["debootstrap", "--variant=minbase", self.codename, str(self.rootfs), mirror],
            self.logs / "base.log",
        )
        (self.rootfs / "etc/apt/sources.list").write_text("".join(s.line() + "\n" for s in sources))
        # Package scripts must not try to start services in an image.
        policy = self.rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        self._chroot_apt(["update", "-qq"])
        (self.rootfs / ".flowsink-build-key").write_text(key + "\n")

    def _chroot_apt(self, args: list[str]) -> None:
        # the chroot resolves names as the host does; Docker gives containers their own resolv.conf
        shutil.copyfile("/etc/resolv.conf", self.rootfs / "etc/resolv.conf")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        _run(["chroot", str(self.rootfs), "apt-get", *args], self.logs / "apt.log", env=env)

    def download_debs(self, recipe: str, packages: list[str]) -> Path:
        """The .deb files ``packages`` need on top of the base, fetched by apt in the base's chroot."""
        inside = Path("/tmp/debs") / recipe
        folder = self.rootfs / inside.relative_to("/")
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "partial").mkdir(parents=True)
        args = ["install", "-y", "-qq", "--download-only", "--no-install-recommends"]
        args += ["-o", f"Dir::Cache::archives={inside}", *packages]
        try:
            self._chroot_apt(args)
        except StackError:
            self._chroot_apt(["update", "-qq"])  # lists older than the mirror's packages: refresh once
            self._chroot_apt(args)
        shutil.rmtree(folder / "partial")
        # a package the base already has needs no download; an empty folder still makes a valid COPY
        (folder / ".keep").touch()
        return folder

    # -- images on the base

    def service_image(self, recipe: str, base_tag: str) -> str:
        tag = self.tag(recipe)
        text = (self.root / "docker" / f"{recipe}.Dockerfile").read_text()
        extra_key, files, skip = self._extra_inputs(recipe)
        dockerfile = text + self._runtime_part() if recipe == "flowsink" else text
        key = _digest(RECIPE_VERSION, image_id(base_tag), dockerfile, extra_key, self._helper_files(recipe))
        if self.up_to_date(tag, key):
            return tag
        log(f"building {tag}")
        if recipe == "flowsink":
            files.update(self._wheels())
        files["debs"] = self.download_debs(recipe, debian_packages(text))
        files.update({name: self.root / "docker" / name for name in self._helper_files(recipe)})
        context = Context(dockerfile, files, skip)
        previous = image_key(tag) is not None and image_id(tag)
        docker_build(tag, context, key, self.logs / f"{recipe}.log", {"BASE": base_tag})
        if previous and previous != image_id(tag):
            # the stale image, unless a container still uses it; without this every rebuild leaves one behind
            subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False)
        return tag

    @staticmethod
    def _helper_files(recipe: str) -> list[str]:
        return ["elasticsearch-entrypoint.sh"] if recipe == "elasticsearch" else []

    def _runtime_part(self) -> str:
        text = (self.root / "Dockerfile").read_text()
        start = text.find(RUNTIME_MARKER)
        if start < 0:
            raise StackError(
                f"Dockerfile has no '{RUNTIME_MARKER}' line: the local flowsink image appends what follows"
            )
        return "\n" + text[start:]

    def _extra_inputs(self, recipe: str) -> tuple[str, dict[str, Path], tuple[str, ...]]:
        """Digest, context files and skipped paths beyond the recipe and its packages."""
        if recipe == "elasticsearch":
            home = self._elasticsearch_home()
            jdk = find_jdk()
            key = _digest(self.es_version, _tree_digest(home / "lib"), (jdk / "release").read_text())
            return key, {"elasticsearch": home, "jdk": jdk}, JDK_SKIP
        if recipe == "flowsink":
            return self._source_digest(), {}, ()
        return "", {}, ()

    def _elasticsearch_home(self) -> Path:
        env = {**self.env, "ES_VERSION": self.es_version}
        _run(
            ["bash", str(self.root / "scripts" / "elasticsearch.sh"), "fetch"],
            self.logs / "es-fetch.log",
            env=env,
        )
        home = cache_dir(self.env) / f"elasticsearch-{self.es_version}"
        if not (home / "bin" / "elasticsearch").exists():
            raise StackError(f"scripts/elasticsearch.sh fetch left no distribution in {home}")
        return home

    def _source_digest(self) -> str:
        """Digest of everything the project's wheel is built from."""

        def skip(relative: Path) -> bool:
            parts = relative.parts
            # the package build's copies of the asset folders (flowsink/assets/<folder>/) are not sources
            copies = parts[:2] == ("flowsink", "assets") and len(parts) > 3
            return (
                copies
                or "__pycache__" in parts
                or parts[0].endswith(".egg-info")
                or relative.suffix in (".so", ".pyc")
            )

        parts = [_tree_digest(self.root / "ingest", skip)]
        parts += [
            _tree_digest(self.root / name) for name in ("elasticsearch", "kibana", "monitoring", "nginx")
        ]
        parts += [
            (self.root / name).read_text()
            for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
        ]
        return _digest(parts)

    def _wheels(self) -> dict[str, Path]:
        """The project's wheel and its dependencies' wheels, built on the host (its network, proxy and CA)."""
        wheels = self.cache / "wheels"
        project = wheels / "flowsink"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        log("building the flowsink wheel (pip wheel)")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q"]
        _run([*pip, "--no-deps", "--wheel-dir", str(project), str(self.root)], self.logs / "wheels.log")
        requirements = self._requirements()
        dependencies = wheels / f"dependencies-{_digest(requirements)[:16]}"
        if not (dependencies / ".complete").exists():
            log("fetching the dependencies' wheels (pip wheel)")
            shutil.rmtree(dependencies, ignore_errors=True)
            dependencies.mkdir(parents=True)
            _run([*pip, "--wheel-dir", str(dependencies), *requirements], self.logs / "wheels.log")
            (dependencies / ".complete").touch()
        return {"wheels/flowsink": project, "wheels/dependencies": dependencies}

    def _requirements(self) -> list[str]:
        import tomllib

        return tomllib.loads((self.root / "pyproject.toml").read_text())["project"]["dependencies"]

    def build_all(self) -> dict[str, str]:
        """Every local image, built when missing or stale; returns service -> image name."""
        if os.geteuid() != 0:
            raise StackError("building the local images needs root (debootstrap and chroot)")
        base = self.base()
        images = {}
        for service, recipe in SERVICE_IMAGES.items():
            images[service] = self.service_image(recipe, base)
        return images


def build_all(root: Path, force: bool = False, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every local image for the checkout ``root``; ``environ`` (ELASTIC_VERSION) as Compose will see it."""
    return Builder(root, force, environ).build_all()
