"""The benchmarks' peers, built from source into ``bench/.work/`` (gitignored) when Go is installed, and cached.

- goflow2 (``github.com/netsampler/goflow2/v2``), the collector, from the Go module proxy;
- ``goflow2-decode``: goflow2's own decoder, producer and formatters called in-process on datagrams read from a
  file (``bench/goflow2_decode/``, a small program of ours against goflow2's library), so that its decode cost
  can be set beside flowsink's in-process decoder with the same scope;
- Filebeat 7.17 (``github.com/elastic/beats/v7``, ``x-pack/filebeat``: the netflow input is x-pack), from the
  module proxy too; building it takes minutes the first time.

Each binary is rebuilt only when it is missing or was built from another version (a ``.version`` file beside
it says which); a failed build is remembered for the version in a ``.failed`` file, so ``make bench`` does not
retry a 10-minute build on every run (delete the file to retry). Pinned versions keep the figures reproducible.

    python bench/peers.py              # build what is missing; prints each peer's path or why there is none
    python bench/peers.py --force      # rebuild everything
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
GOFLOW2_MODULE = "github.com/netsampler/goflow2/v2"
GOFLOW2_VERSION = "v2.2.6"
BEATS_MODULE = "github.com/elastic/beats/v7"
BEATS_VERSION = "v7.17.29"
DECODE_HARNESS = BENCH / "goflow2_decode"


@dataclass(frozen=True)
class Peer:
    name: str
    binary: Path
    version: str

    @property
    def stamp(self) -> Path:
        return self.binary.with_name(self.binary.name + ".version")

    @property
    def failure(self) -> Path:
        return self.binary.with_name(self.binary.name + ".failed")

    def built(self) -> bool:
        return self.binary.exists() and self.stamp.exists() and self.stamp.read_text().strip() == self.version


GOFLOW2 = Peer("goflow2", WORK / "goflow2", GOFLOW2_VERSION)
FILEBEAT = Peer("filebeat", WORK / "filebeat", BEATS_VERSION)
# the harness is rebuilt when its source changes, too: its version is goflow2's plus a digest of main.go
GOFLOW2_DECODE = Peer("goflow2-decode", WORK / "goflow2-decode", GOFLOW2_VERSION)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _go() -> str | None:
    found = shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").exists():
        found = "/usr/local/go/bin/go"
    return found


def _harness_version() -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        path = DECODE_HARNESS / name
        if path.exists():
            digest.update(path.read_bytes())
    return f"{GOFLOW2_VERSION}+{digest.hexdigest()[:12]}"


def _run(command: list[str], cwd: Path | None, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, GOFLAGS=os.environ.get("GOFLAGS", "-buildvcs=false"), GOBIN=str(WORK))
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


Steps = list[tuple[list[str], Path | None]]  # (command, folder to run it in)


def _build(peer: Peer, force: bool, steps: Callable[[str], Steps | None], timeout: float) -> Path | None:
    """The peer's binary: the cached one, or built by running ``steps(go)`` (None from it: cannot be built)."""
    if not force and peer.built():
        return peer.binary
    go = _go()
    if go is None:
        return None
    failure = peer.failure
    if not force and failure.exists() and failure.read_text().splitlines()[:1] == [peer.version]:
        _log(f"{peer.name}: an earlier build of {peer.version} failed (see {failure}; delete it to retry)")
        return None
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _log(f"{peer.name}: building {peer.version} into {peer.binary} (first time only) ...")
    commands = steps(go)
    if commands is None:
        return None
    for command, cwd in commands:
        try:
            done = _run(command, cwd, timeout)
        except subprocess.TimeoutExpired:
            failure.write_text(f"{peer.version}\n{' '.join(command)}: no result after {timeout:.0f} s\n")
            _log(f"{peer.name}: build timed out")
            return None
        if done.returncode != 0:
            failure.write_text(f"{peer.version}\n{' '.join(command)}\n{done.stderr[-4000:]}")
            _log(f"{peer.name}: build failed: {done.stderr.strip()[-600:]}")
            return None
    peer.stamp.write_text(peer.version + "\n")
    failure.unlink(missing_ok=True)
    _log(f"{peer.name}: built in {time.monotonic() - started:.0f} s")
    return peer.binary


