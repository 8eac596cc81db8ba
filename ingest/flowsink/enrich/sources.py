"""Where an enricher's outside sources come from: the GeoIP databases' files and the names SNMP polling found.

A node's pipeline workers are processes of their own, each with its enricher and caches. One process watches the
sources for all of them (``flowsink.enrich.service``: the node's ``enrich`` child) and publishes what it found in
``<run_dir>/enrich/``:

- ``databases.json``: for each configured database that could be opened, a snapshot of its file (a copy made
  when the file changed and stopped changing, checked by opening it) and its kind. Workers map the snapshots,
  never the configured files: a database rewritten in place (``cp new.mmdb GeoLite2-City.mmdb``) would change
  the pages a worker has mapped under it, and a read past a truncated end kills the process (SIGBUS). A
  snapshot is never written again once published; a version that does not open is refused, the last good one
  stays in use.
- ``snmp.json``: per exporter address, the sysName and the interfaces' ifName, ifAlias and ifHighSpeed.

Each file is replaced by a rename, so a reader sees the old version or the new one. ``PublishedSources`` is the
workers' side: ``changes()`` is two ``stat`` calls, made at most once a second between batches.
``DirectSources`` opens the configured files themselves, once (``flowsink decode``, tests, benchmarks).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from flowsink.enrich.geoip import GeoLookup, OpenFailure, open_database
from flowsink.enrich.settings import EnrichSettings
from flowsink.log import RateLimitedLog, get_logger

log = get_logger(__name__)
errors_log = RateLimitedLog(log)

DATABASES = "databases.json"
SNMP = "snmp.json"
RETIRED_SNAPSHOT_GRACE_S = (
    120.0  # a worker that read the old databases.json may still be opening its snapshot
)


def sources_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "enrich"


def count_error(reason: str, detail: str) -> None:
    """A GeoIP problem: a count by reason and a rate-limited line (the flows go on without the fields)."""
    from flowsink import metrics

    metrics.ENRICH_GEOIP_ERRORS.labels(reason=reason).inc()
    errors_log.warning(f"geoip:{reason}", "GeoIP (%s): %s", reason, detail)


def _open_all(files: list[tuple[str, str]]) -> GeoLookup:
    opened = []
    for path, source in files:
        try:
            opened.append(open_database(path, source, count_error))
        except OpenFailure as exc:
            count_error(exc.reason, str(exc))
    return GeoLookup(opened)


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class DirectSources:
    """The configured databases opened where they are, once; no SNMP names (nothing polls them here)."""

    def __init__(self, settings: EnrichSettings) -> None:
        self.settings = settings

    def open_databases(self) -> GeoLookup:
        return _open_all([(path, path) for path in self.settings.geoip_databases])

    def snmp_names(self) -> dict[str, Any]:
        return {}

    def changes(self) -> tuple[bool, bool]:
        return False, False


class PublishedSources:
    """What the node's enrichment process published in ``directory`` (``sources_dir(run_dir)``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen = {DATABASES: self._signature(DATABASES), SNMP: self._signature(SNMP)}

    def _signature(self, name: str) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.directory / name)
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _read(self, name: str) -> Any:
        try:
            return orjson.loads((self.directory / name).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:  # written by rename: only a foreign hand makes this
            errors_log.warning(f"sources:{name}", "cannot read %s: %s", self.directory / name, exc)
            return None

    def open_databases(self) -> GeoLookup:
        self._seen[DATABASES] = self._signature(DATABASES)
        manifest = self._read(DATABASES) or {}
        files = [
            (str(self.directory / item["snapshot"]), item["source"]) for item in manifest.get("databases", [])
        ]
        return _open_all(files)

    def snmp_names(self) -> dict[str, Any]:
        self._seen[SNMP] = self._signature(SNMP)
        return (self._read(SNMP) or {}).get("exporters", {})

    def changes(self) -> tuple[bool, bool]:
        return (
            self._signature(DATABASES) != self._seen[DATABASES],
            self._signature(SNMP) != self._seen[SNMP],
        )


def sources_for(run_dir: str | os.PathLike[str], settings: EnrichSettings) -> Any:
    """A node's workers read what its enrichment process published; without one (a worker built alone), the
    configured files directly."""
    directory = sources_dir(run_dir)
    if (directory / DATABASES).exists():
        return PublishedSources(directory)
    return DirectSources(settings)


# ---------------------------------------------------------------- the publishing side


class DatabasePublisher:
    """Snapshots of the configured databases in ``directory``, and ``databases.json`` naming them.

    ``update(paths)`` checks each file (one ``stat``): a version never seen is copied once it is the same at two
    checks in a row (a file being written changes in between), then opened to check it; a version that does not
    open is refused (counted, logged) and the last good snapshot of that path stays published.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._published: dict[str, dict[str, Any]] = {}  # path -> its manifest item (with "signature")
        self._candidate: dict[str, tuple[int, int, int]] = {}  # path -> a new version seen once
        self._refused: dict[str, tuple[int, int, int] | None] = {}  # path -> the version refused last
        self._retired: dict[Path, float] = {}
        directory.mkdir(parents=True, exist_ok=True)
        # what was published before (by the node at its start, or an earlier run): kept while its file is the same
        try:
            manifest = orjson.loads((directory / DATABASES).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            manifest = {}
        for item in manifest.get("databases", []):
            if (directory / item["snapshot"]).exists():
                self._published[item["source"]] = item
        in_use = {item["snapshot"] for item in self._published.values()}
        for stale in directory.glob("geoip-*.mmdb"):
            if stale.name not in in_use:
                self._retired[stale] = time.monotonic()

    def update(self, paths: list[str], first: bool = False) -> bool:
        """Check the files; True when ``databases.json`` was written. ``first``: publish what is there without
        waiting for a second look (the node's start)."""
        changed = set(self._published) - set(paths)  # a path taken out of the configuration
        for path in changed:
            self._retire(self._published.pop(path))
        for path in paths:
            if self._check(path, first):
                changed.add(path)
        if changed or first:
            self._write_manifest(paths)
        self._delete_retired()
        return bool(changed) or first

    def _check(self, path: str, first: bool) -> bool:
        from flowsink import metrics

        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return self._refuse(path, None, "missing", f"{path}: no such file")
        except OSError as exc:
            return self._refuse(path, None, "unreadable", f"{path}: {exc.strerror or exc}")
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        published = self._published.get(path)
        if published is not None and tuple(published["signature"]) == signature:
            return False
        if self._refused.get(path) == signature:
            return False
        if not first and self._candidate.get(path) != signature:
            self._candidate[path] = signature  # seen once: look again at the next check
            return False
        self._candidate.pop(path, None)
        digest = hashlib.sha1(path.encode()).hexdigest()[:12]
        snapshot = self.directory / f"geoip-{digest}-{signature[2]}-{signature[1]}.mmdb"
        temporary = snapshot.with_name(f".{snapshot.name}.tmp")
        try:
            shutil.copyfile(path, temporary)
            after = os.stat(path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            return self._refuse(path, signature, "unreadable", f"{path}: {exc.strerror or exc}")
        if (after.st_ino, after.st_size, after.st_mtime_ns) != signature:  # written to while copied
            temporary.unlink(missing_ok=True)
            return False
        try:
            database = open_database(str(temporary), path, count_error)
        except OpenFailure as exc:
            temporary.unlink(missing_ok=True)
            return self._refuse(path, signature, exc.reason, str(exc))
        item = {
            "source": path,
            "snapshot": snapshot.name,
            "kind": database.kind,
            "type": database.database_type,
            "build_epoch": database.build_epoch,
            "signature": list(signature),
        }
        database.close()
        os.replace(temporary, snapshot)
        if published is not None:
            self._retire(published)
        self._published[path] = item
        self._refused.pop(path, None)
        metrics.ENRICH_GEOIP_UPDATES.labels(result="ok").inc()
        log.info(
            "GeoIP database %s: %s (%s) built %s",
            path,
            item["type"],
            item["kind"],
            time.strftime("%Y-%m-%d", time.gmtime(item["build_epoch"])),
        )
        return True

    def _refuse(self, path: str, signature: tuple[int, int, int] | None, reason: str, message: str) -> bool:
        """Count and log a version that cannot be used, once per version; the published one stays."""
        from flowsink import metrics

        if path in self._refused and self._refused[path] == signature:
            return False
        self._refused[path] = signature
        self._candidate.pop(path, None)
        metrics.ENRICH_GEOIP_UPDATES.labels(result="error").inc()
        kept = self._published.get(path)
        count_error(
            reason,
            message + (f"; still using the version of {kept['snapshot']}" if kept else "; left out"),
        )
        return False

    def _retire(self, item: dict[str, Any]) -> None:
        self._retired[self.directory / item["snapshot"]] = time.monotonic()

    def _delete_retired(self) -> None:
        now = time.monotonic()
        in_use = {item["snapshot"] for item in self._published.values()}
        for path, since in list(self._retired.items()):
            if path.name in in_use:
                del self._retired[path]
            elif now - since >= RETIRED_SNAPSHOT_GRACE_S:
                path.unlink(missing_ok=True)  # workers that mapped it keep their mapping
                del self._retired[path]

    def _write_manifest(self, paths: list[str]) -> None:
        from flowsink import metrics

        items = [self._published[path] for path in paths if path in self._published]
        write_atomically(
            self.directory / DATABASES, orjson.dumps({"databases": items}, option=orjson.OPT_INDENT_2)
        )
        oldest: dict[str, int] = {}
        for item in items:
            oldest[item["kind"]] = min(oldest.get(item["kind"], item["build_epoch"]), item["build_epoch"])
        for kind, epoch in oldest.items():
            metrics.ENRICH_GEOIP_BUILD_TIMESTAMP.labels(kind=kind).set(epoch)


def publish_snmp_names(directory: Path, names: dict[str, Any]) -> None:
    """``snmp.json``: per exporter address its polled names (``flowsink.enrich.snmp``)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / SNMP, orjson.dumps({"exporters": names}, option=orjson.OPT_SORT_KEYS))