def goflow2(force: bool = False) -> Path | None:
    """goflow2's collector binary, or None (no Go, or the build failed)."""
    # `go install pkg@version` builds outside any module, with goflow2's own go.mod; GOBIN puts it in WORK
    return _build(
        GOFLOW2,
        force,
        lambda go: [([go, "install", f"{GOFLOW2_MODULE}/cmd/goflow2@{GOFLOW2_VERSION}"], None)],
        1800,
    )


def goflow2_decode(force: bool = False) -> Path | None:
    """The in-process goflow2 decode harness (bench/goflow2_decode/main.go), or None."""
    peer = Peer(GOFLOW2_DECODE.name, GOFLOW2_DECODE.binary, _harness_version())
    return _build(
        peer, force, lambda go: [([go, "build", "-o", str(peer.binary), "."], DECODE_HARNESS)], 1800
    )


def _filebeat_steps(go: str) -> Steps | None:
    download = _run([go, "mod", "download", "-json", f"{BEATS_MODULE}@{BEATS_VERSION}"], None, 1800)
    if download.returncode != 0:
        FILEBEAT.failure.write_text(f"{BEATS_VERSION}\ngo mod download\n{download.stderr[-4000:]}")
        _log(f"filebeat: cannot download {BEATS_MODULE}@{BEATS_VERSION}: {download.stderr.strip()[-400:]}")
        return None
    # Built where the module proxy unpacked it (read-only, which `go build -o` elsewhere does not mind): its
    # go.mod and replace directives are then the ones Elastic released.
    source = Path(json.loads(download.stdout)["Dir"])
    return [([go, "build", "-o", str(FILEBEAT.binary), "./x-pack/filebeat"], source)]


def filebeat(force: bool = False) -> Path | None:
    """Filebeat 7.17 with the x-pack inputs (netflow), built from the module proxy, or None."""
    return _build(FILEBEAT, force, _filebeat_steps, 3600)


def build_all() -> dict[str, Path | None]:
    """Every peer, built when missing (a note on stderr for each one that cannot be)."""
    if _go() is None:
        _log("go is not installed: goflow2 and Filebeat are not built, their columns stay empty")
    return {"goflow2": goflow2(), "goflow2-decode": goflow2_decode(), "filebeat": filebeat()}


def udpsend() -> Path:
    """bench/udpsend.c compiled (the project's own sendmmsg sender), rebuilt when the source is newer."""
    WORK.mkdir(parents=True, exist_ok=True)
    binary, source = WORK / "udpsend", BENCH / "udpsend.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def filebeat_config(port: int, out_dir: Path, elasticsearch: str | None = None) -> dict:
    """Filebeat 7.17 with one netflow input on ``port``, writing ECS documents to ``out_dir``/flows* (or, given
    a URL, to Elasticsearch). Nothing else: no processors, no template or ILM set-up, no monitoring."""
    config: dict = {
        "filebeat.inputs": [
            {
                "type": "netflow",
                "host": f"127.0.0.1:{port}",
                "protocols": ["v5", "v9", "ipfix"],
                # the benchmarks replay datagrams, so sequence numbers restart: not an exporter reboot
                "detect_sequence_reset": False,
                "read_buffer": "4MiB",
            }
        ],
        "setup.template.enabled": False,
        "setup.ilm.enabled": False,
        "logging.level": "error",
        "logging.metrics.enabled": False,
        "logging.to_files": False,
    }
    if elasticsearch is None:
        config["output.file"] = {
            "path": str(out_dir),
            "filename": "flows",
            "rotate_every_kb": 100_000_000,
            "number_of_files": 1024,
        }
    else:
        config["output.elasticsearch"] = {"hosts": [elasticsearch]}
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when built")
    args = parser.parse_args(argv)
    if _go() is None:
        print("go is not installed: no peer can be built (https://go.dev/dl/)")
        return 1
    results = {
        "goflow2": goflow2(args.force),
        "goflow2-decode": goflow2_decode(args.force),
        "filebeat": filebeat(args.force),
    }
    for name, path in results.items():
        print(f"{name}: {path if path else 'not built'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
